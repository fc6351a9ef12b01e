r"""The STE-side twin of an estimator (Tables 1 and 2, and Appendix G).

* A positive estimator (on the whole line, or with its own tail like MAD) has the STE as twin.
* An estimator that vanishes outside ``[w_min, w_max]`` cannot be mimicked by the STE (its weights
  can get stuck); Appendix G's twin is :math:`\mathrm{PWL}_{M(w_{min}), M(w_{max})}` under SGD and
  :math:`\mathrm{PWL}_{w_{min}, w_{max}}` under Adam.
* An estimator that is negative somewhere, or zero inside a bin, has no twin: an error says why.

Rule for a support edge where :math:`\int ds/\hat Q'` diverges (ApproxSign and RBNN at their
edges, where Q̂′ → 0 linearly): M maps the edge to ±∞, so the twin's PWL is unbounded on that side
(every weight strictly inside the support has a finite M(w), and the Q̂-net cannot move a weight to
the edge, where its gradient vanishes); with both edges infinite the twin is the STE.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from ._estimator import Estimator, get_estimator
from ._plan import EstimatorLike, RemapPlan, plan_for
from ._primitives import NoRemapError
from ._quantizer import UniformQuantizer
from .estimators._basic import PWL, STE

__all__ = ["ste_twin"]

OptimizerKind = Literal["sgd", "adam"]


def _grid_edges(est: Estimator, quantizer: UniformQuantizer) -> tuple[float, float]:
    """The interval (grid coordinate) outside which the estimator vanishes."""
    if est.units == "bin":
        if isinstance(est, PWL) and est.lo is not None and est.hi is not None:
            return float(est.lo), float(est.hi)
        return float(quantizer.lower), float(quantizer.upper)
    half = 0.5 * float(quantizer.delta_array.max())
    lo, hi = (float(s) / (2 * half) - quantizer.offset for s in est.support)
    return lo, hi


def _edge_image(plan: RemapPlan, edge: float) -> float:
    """M at a support edge of a weight-unit estimator: ±∞ where M diverges there (module docstring)."""
    try:
        return float(plan.forward(np.array([edge]))[0])
    except NoRemapError:
        return math.copysign(math.inf, edge)


def ste_twin(estimator: EstimatorLike, quantizer: UniformQuantizer,
             optimizer: OptimizerKind = "sgd") -> Estimator:
    """The estimator the STE-net uses to mirror ``estimator`` (STE, or a PWL per Appendix G).

    Raises :class:`~stequiv.core.NoRemapError` for estimators without a map M.
    """
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"`optimizer` must be 'sgd' or 'adam', got {optimizer!r}")
    est = get_estimator(estimator)
    plan = plan_for(est, quantizer)  # raises NoRemapError for negative / zero-in-bin estimators
    vanishes = est.tail == "zero" if est.units == "bin" else bool(np.isfinite(est.support).any())
    if not vanishes:
        return STE()
    lo, hi = _grid_edges(est, quantizer)
    if optimizer == "sgd":
        if est.units == "weight":
            w_lo, w_hi = (_edge_image(plan, s) for s in est.support)
            lo, hi = (x / float(quantizer.delta_array.max()) - quantizer.offset for x in (w_lo, w_hi))
        else:
            lo, hi = (float(plan.forward(np.array([x]))[0]) for x in (lo, hi))
    if not (np.isfinite(lo) or np.isfinite(hi)):
        return STE()
    if (lo, hi) == (quantizer.lower, quantizer.upper):
        return PWL()
    return PWL(lo=lo, hi=hi)
