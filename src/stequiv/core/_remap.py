r"""The equivalence math of the paper's Eq. 4: α, M, M⁻¹ and M′ for any positive estimator.

.. math::
    \alpha = \frac{\Delta}{\int_{w_-}^{w_+} ds/\hat Q'(s)}, \qquad
    M(w) = w_b + \alpha \int_{w_b}^{w} \frac{ds}{\hat Q'(s)}, \qquad M'(w) = \frac{\alpha}{\hat Q'(w)}.

In the grid coordinate :math:`v = w/\Delta - z` of a bin-unit estimator :math:`h` (1-periodic), with
the reference boundary :math:`b_0 = l + \tfrac12`, :math:`I = \int_{b_0}^{b_0+1} ds/h(s)` and
:math:`P(d) = \int_{b_0}^{b_0+d} ds/h(s)`,

.. math::  M(v) = b_0 + \alpha\,(nI + P(d)), \quad n = \lfloor v - b_0 \rfloor,\ d = v - b_0 - n,

and :math:`\alpha = 1/I` (Δ cancels), or :math:`\alpha := 1` for a quantizer without a finite bin
(binary). M maps every bin ``[b, b+1)`` onto itself, fixes every boundary point and, for symmetric
estimators, every bin centre. Outside the clip range ``[l, u]`` an estimator with ``tail="zero"``
vanishes (Appendix G): its twin is a PWL estimator on ``[M(l), M(u)]``, and M is continued there by
a translation (both nets' weights are frozen there, so any increasing continuation that keeps the
outer bins works; the translation keeps their alignment error at zero). A ``tail="custom"`` estimator
(MAD) is integrated through its own tail. Weight-unit (binary) estimators use
:math:`M(w) = \int_0^w ds/\hat Q'(s)` around the single boundary point 0.

Floating point: after evaluation, any M(w) that rounding pushed across a boundary is moved back by
one ulp, so ``Q(M(w)) == Q(w)`` holds exactly for every finite ``w`` in float32 and float64.
Float32 weights of bin-unit estimators are mapped through a uniform cubic table of one period,
compiled with numba when available (:mod:`._fastmap`), at a few times the cost of ``np.clip``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _fastmap
from ._estimator import Estimator, get_estimator
from ._integrate import PrimitiveTable, integrate_reciprocal
from ._quantizer import UniformQuantizer

__all__ = [
    "NoRemapError",
    "alpha",
    "remap",
    "remap_derivative",
    "unremap",
]

Arr = np.ndarray
EstimatorLike = str | dict | Estimator
_WEIGHT_TABLE_RADIUS = 16.0


class NoRemapError(ValueError):
    """The estimator has no map M (it is negative somewhere, or zero inside a bin)."""


# ------------------------------------------------------------------------------------ positivity
def _check_positive(est: Estimator, xs: Arr, where: str) -> None:
    vals = np.asarray(est.derivative(xs), dtype=np.float64)
    bad_neg = vals < 0
    if np.any(bad_neg):
        x0 = float(xs[np.argmax(bad_neg)])
        raise NoRemapError(
            f"{est.describe()} is negative at {x0:.4g} ({where}): no map M exists. Appendix G: "
            "on ranges where Q̂' < 0 the twin would need a negated STE, which stequiv does not "
            "build; use a positive estimator"
        )
    bad_zero = ~(vals > 0) | ~np.isfinite(vals)
    if np.any(bad_zero):
        x0 = float(xs[np.argmax(bad_zero)])
        raise NoRemapError(
            f"{est.describe()} is zero or not finite at {x0:.4g} ({where}), so ∫ds/Q̂' diverges "
            "inside a bin and M does not exist (Theorem 5.1 needs Q̂' >= L- > 0). Appendix G's "
            "PWL twin covers only estimators that vanish *outside* the range; with Adam "
            "(Table 2) the STE twin needs no M"
        )


# ---------------------------------------------------------------------------------- bin units
@dataclass(frozen=True, eq=False)
class _BinPrimitive:
    """P(d) on [0, 1] for a 1-periodic bin-unit estimator, closed form or tabulated."""

    est: Estimator
    kinks: tuple[float, ...]
    closed: bool
    integral: float
    error: float

    @functools.cached_property
    def table(self) -> PrimitiveTable:
        """Built on first use (M, M⁻¹), not for α: 1024 cells seed the closed form's inverse,
        4096 cells are the numeric P."""
        def h(d: Arr) -> Arr:
            return np.asarray(self.est.derivative(d + 0.5), dtype=np.float64)

        return PrimitiveTable.build(h, 0.0, 1.0, self.kinks, cells=1024 if self.closed else 4096)

    def h(self, d: Arr) -> Arr:
        return self.est.derivative(d + 0.5)

    def __call__(self, d: Arr) -> Arr:
        closed = self.est.boundary_primitive
        return self.table(d) if closed is None else closed(d)

    def inverse(self, y: Arr) -> Arr:
        if not self.closed:
            return self.table.inverse(y)
        d = np.interp(y.astype(np.float64), self.table.values, self.table.nodes).astype(y.dtype)
        for _ in range(3):
            d = np.clip(d - (self(d) - y) * self.h(d), 0.0, 1.0).astype(y.dtype, copy=False)
        return d


@functools.lru_cache(maxsize=256)
def _bin_primitive(est: Estimator) -> _BinPrimitive:
    if not est.cyclical:
        raise NoRemapError(
            f"{est.describe()} is not cyclical (its shape differs from bin to bin), so α and M "
            "of Eq. 4 are not defined; Theorem 5.1 covers cyclical estimators only"
        )
    kinks = tuple(sorted({(k - 0.5) % 1.0 for k in est.kinks}))
    grid = np.unique(np.concatenate([np.linspace(0.0, 1.0, 8193), kinks]))
    _check_positive(est, grid + 0.5, "within a bin")

    closed = est.boundary_primitive
    if closed is not None:
        return _BinPrimitive(est, kinks, True, float(closed(np.float64(1.0))), 0.0)

    def h(d: Arr) -> Arr:
        return np.asarray(est.derivative(d + 0.5), dtype=np.float64)

    integral, error = integrate_reciprocal(h, 0.0, 1.0, kinks)
    return _BinPrimitive(est, kinks, False, integral, error)


# ------------------------------------------------------------------------------- weight units
@dataclass(frozen=True, eq=False)
class _WeightPrimitive:
    """W(w) = ∫_0^w ds/h(s) for a weight-unit estimator, on its support."""

    est: Estimator
    lo: float
    hi: float
    table: PrimitiveTable | None

    def __call__(self, w: Arr) -> Arr:
        closed = self.est.weight_primitive
        if closed is not None:
            return closed(w)
        assert self.table is not None
        return self.table(w) - self.table(np.zeros((), w.dtype))

    def edge(self, x: float) -> float:
        with np.errstate(all="ignore"):
            return float(self(np.asarray(x, dtype=np.float64)))

    def inverse(self, y: Arr) -> Arr:
        """Bisection on the monotone W, then Newton polish (robust for fast-growing primitives)."""
        ys = y.astype(np.float64)
        lo = np.full_like(ys, max(self.lo, -_WEIGHT_TABLE_RADIUS * 64))
        hi = np.full_like(ys, min(self.hi, _WEIGHT_TABLE_RADIUS * 64))
        with np.errstate(all="ignore"):
            for _ in range(80):
                mid = 0.5 * (lo + hi)
                below = self(mid) < ys
                lo = np.where(below, mid, lo)
                hi = np.where(below, hi, mid)
        return (0.5 * (lo + hi)).astype(y.dtype)


@functools.lru_cache(maxsize=256)
def _weight_primitive(est: Estimator) -> _WeightPrimitive:
    lo, hi = (float(s) for s in est.support)
    inner_lo = lo if np.isfinite(lo) else -_WEIGHT_TABLE_RADIUS
    inner_hi = hi if np.isfinite(hi) else _WEIGHT_TABLE_RADIUS
    xs = np.linspace(inner_lo, inner_hi, 16385)[1:-1]
    _check_positive(est, xs, "inside its support")
    table = None
    if est.weight_primitive is None:
        if not (np.isfinite(lo) and np.isfinite(hi)) or not np.isfinite(1.0 / est.derivative(np.array([lo, hi]))).all():
            lo, hi = inner_lo, inner_hi

        def h(s: Arr) -> Arr:
            return np.asarray(est.derivative(s), dtype=np.float64)

        table = PrimitiveTable.build(h, lo, hi, tuple(est.kinks), cells=8192)
    return _WeightPrimitive(est, lo, hi, table)


# ------------------------------------------------------------------------------------- the map
@dataclass(frozen=True, eq=False)
class RemapPlan:
    """α, M and M⁻¹ of one estimator on one quantizer grid (Δ-free, in grid coordinates)."""

    est: Estimator
    lower: int
    upper: int
    offset: float
    alpha: float
    forward: Callable[[Arr], Arr]
    backward: Callable[[Arr], Arr]


def plan_for(estimator: EstimatorLike, quantizer: UniformQuantizer) -> RemapPlan:
    """The (cached) :class:`RemapPlan` of ``estimator`` on ``quantizer``'s grid."""
    est = get_estimator(estimator)
    if not isinstance(quantizer, UniformQuantizer):
        raise TypeError(f"`quantizer` must be a UniformQuantizer or BinaryQuantizer, got {quantizer!r}")
    return _plan(est, quantizer.lower, quantizer.upper, quantizer.offset)


@functools.lru_cache(maxsize=256)
def _plan(est: Estimator, lower: int, upper: int, offset: float) -> RemapPlan:
    if est.units == "weight" and est.kind != "binary" and not est.cyclical:
        raise NoRemapError(
            f"{est.describe()} is not cyclical (its shape differs from bin to bin), so α and M "
            "of Eq. 4 are not defined; Theorem 5.1 covers cyclical estimators only"
        )
    if est.units == "weight":
        return _weight_plan(est, lower, upper, offset)
    prim = _bin_primitive(est)
    b0 = lower + 0.5
    a = 1.0 / prim.integral if upper - lower >= 2 else 1.0
    period = prim.integral

    def core(v: Arr) -> Arr:
        n = np.floor(v - b0)
        d = v - b0 - n
        return b0 + a * (n * period + prim(d))

    def core_inv(y: Arr) -> Arr:
        r = (y - b0) / y.dtype.type(a)
        n = np.floor(r / period)
        return b0 + n + prim.inverse(r - n * period)

    if est.tail == "extend":
        return RemapPlan(est, lower, upper, offset, a, core, core_inv)

    @functools.cache
    def range_ends() -> tuple[float, float]:
        """M at the range ends, where the tails start (lazy: a numeric P tabulates on first use)."""
        return float(core(np.float64(lower))), float(core(np.float64(upper)))

    if est.tail == "zero":
        def tail_fwd(v: Arr, edge: float, m_edge: float) -> Arr:
            return m_edge + (v - edge)

        def tail_inv(y: Arr, edge: float, m_edge: float) -> Arr:
            return edge + (y - m_edge)
    else:
        prim_t, inv_t = est.tail_primitive, est.tail_primitive_inverse
        if prim_t is None or inv_t is None:
            raise NoRemapError(f"{est.describe()} has a custom tail without `tail_primitive` and "
                               "`tail_primitive_inverse`, so M is not defined beyond the range")

        def tail_fwd(v: Arr, edge: float, m_edge: float) -> Arr:
            return m_edge + a * prim_t(v, edge, lower, upper, offset)

        def tail_inv(y: Arr, edge: float, m_edge: float) -> Arr:
            return inv_t((y - m_edge) / a, edge, lower, upper, offset)

    def forward(v: Arr) -> Arr:
        m_lo, m_hi = range_ends()
        out = core(np.clip(v, lower, upper))
        out = np.where(v > upper, tail_fwd(v, upper, m_hi), out)
        return np.where(v < lower, tail_fwd(v, lower, m_lo), out).astype(v.dtype, copy=False)

    def backward(y: Arr) -> Arr:
        m_lo, m_hi = range_ends()
        out = core_inv(np.clip(y, m_lo, m_hi).astype(y.dtype))
        out = np.where(y > m_hi, tail_inv(y, upper, m_hi), out)
        return np.where(y < m_lo, tail_inv(y, lower, m_lo), out).astype(y.dtype, copy=False)

    return RemapPlan(est, lower, upper, offset, a, forward, backward)


def _weight_plan(est: Estimator, lower: int, upper: int, offset: float) -> RemapPlan:
    if upper - lower != 1 or (lower + 0.5 + offset) != 0.0:
        raise ValueError(
            f"{est.describe()} is a binary estimator (written in weight units around the boundary "
            "point 0); use it with BinaryQuantizer(), not a multi-bit quantizer"
        )
    prim = _weight_primitive(est)
    lo, hi = prim.lo, prim.hi
    m_lo, m_hi = prim.edge(lo), prim.edge(hi)

    def forward(w: Arr) -> Arr:
        inside = np.clip(w, lo, hi)
        # both branches are evaluated: ±inf edges (infinite support, or M infinite at the edge)
        # give inf - inf in the branch that np.where discards
        with np.errstate(all="ignore"):
            out = prim(inside)
            out = np.where(w > hi, m_hi + (w - hi), out)
            out = np.where(w < lo, m_lo + (w - lo), out)
        if not np.all(np.isfinite(out)):
            raise NoRemapError(
                f"{est.describe()} vanishes at the edge of its support [{lo:g}, {hi:g}] so fast that "
                "M maps weights at or beyond it to ±∞ (Appendix G): such weights never move under "
                "this estimator; keep initial weights strictly inside the support"
            )
        return out.astype(w.dtype, copy=False)

    def backward(y: Arr) -> Arr:
        inner = np.clip(y, m_lo, m_hi)
        out = prim.inverse(inner)
        with np.errstate(all="ignore"):  # as in forward
            out = np.where(y > m_hi, hi + (y - m_hi), out)
            return np.where(y < m_lo, lo + (y - m_lo), out).astype(y.dtype, copy=False)

    return RemapPlan(est, lower, upper, offset, 1.0, forward, backward)


# ------------------------------------------------------------------------------ public verbs
def _float_array(name: str, w: Any) -> Arr:
    arr = np.asarray(w)
    if arr.dtype not in (np.float32, np.float64):
        if np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.complexfloating):
            arr = arr.astype(np.float64)
        else:
            raise ValueError(f"`{name}` must be a real float32/float64 array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` holds NaN or inf at {int((~np.isfinite(arr)).sum())} entries")
    return arr


def _grid(plan: RemapPlan, quantizer: UniformQuantizer, w: Arr) -> Arr:
    return w if plan.est.units == "weight" else quantizer.to_grid(w)


def _ungrid(plan: RemapPlan, quantizer: UniformQuantizer, v: Arr, like: Arr) -> Arr:
    return v.astype(like.dtype) if plan.est.units == "weight" else quantizer.from_grid(v, like=like)


def _keep_bins(quantizer: UniformQuantizer, w: Arr, m: Arr) -> Arr:
    """Undo rounding that pushed M(w) across a boundary, so that Q(M(w)) == Q(w) exactly.

    Only weights within a few ulp of a boundary point are affected: they are put on that boundary
    point and stepped into the bin of ``w`` (M fixes boundary points, so this is the correctly
    rounded answer up to those ulp). The steps start at one ulp and double, and are never below
    eps·Δ/256: a boundary point at 0 has subnormal ulps, while ``code`` rounds at the scale of Δ
    (in float64, BinaryQuantizer puts every w ∈ (-1.1e-16, 0) in the +1 bin).
    """
    target = quantizer.code(w)
    bad = quantizer.code(m) != target
    if not bad.any():
        return m
    m = m.copy()
    dt = m.dtype.type
    delta = np.broadcast_to(quantizer.delta_for(w), w.shape)[bad].astype(m.dtype)
    inv = np.broadcast_to(quantizer.inverse_delta_for(w), w.shape)[bad]
    k = target[bad]
    above = m[bad] > w[bad]
    edge = np.where(above, k + 0.5, k - 0.5)
    fixed = ((edge + dt(quantizer.offset)) * delta).astype(m.dtype)
    toward = np.where(above, -1.0, 1.0).astype(m.dtype)
    step = np.maximum(np.spacing(np.abs(fixed)), np.finfo(m.dtype).eps * delta / 256)
    for _ in range(64):
        code = np.rint(np.clip(fixed * inv - dt(quantizer.offset), quantizer.lower, quantizer.upper))
        wrong = code != k
        if not wrong.any():
            m[bad] = fixed
            return m
        fixed = np.where(wrong, fixed + toward * step, fixed)
        step = np.where(wrong, 2 * step, step)
    raise AssertionError("could not place M(w) inside the bin of w")  # impossible for finite w


@functools.lru_cache(maxsize=256)
def _unit_tables(est: Estimator) -> tuple[_fastmap.UnitTable | None, _fastmap.UnitTable | None]:
    return _fastmap.unit_tables(_bin_primitive(est))


def _apply(plan: RemapPlan, quantizer: UniformQuantizer, w: Arr, inverse: bool) -> Arr:
    """M(w) (or M⁻¹(w)): by the table for float32 where it applies, else exactly."""
    fn = plan.backward if inverse else plan.forward

    def exact(q: UniformQuantizer, part: Arr) -> Arr:
        return _keep_bins(q, part, _ungrid(plan, q, fn(_grid(plan, q, part)), part))

    est = plan.est
    if w.dtype != np.float32 or w.size == 0 or est.units != "bin":
        return exact(quantizer, w)
    table = _unit_tables(est)[inverse]
    if table is None:
        return exact(quantizer, w)
    if table.identity and est.tail != "custom":
        return w.copy()  # M = id (the STE, PWL): exact
    spec = _fastmap.MapSpec.of(_bin_primitive(est), plan.lower, plan.upper, plan.offset, inverse)
    return _fastmap.evaluate(table, spec, quantizer, w, exact)


def alpha(estimator: EstimatorLike, quantizer: UniformQuantizer) -> float | Arr:
    """The learning-rate factor α of Eq. 4 (an array, one per channel, if Δ is per channel)."""
    a = plan_for(estimator, quantizer).alpha
    return np.full(quantizer.delta_array.shape, a) if quantizer.per_channel else a


def remap(estimator: EstimatorLike, quantizer: UniformQuantizer, w: Any) -> Arr:
    """M(w) of Eq. 4, same shape and dtype as ``w`` (float32 or float64)."""
    return _apply(plan_for(estimator, quantizer), quantizer, _float_array("w", w), inverse=False)


def unremap(estimator: EstimatorLike, quantizer: UniformQuantizer, w: Any) -> Arr:
    """M⁻¹(w), same shape and dtype as ``w``."""
    return _apply(plan_for(estimator, quantizer), quantizer, _float_array("w", w), inverse=True)


def remap_derivative(estimator: EstimatorLike, quantizer: UniformQuantizer, w: Any) -> Arr:
    """M′(w) = α/Q̂′(w) (Eq. 13); 1 where a vanishing estimator's M is continued by translation."""
    plan = plan_for(estimator, quantizer)
    w = _float_array("w", w)
    v = _grid(plan, quantizer, w)
    est = plan.est
    g = np.asarray(est.gradient(v, quantizer.lower, quantizer.upper, quantizer.offset), dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = np.where(g > 0, plan.alpha / np.where(g > 0, g, 1.0), 1.0)
    return out.astype(w.dtype)
