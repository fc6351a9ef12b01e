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

:func:`balance` is the rule for any jobs with a cost and a way to cut them; the study cuts its
batches of cells with it (a cut there costs nothing: each cell trains its own nets).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from ..config import PairSpec

__all__ = ["balance", "balance_groups", "group_cost", "makespan", "two_parts"]

T = TypeVar("T")


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


def two_parts(items: list[T]) -> Iterator[tuple[list[T], list[T]]]:
    """Every cut of ``items`` into its first ``j`` and the rest, the larger first part first."""
    for j in range(len(items) - 1, 0, -1):
        yield items[:j], items[j:]


def balance(jobs: Sequence[T], workers: int, cost: Callable[[T], float],
            cuts: Callable[[T], Iterable[tuple[T, T]]]) -> list[T]:
    """``jobs`` for ``workers`` processes: cut while a cut shortens the :func:`makespan`.

    Each round tries every cut ``cuts(job)`` offers (a job in two parts) and keeps the one that
    lowers the makespan most; none lowers it: done. With one worker nothing is cut and the order
    is kept. The result is sorted by decreasing cost (stable), the order in which the jobs are
    handed to the workers.
    """
    plan = list(jobs)
    if workers == 1:
        return plan

    def span(candidate: list[T]) -> float:
        return makespan([cost(job) for job in candidate], workers)

    best = span(plan)
    while True:
        options = [[*plan[:i], a, b, *plan[i + 1:]] for i, job in enumerate(plan)
                   for a, b in cuts(job)]
        scored = [(span(option), k) for k, option in enumerate(options)]
        if not scored or min(scored)[0] >= best - 1e-9:
            break
        best, k = min(scored)
        plan = options[k]
    return sorted(plan, key=lambda job: -cost(job))


def balance_groups(groups: Sequence[Sequence[PairSpec]], workers: int,
                   switch_fraction: float = 0.0) -> list[list[PairSpec]]:
    """``groups`` for ``workers`` processes (:func:`balance`): a group is cut into its first
    partners and the rest (:func:`two_parts`), each part training the Q̂-net again."""
    return balance([list(g) for g in groups], workers,
                   lambda g: group_cost(g, switch_fraction), two_parts)
