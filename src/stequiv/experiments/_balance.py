"""How to share a reproduction's pair groups among worker processes so that they finish together.

A group trains one Q̂-net and its partners in lockstep (:func:`~.engine.run_group`): its cost is
``1 + k·(1 − p)`` net-trainings for ``k`` partners that join at the switch fraction ``p``. Groups
are handed to ``workers`` processes longest first, each to the first free worker (the order in
which :class:`~concurrent.futures.ProcessPoolExecutor` takes them), so the run lasts the
*makespan* of that list schedule (LPT, Graham 1969).

One large group can make every other worker wait: the quick preset has SGD's group of 1 + 5
nets beside three groups of 1 + 2, a makespan of 9 nets on 2 workers while 7.5 is the even
share. A group may be split: each part trains the same Q̂-net again (same seed, data, threads and
thus the same bits, ``tests/test_experiments.py`` checks a group against separate pairs) beside
some of the partners. A split costs one more Q̂-net, so :func:`balance_groups` splits only where
the makespan falls: the quick preset's SGD group becomes 1 + 4 and 1 + 1 nets, a makespan of 8.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from .config import PairSpec

__all__ = ["balance_groups", "group_cost", "makespan"]


def group_cost(specs: Sequence[PairSpec], switch_fraction: float) -> float:
    """Net-trainings of one group: its Q̂-net for every step, each partner from the switch on."""
    return 1.0 + len(specs) * (1.0 - switch_fraction)


def makespan(costs: Sequence[float], workers: int) -> float:
    """The finish time of the list schedule that hands ``costs`` in decreasing order, each to the
    worker that is free first (ties: the lowest worker)."""
    if workers < 1:
        raise ValueError(f"`workers` must be a positive integer, got {workers}")
    loads = [(0.0, w) for w in range(workers)]
    for cost in sorted(costs, reverse=True):
        load, w = heapq.heappop(loads)
        heapq.heappush(loads, (load + cost, w))
    return max(load for load, _ in loads)


def balance_groups(groups: Sequence[Sequence[PairSpec]], workers: int,
                   switch_fraction: float = 0.0) -> list[list[PairSpec]]:
    """``groups`` for ``workers`` processes: split while a split shortens the makespan, longest
    first.

    Each round tries every group of two or more partners cut in two (its first ``j`` partners and
    the rest, the larger part first) and keeps the cut that lowers :func:`makespan` most; none
    lowers it: done. With one
    worker nothing is split and the order is kept. The result is sorted by decreasing cost
    (stable), the order in which the groups are handed to the workers.
    """
    plan = [list(g) for g in groups]
    if workers == 1:
        return plan

    def span(candidate: list[list[PairSpec]]) -> float:
        return makespan([group_cost(g, switch_fraction) for g in candidate], workers)

    best = span(plan)
    while True:
        cuts = [[*plan[:i], g[:j], g[j:], *plan[i + 1:]]
                for i, g in enumerate(plan) for j in range(len(g) - 1, 0, -1)]
        scored = [(span(c), k) for k, c in enumerate(cuts)]
        if not scored or min(scored)[0] >= best - 1e-9:
            break
        best, k = min(scored)
        plan = cuts[k]
    return sorted(plan, key=lambda g: -group_cost(g, switch_fraction))
