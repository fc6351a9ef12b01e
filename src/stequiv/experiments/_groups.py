"""The pair groups of a reproduction, trained one after another or in worker processes.

Each group (one Q̂-net and its partners, :func:`~stequiv.experiments.engine.run_group`) trains on
``config.threads`` torch threads wherever it runs, so its floating-point reductions, and so its
numbers, are the same in this process or a worker, whatever the machine's default thread count.
Groups are independent (own seed, own run folders, own checkpoint), so ``config.processes`` of
them can train at once: on a CPU, one thread per group and one group per core uses the cores
without the threads of one group stalling each other.

Workers are started with ``spawn`` (no forked OpenMP state) and know the estimators stequiv
registers on import; one registered at run time by the caller's script exists only in this
process, so such a run needs ``processes`` 1.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

import torch

from .._memory import keep_freed_memory
from .._process import die_with_parent
from .config import ExperimentConfig, PairSpec
from .engine import PhaseTimes, TrainData, deterministic_algorithms, run_group
from .parallel import Dist, setup_distributed

__all__ = ["group_pool", "train_groups"]


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` torch intra-op threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _announce(label: str, specs: Sequence[PairSpec], what: str = "") -> None:
    print(f"[reproduce] {label} ({1 + len(specs)} nets){' ' + what if what else ''}: "
          + ", ".join(s.run_id for s in specs), file=sys.stderr, flush=True)


def _in_worker(config: ExperimentConfig, specs: Sequence[PairSpec], data: TrainData,
               out_dirs: Sequence[Path], label: str) -> list[dict[str, float | str]]:
    """Train one group in this worker process; returns its phase times."""
    keep_freed_memory()
    deterministic_algorithms()
    phases = PhaseTimes()
    with torch_threads(config.threads):
        run_group(config, specs, data, out_dirs, setup_distributed(config.device),
                  progress=False, label=label, phases=phases)
    return phases.rows


def group_pool(workers: int) -> ProcessPoolExecutor:
    """``workers`` spawned processes for pair groups, each killed if this process dies: a group
    writes its own run folders, and an orphan would go on writing beside a resumed run."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))


def train_groups(config: ExperimentConfig, groups: Sequence[Sequence[PairSpec]], data: TrainData,
                 runs: Path, dist: Dist, *, progress: bool = True,
                 phases: PhaseTimes | None = None) -> None:
    """Train every group into ``runs/<run id>`` (resuming finished and checkpointed ones).

    ``phases``, if given, receives each group's phases (:func:`run_group`), named after its label
    (e.g. ``group 1 of 4: train``), wherever the group trained.
    """
    phases = PhaseTimes() if phases is None else phases
    labels = [f"group {k} of {len(groups)}" for k in range(1, len(groups) + 1)]
    dirs = [[runs / s.run_id for s in specs] for specs in groups]
    workers = min(config.processes, len(groups))
    if workers == 1 or dist.enabled:
        for label, specs, out_dirs in zip(labels, groups, dirs, strict=True):
            if progress and dist.is_main:
                _announce(label, specs)
            group = PhaseTimes()
            with torch_threads(config.threads):
                run_group(config, specs, data, out_dirs, dist, progress=progress, label=label,
                          phases=group)
            phases.extend(label, group.rows)
        return
    if dist.device.type != "cpu":
        raise ValueError(f"`processes`={config.processes} trains pair groups in CPU worker "
                         f"processes, but the device is {dist.device}; use processes=1 on a GPU")
    with group_pool(workers) as pool:
        futures = {pool.submit(_in_worker, config, specs, data, out_dirs, label): (label, specs)
                   for label, specs, out_dirs in zip(labels, groups, dirs, strict=True)}
        if progress:
            for label, specs in futures.values():
                _announce(label, specs, f"queued on {workers} worker processes")
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                label, specs = futures[future]
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise RuntimeError(f"{label} failed in a worker process: {error} (workers "
                                       "know the estimators stequiv registers on import; use "
                                       "processes=1 for one registered at run time)") from error
                phases.extend(label, future.result())
                if progress:
                    _announce(label, specs, "done")
