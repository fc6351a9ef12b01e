r"""α, M and M⁻¹ of one estimator on one quantizer grid (Eq. 4): the :class:`RemapPlan`.

In the grid coordinate :math:`v = w/\Delta - z` of a bin-unit estimator :math:`h` (1-periodic), with
the reference boundary :math:`b_0 = l + \tfrac12`, :math:`I = \int_{b_0}^{b_0+1} ds/h(s)` and
:math:`P(d) = \int_{b_0}^{b_0+d} ds/h(s)`,

.. math::  M(v) = b_0 + \alpha\,(nI + P(d)), \quad n = \lfloor v - b_0 \rfloor,\ d = v - b_0 - n,

evaluated relative to the bin of v (:meth:`BinPlan.periodic`): the error is a few ulps of
max(|M(v)|, 1) whatever the number of bits (docs/precision.md),

and :math:`\alpha = 1/I` (Δ cancels), or :math:`\alpha := 1` for a quantizer without a finite bin
(binary). M maps every bin ``[b, b+1)`` onto itself, fixes every boundary point and, for symmetric
estimators, every bin centre. Outside the clip range ``[l, u]`` M follows the estimator's tail
(:mod:`._tails`). Weight-unit (binary) estimators use :math:`M(w) = \int_0^w ds/\hat Q'(s)` around
the single boundary point 0, translated beyond their support.

A plan also knows its coordinate: bin-unit plans work on ``quantizer.to_grid(w)``, weight-unit
plans on the weight itself (:meth:`RemapPlan.to_coordinate`, :meth:`RemapPlan.from_coordinate`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ._estimator import Estimator, get_estimator
from ._primitives import (
    BinPrimitive,
    NoRemapError,
    WeightPrimitive,
    bin_primitive,
    not_cyclical,
    weight_primitive,
)
from ._quantizer import UniformQuantizer
from ._tails import Tail, Translate, tail_of

__all__ = ["BinPlan", "EstimatorLike", "RemapPlan", "WeightPlan", "plan_for"]

Arr = np.ndarray
EstimatorLike = str | dict | Estimator


@dataclass(frozen=True, eq=False)
class RemapPlan:
    """α, M and M⁻¹ of one estimator on one grid, in the plan's coordinate."""

    est: Estimator
    lower: int
    upper: int
    offset: float
    alpha: float

    def forward(self, v: Arr) -> Arr:
        """M in the plan's coordinate."""
        raise NotImplementedError

    def backward(self, y: Arr) -> Arr:
        """M⁻¹ in the plan's coordinate."""
        raise NotImplementedError

    def to_coordinate(self, quantizer: UniformQuantizer, w: Arr) -> Arr:
        """Weights in the coordinate M is written in."""
        raise NotImplementedError

    def from_coordinate(self, quantizer: UniformQuantizer, v: Arr, like: Arr) -> Arr:
        """Back to weights, in the dtype of ``like``."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class BinPlan(RemapPlan):
    """M of a 1-periodic bin-unit estimator: the periodic map inside ``[l, u]``, a tail beyond."""

    prim: BinPrimitive
    tail: Tail | None

    @property
    def period(self) -> float:
        """aI: the image of one period.

        Exactly 1 whenever the quantizer has a finite bin (α = 1/I by definition): the rounded
        product ``(1/I)·I`` is 1 - 2⁻⁵³ for some I, and I itself moves by an ulp with the SIMD
        path of the transcendental functions, so the product would make the boundaries
        ``b0 + n·aI`` machine-dependent and inexact. α = 1 on the binary grid, so aI = I there.
        """
        return 1.0 if self.upper - self.lower >= 2 else self.alpha * self.prim.integral

    def periodic(self, v: Arr) -> Arr:
        """The periodic map, relative to each weight's own bin (no tail).

        With :math:`j = \\lfloor v - \\tfrac12 \\rfloor` the boundary below v is j + ½ and
        :math:`d = (v - \\tfrac12) - j \\in [0, 1)` is exact (no large reference point is
        subtracted), so :math:`M(v) = b_0 + (j + \\tfrac12 - b_0)\\,aI + \\alpha P(d)` is
        within a few ulps of max(|M(v)|, 1) at any bit width; ``b0 + n·aI`` is exact (integers
        and halves) whenever aI = 1.
        """
        h = v - 0.5
        j = np.floor(h)
        b0 = self.lower + 0.5
        return (b0 + (j + 0.5 - b0) * self.period) + self.alpha * self.prim(h - j)

    def periodic_inverse(self, y: Arr) -> Arr:
        """The inverse of :meth:`periodic`, relative to the bin of ``y`` in the same way."""
        b0 = self.lower + 0.5
        if self.period == 1.0:
            h = y - 0.5
            j = np.floor(h)
            return (j + 0.5) + self.prim.inverse((h - j) * self.prim.integral)
        r = (y - b0) / self.period  # one boundary only (binary grid): b0 is the nearest one
        n = np.floor(r)
        return (b0 + n) + self.prim.inverse((r - n) * self.prim.integral)

    @functools.cached_property
    def range_ends(self) -> tuple[float, float]:
        """M at the range ends, where the tails start (lazy: a numeric P tabulates on first use)."""
        return (float(self.periodic(np.array(self.lower, dtype=np.float64))),
                float(self.periodic(np.array(self.upper, dtype=np.float64))))

    def forward(self, v: Arr) -> Arr:
        if self.tail is None:
            return self.periodic(v)
        m_lo, m_hi = self.range_ends
        out = self.periodic(np.clip(v, self.lower, self.upper))
        out = np.where(v > self.upper, self.tail.forward(v, self.upper, m_hi), out)
        out = np.where(v < self.lower, self.tail.forward(v, self.lower, m_lo), out)
        return out.astype(v.dtype, copy=False)

    def backward(self, y: Arr) -> Arr:
        if self.tail is None:
            return self.periodic_inverse(y)
        m_lo, m_hi = self.range_ends
        out = self.periodic_inverse(np.clip(y, m_lo, m_hi).astype(y.dtype))
        out = np.where(y > m_hi, self.tail.inverse(y, self.upper, m_hi), out)
        out = np.where(y < m_lo, self.tail.inverse(y, self.lower, m_lo), out)
        return out.astype(y.dtype, copy=False)

    def to_coordinate(self, quantizer: UniformQuantizer, w: Arr) -> Arr:
        return quantizer.to_grid(w)

    def from_coordinate(self, quantizer: UniformQuantizer, v: Arr, like: Arr) -> Arr:
        return quantizer.from_grid(v, like=like)


@dataclass(frozen=True, eq=False)
class WeightPlan(RemapPlan):
    """M of a weight-unit estimator: W inside its support, translated beyond."""

    prim: WeightPrimitive

    @functools.cached_property
    def edges(self) -> tuple[float, float, float, float]:
        """The support ``lo, hi`` and M there (±inf where W diverges at the edge)."""
        lo, hi = self.prim.lo, self.prim.hi
        return lo, hi, self.prim.edge(lo), self.prim.edge(hi)

    def forward(self, v: Arr) -> Arr:
        lo, hi, m_lo, m_hi = self.edges
        # both branches are evaluated: ±inf edges (infinite support, or M infinite at the edge)
        # give inf - inf in the branch that np.where discards
        with np.errstate(all="ignore"):
            out = self.prim(np.clip(v, lo, hi))
            out = np.where(v > hi, Translate().forward(v, hi, m_hi), out)
            out = np.where(v < lo, Translate().forward(v, lo, m_lo), out)
        if not np.all(np.isfinite(out)):
            raise NoRemapError(
                f"{self.est.describe()} vanishes at the edge of its support [{lo:g}, {hi:g}] so "
                "fast that M maps weights at or beyond it to ±∞ (Appendix G): such weights never "
                "move under this estimator; keep initial weights strictly inside the support"
            )
        return out.astype(v.dtype, copy=False)

    def backward(self, y: Arr) -> Arr:
        lo, hi, m_lo, m_hi = self.edges
        out = self.prim.inverse(np.clip(y, m_lo, m_hi))
        with np.errstate(all="ignore"):  # as in forward
            out = np.where(y > m_hi, Translate().inverse(y, hi, m_hi), out)
            out = np.where(y < m_lo, Translate().inverse(y, lo, m_lo), out)
        return out.astype(y.dtype, copy=False)

    def to_coordinate(self, quantizer: UniformQuantizer, w: Arr) -> Arr:
        return w

    def from_coordinate(self, quantizer: UniformQuantizer, v: Arr, like: Arr) -> Arr:
        return v.astype(like.dtype)


def plan_for(estimator: EstimatorLike, quantizer: UniformQuantizer) -> RemapPlan:
    """The (cached) :class:`RemapPlan` of ``estimator`` on ``quantizer``'s grid."""
    est = get_estimator(estimator)
    if not isinstance(quantizer, UniformQuantizer):
        raise TypeError(f"`quantizer` must be a UniformQuantizer or BinaryQuantizer, got {quantizer!r}")
    return _plan(est, quantizer.lower, quantizer.upper, quantizer.offset)


@functools.lru_cache(maxsize=256)
def _plan(est: Estimator, lower: int, upper: int, offset: float) -> RemapPlan:
    if est.units == "bin":
        prim = bin_primitive(est)
        a = 1.0 / prim.integral if upper - lower >= 2 else 1.0
        return BinPlan(est, lower, upper, offset, a, prim, tail_of(est, a, lower, upper, offset))
    if est.kind != "binary" and not est.cyclical:
        raise not_cyclical(est)
    if upper - lower != 1 or (lower + 0.5 + offset) != 0.0:
        raise ValueError(
            f"{est.describe()} is a binary estimator (written in weight units around the boundary "
            "point 0); use it with BinaryQuantizer(), not a multi-bit quantizer"
        )
    return WeightPlan(est, lower, upper, offset, 1.0, weight_primitive(est))
