"""What a reproduction will train and about how long it takes, before it starts.

A reproduction trains groups (one Q̂-net with its partners, :func:`~.group_specs`, split to share
``processes`` workers evenly: :func:`~._reproduce.planned_groups`); each net of a
group takes ``steps = ⌊n_train / batch_size⌋ · epochs`` steps, so a group costs
``(1 + partners) · steps`` net-steps and the run the makespan of the groups on its workers
(:func:`~.parallel.makespan`; their sum on one). The time per net-step is measured here, on a few
batches of the first group (this machine and device), and the estimate is their product
(evaluation, checkpoints and the report come on top).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._reproduce import checked_data, planned_groups
from .config import ExperimentConfig, PairSpec
from .engine import seconds_per_net_step
from .parallel import Dist, group_cost, makespan, setup_distributed

__all__ = ["RunPlan", "plan"]


@dataclass(frozen=True)
class RunPlan:
    """The groups of a reproduction, its steps per net and the measured seconds per net-step."""

    config: ExperimentConfig
    groups: tuple[tuple[PairSpec, ...], ...]
    train_size: int
    steps: int
    seconds_per_net_step: float | None
    device: str
    workers: int = 1

    @property
    def nets(self) -> int:
        """Nets trained in all: each group's Q̂-net and its partners."""
        return sum(1 + len(group) for group in self.groups)

    @property
    def seconds(self) -> float | None:
        """Estimated training time: the groups' makespan on the workers, in net-steps, × seconds
        per net-step."""
        sps = self.seconds_per_net_step
        if sps is None:
            return None
        costs = [group_cost(g, self.config.switch_fraction) for g in self.groups]
        return makespan(costs, self.workers) * self.steps * sps

    def text(self) -> str:
        """The plan as a few lines for the terminal."""
        c = self.config
        lines = [f"{c.epochs} epoch(s) of {c.model} on {c.dataset} ({self.train_size:,} training "
                 f"samples, batch {c.batch_size}): {self.steps:,} steps per net, "
                 f"{len(self.groups)} group(s), {self.nets} nets"
                 + (f", on {self.workers} worker processes" if self.workers > 1 else "")]
        lines += [f"  group {k} of {len(self.groups)} ({1 + len(g)} nets): "
                  + ", ".join(s.run_id for s in g) for k, g in enumerate(self.groups, 1)]
        if self.seconds is not None:
            lines.append(f"estimated training time: {_duration(self.seconds)} "
                         f"({self.seconds_per_net_step:.3g} s per net-step measured on "
                         f"{self.device}; evaluation and the report come on top)")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"~{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.1f} h"


def plan(config: ExperimentConfig, *, measure: bool = True, dist: Dist | None = None) -> RunPlan:
    """The :class:`RunPlan` of ``config`` (loads its data; with ``measure``, times 3 steps of its
    first group on ``dist``'s device). Keeps nothing it trains and writes nothing."""
    if dist is None:
        dist = setup_distributed(config.device)
        try:
            return plan(config, measure=measure, dist=dist)
        finally:
            dist.close()
    data = checked_data(config, dist)
    workers = 1 if dist.enabled else config.processes
    groups = tuple(tuple(g) for g in planned_groups(config, workers))
    steps = len(data.train) // config.batch_size * config.epochs
    sps = seconds_per_net_step(config, groups[0], data, dist) if measure else None
    return RunPlan(config, groups, len(data.train), steps, sps, str(dist.device), workers)
