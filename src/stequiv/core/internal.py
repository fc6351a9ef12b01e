"""Internal hooks of :mod:`stequiv.core` for stequiv's own tests, benchmarks and tools.

Not the user-facing API (that is :mod:`stequiv.core`): these names may change between versions
without notice. They live in this one documented module so that nothing outside ``core`` imports
one of its private modules. Like all of ``core``, this module does not import torch.

* The registry: :func:`scratch_registry` (registrations inside the block are forgotten after it),
  :func:`unregister_estimator`.
* The map M's evaluation: :class:`BinPlan` (a plan over the bins), :func:`unit_tables` and
  :func:`exact_map` (the tabulated and the exact path), :func:`compiled_kernels` (numba's kernels,
  None where numba is missing) and :func:`numba_loops` (use them or the NumPy loops),
  :func:`fast_evaluate` with :class:`MapSpec`, the tails
  :class:`Integrated` and :class:`Translate`, :func:`integrate_reciprocal` (∫ 1/Q̂′ with its error).
* :func:`clear_caches` — forget every cached plan and primitive (cold-start timings).
* The estimator catalogue of docs/estimators.md: :func:`catalogue_table`, :func:`update_doc`.
* Building blocks of estimator definitions: :func:`positive_float`, :class:`IdentityShape`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from . import _estimator, _fastmap, _plan, _primitives
from ._catalogue import catalogue_table as catalogue_table
from ._catalogue import update_doc as update_doc
from ._fastmap import MapSpec as MapSpec
from ._fastmap import _compiled as compiled_kernels
from ._fastmap import evaluate as fast_evaluate
from ._integrate import integrate_reciprocal as integrate_reciprocal
from ._plan import BinPlan as BinPlan
from ._remap import _exact as exact_map
from ._remap import _unit_tables as unit_tables
from ._tails import Integrated as Integrated
from ._tails import Translate as Translate
from ._validate import positive_float as positive_float
from .estimators._common import IdentityShape as IdentityShape

__all__ = ["BinPlan", "IdentityShape", "Integrated", "MapSpec", "Translate", "catalogue_table",
           "clear_caches", "compiled_kernels", "exact_map", "fast_evaluate", "integrate_reciprocal",
           "numba_loops", "positive_float", "scratch_registry", "unit_tables", "unregister_estimator", "update_doc"]


@contextlib.contextmanager
def scratch_registry() -> Iterator[None]:
    """Within the block, estimators may be registered freely; afterwards the registry holds
    exactly what it held before."""
    saved = dict(_estimator._REGISTRY)
    try:
        yield
    finally:
        _estimator._REGISTRY.clear()
        _estimator._REGISTRY.update(saved)


def unregister_estimator(name: str) -> None:
    """Remove the estimator registered as ``name`` (a test's custom one, after the test)."""
    del _estimator._REGISTRY[name]


def clear_caches() -> None:
    """Forget every cached remap plan and bin primitive."""
    _plan._plan.cache_clear()
    _primitives.bin_primitive.cache_clear()


@contextlib.contextmanager
def numba_loops(use: bool) -> Iterator[None]:
    """Within the block, the table path runs numba's compiled loops (``use``) or the NumPy ones
    (what ``STEQUIV_NUMBA=0`` selects for a whole process)."""
    saved = _fastmap.USE_NUMBA
    _fastmap.USE_NUMBA = use
    try:
        yield
    finally:
        _fastmap.USE_NUMBA = saved
