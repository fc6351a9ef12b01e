"""Internal hooks of :mod:`stequiv.experiments` for stequiv's own tests and benchmarks.

Not the user-facing API (that is :mod:`stequiv.experiments` and its packages' faces): these names
may change between versions without notice. They live in this one documented module so that tests
and benchmarks never import an underscored module.

* :class:`Group` — the engine's group of one Q̂-net and its partners, stepped by hand
  (``Group(config, specs, data, dist).train_step(batch)``), and :func:`index_batches`, this rank's
  share of each global batch of an epoch (what ``run_group`` feeds it).
* :func:`interrupted_pairs` — paired training that stops (``KeyboardInterrupt``, as a Ctrl-C
  would) on reaching a step: for resume tests.
* :func:`interrupted_study` — a study that stops after a number of trained batches of cells.
* :func:`pair_metrics` — the study's (Ē, agreement) of two nets (NaN where M overflows).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .engine import index_batches
from .engine._pair import _Group as Group
from .study import _study
from .study._study import _pair_metrics as pair_metrics

__all__ = ["Group", "index_batches", "interrupted_pairs", "interrupted_study", "pair_metrics"]


@contextlib.contextmanager
def interrupted_pairs(step: int) -> Iterator[None]:
    """Within the block, every group raises ``KeyboardInterrupt`` when asked to train past ``step``."""
    original = Group.train_step

    def stop(self: Group, batch: Any) -> None:
        if self.step == step:
            raise KeyboardInterrupt
        original(self, batch)

    Group.train_step = stop  # type: ignore[method-assign]
    try:
        yield
    finally:
        Group.train_step = original  # type: ignore[method-assign]


@contextlib.contextmanager
def interrupted_study(batches: int) -> Iterator[None]:
    """Within the block, a study raises ``KeyboardInterrupt`` after training ``batches`` batches
    of cells (each one's rows saved, as after a Ctrl-C between batches)."""
    original = _study._train_batch
    done = {"n": 0}

    def stop(*args: Any) -> Any:
        if done["n"] == batches:
            raise KeyboardInterrupt
        done["n"] += 1
        return original(*args)

    _study._train_batch = stop
    try:
        yield
    finally:
        _study._train_batch = original
