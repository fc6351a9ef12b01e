r"""The primitives of :math:`1/\hat Q'` that the map M is built from (Eq. 4), one per estimator.

* :class:`BinPrimitive`: :math:`P(d) = \int_{b}^{b+d} ds/h(s)` on one period ``d ∈ [0, 1]`` of a
  1-periodic bin-unit estimator h, from a boundary b, with :math:`I = P(1)`: the estimator's closed
  form where it has one, else a quadrature table; inverted by Newton's method.
* :class:`WeightPrimitive`: :math:`W(w) = \int_0^w ds/\hat Q'(s)` of a weight-unit (binary)
  estimator on its support, inverted by bisection.

Both are cached per estimator (estimators are frozen, hashable dataclasses). Building one checks
that :math:`\hat Q' > 0` where it is integrated, and raises :class:`NoRemapError` otherwise.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ._estimator import Estimator
from ._integrate import PrimitiveTable, integrate_reciprocal

__all__ = ["BinPrimitive", "NoRemapError", "WeightPrimitive", "bin_primitive", "weight_primitive"]

Arr = np.ndarray
WEIGHT_TABLE_RADIUS = 16.0


class NoRemapError(ValueError):
    """The estimator has no map M (it is negative somewhere, or zero inside a bin)."""


# ------------------------------------------------------------------------------------ positivity
def _check_positive(est: Estimator, xs: Arr, where: str) -> None:
    with np.errstate(all="ignore"):  # overflow or underflow shows up as a value refused below
        vals = np.asarray(est.derivative(xs), dtype=np.float64)
    failures = (
        (vals < 0, "is negative at {x} ({where}): no map M exists. Appendix G: on ranges where "
         "Q̂' < 0 the twin would need a negated STE, which stequiv does not build; use a "
         "positive estimator"),
        (~(vals > 0) | ~np.isfinite(vals),
         "is zero or not finite at {x} ({where}), so ∫ds/Q̂' diverges inside a bin and M does "
         "not exist (Theorem 5.1 needs Q̂' >= L- > 0). Appendix G's PWL twin covers only "
         "estimators that vanish *outside* the range; with Adam (Table 2) the STE twin needs "
         "no M"),
    )
    for bad, why in failures:  # negative first: it is the more specific diagnosis
        if np.any(bad):
            x0 = f"{float(xs[np.argmax(bad)]):.4g}"
            raise NoRemapError(f"{est.describe()} " + why.format(x=x0, where=where))


# ---------------------------------------------------------------------------------- bin units
@dataclass(frozen=True, eq=False)
class BinPrimitive:
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
        return PrimitiveTable.build(self.h64, 0.0, 1.0, self.kinks,
                                    cells=1024 if self.closed else 4096)

    def h(self, d: Arr) -> Arr:
        """h at ``d`` past the boundary, in the dtype of ``d``."""
        return self.est.derivative(d + 0.5)

    def h64(self, d: Arr) -> Arr:
        """h at ``d`` past the boundary, in float64."""
        return np.asarray(self.h(d), dtype=np.float64)

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


def not_cyclical(est: Estimator) -> NoRemapError:
    """The error for an estimator whose shape differs from bin to bin."""
    return NoRemapError(
        f"{est.describe()} is not cyclical (its shape differs from bin to bin), so α and M "
        "of Eq. 4 are not defined; Theorem 5.1 covers cyclical estimators only"
    )


@functools.lru_cache(maxsize=256)
def bin_primitive(est: Estimator) -> BinPrimitive:
    """The (cached) P of a bin-unit estimator; NoRemapError unless it is cyclical and positive."""
    if not est.cyclical:
        raise not_cyclical(est)
    kinks = tuple(sorted({(k - 0.5) % 1.0 for k in est.kinks}))
    grid = np.unique(np.concatenate([np.linspace(0.0, 1.0, 8193), kinks]))
    _check_positive(est, grid + 0.5, "within a bin")

    closed = est.boundary_primitive
    if closed is not None:
        with np.errstate(all="ignore"):  # overflow is refused below
            integral, error = float(closed(np.float64(1.0))), 0.0
    else:
        numeric = BinPrimitive(est, kinks, False, 0.0, 0.0)
        integral, error = integrate_reciprocal(numeric.h64, 0.0, 1.0, kinks)
    _check_integral(est, integral)
    return BinPrimitive(est, kinks, closed is not None, integral, error)


def _check_integral(est: Estimator, integral: float) -> None:
    """Refuse a bin integral ∫1/Q̂′ that float64 cannot hold (α would be 0, inf or NaN)."""
    if np.isfinite(integral) and integral > 0 and np.isfinite(1.0 / integral) and 1.0 / integral > 0:
        return
    raise ValueError(
        f"∫ds/Q̂′ over one bin of {est.describe()} is {integral!r}, so α = 1/∫ is not a finite "
        f"positive float64: {est.out_of_range()}")


# ------------------------------------------------------------------------------- weight units
@dataclass(frozen=True, eq=False)
class WeightPrimitive:
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
        lo = np.full_like(ys, max(self.lo, -WEIGHT_TABLE_RADIUS * 64))
        hi = np.full_like(ys, min(self.hi, WEIGHT_TABLE_RADIUS * 64))
        with np.errstate(all="ignore"):
            for _ in range(80):
                mid = 0.5 * (lo + hi)
                below = self(mid) < ys
                lo = np.where(below, mid, lo)
                hi = np.where(below, hi, mid)
        return (0.5 * (lo + hi)).astype(y.dtype)


@functools.lru_cache(maxsize=256)
def weight_primitive(est: Estimator) -> WeightPrimitive:
    """The (cached) W of a weight-unit estimator; NoRemapError unless positive on its support."""
    lo, hi = (float(s) for s in est.support)
    inner_lo = lo if np.isfinite(lo) else -WEIGHT_TABLE_RADIUS
    inner_hi = hi if np.isfinite(hi) else WEIGHT_TABLE_RADIUS
    xs = np.linspace(inner_lo, inner_hi, 16385)[1:-1]
    _check_positive(est, xs, "inside its support")
    table = None
    if est.weight_primitive is None:
        with np.errstate(divide="ignore"):
            edge_slopes = 1.0 / np.asarray(est.derivative(np.array([lo, hi])), dtype=np.float64)
        if not np.isfinite(edge_slopes).all():  # an infinite support, or h = 0 at its edges
            lo, hi = inner_lo, inner_hi

        def h(s: Arr) -> Arr:
            return np.asarray(est.derivative(s), dtype=np.float64)

        table = PrimitiveTable.build(h, lo, hi, tuple(est.kinks), cells=8192)
    return WeightPrimitive(est, lo, hi, table)
