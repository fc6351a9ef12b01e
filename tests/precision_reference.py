"""Reference values of M and M⁻¹ at any bit width, and their errors in ulps (issue 10, item 3).

The quantizer has Δ = 2⁻⁷ and z = ½, so ``v = w/Δ - z`` is exact in float64 for every float32 or
float64 weight. With the boundary j + ½ just below v and d = v - ½ - j (exact), the reference is

    M(v) = b0 + aI·(n + T(d)),  n = j + ½ - b0,  T(d) = P(d)/I,

with T evaluated in float64 near 0 (where float64 holds it to ~1e-16) and M⁻¹ from T⁻¹ found by
bisection on T (independent of the library's Newton inverse). Beyond the clip range the reference
continues by the estimator's own tail from the reference M at the edge. Errors are
``|result - reference|`` in ulps of max(|reference|, Δ) of the result's dtype. Used by
tests/test_core_precision.py and benchmarks/bench_precision.py (which writes docs/precision.md).
"""

from __future__ import annotations

import numpy as np

import stequiv.core as core
from stequiv.core import plan_for
from stequiv.core.internal import BinPlan

DELTA = 2.0**-7
OFFSET = 0.5
NEAR = 64  # ulps on each side of every boundary and clip edge


def catalogue_with_m() -> list[core.Estimator]:
    """Every bin-unit catalogue estimator that has an M (PSG with ε = 0.1), plus a sharp HTGE.

    The catalogue only: estimators registered by other code in the same process (the study's
    ``study_cosine``, a user's) have no precision claim, and would make the cases depend on
    which modules the test run imported first."""
    out = []
    for name in core.list_estimators():
        est = core.get_estimator(name, **({"eps": 0.1} if name == "psg" else {}))
        if not type(est).__module__.startswith("stequiv.core.estimators."):
            continue
        if est.units == "bin":
            try:
                core.alpha(est, core.UniformQuantizer.symmetric(2, 1.0))
            except core.NoRemapError:
                continue
            out.append(est)
    return [*out, core.get_estimator("htge", t=30.0)]


def quantizer(bits: int) -> core.UniformQuantizer:
    return core.UniformQuantizer(bits=bits, delta=DELTA, offset=OFFSET)


def _unit(plan: BinPlan):
    """T(d) = P(d)/I and its inverse by bisection (float64)."""
    total = plan.prim.integral

    def t(d: np.ndarray) -> np.ndarray:
        return np.asarray(plan.prim(np.asarray(d, dtype=np.float64)), dtype=np.float64) / total

    def t_inv(s: np.ndarray) -> np.ndarray:
        lo, hi = np.zeros_like(s), np.ones_like(s)
        for _ in range(64):
            mid = 0.5 * (lo + hi)
            below = t(mid) < s
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return 0.5 * (lo + hi)

    return t, t_inv


def reference(plan: BinPlan, v: np.ndarray, inverse: bool) -> tuple[np.ndarray, np.ndarray]:
    """(anchor, offset) with M(v) (or M⁻¹(v)) = anchor + offset; anchor an exact half-integer."""
    t, t_inv = _unit(plan)
    b0, period = plan.lower + 0.5, plan.period

    def periodic(x):
        j = np.floor(x - 0.5)
        return b0 + (j + 0.5 - b0) * period, period * t(x - 0.5 - j)

    def periodic_inverse(y):
        if period == 1.0:
            j = np.floor(y - 0.5)
            return j + 0.5, t_inv(y - 0.5 - j)
        r = (y - b0) / period
        n = np.floor(r)
        return b0 + n, t_inv(r - n)

    if plan.tail is None:
        return periodic_inverse(v) if inverse else periodic(v)
    ends = [sum(periodic(np.float64(e))) for e in (plan.lower, plan.upper)]
    lo, hi = (ends[0], ends[1]) if inverse else (plan.lower, plan.upper)
    anchor, off = periodic_inverse(np.clip(v, lo, hi)) if inverse else periodic(np.clip(v, lo, hi))
    for edge, m_edge, side in ((plan.lower, ends[0], v < lo), (plan.upper, ends[1], v > hi)):
        if not side.any():
            continue
        if inverse:
            tail = plan.tail.inverse(v[side], edge, m_edge)
            anchor[side], off[side] = edge, tail - edge
        else:
            tail = plan.tail.forward(v[side], edge, m_edge) - m_edge
            anchor[side] = edge
            off[side] = (m_edge - edge) + tail
    return anchor, off


def sample(bits: int, dtype, rng: np.random.Generator, n_random: int = 2000,
           n_boundaries: int | None = None) -> np.ndarray:
    """Weights in dtype: random ones over and beyond the range, and ±NEAR ulps around the
    boundaries (all, or ``n_boundaries`` of them incl. the first, last and central ones) and
    around both clip edges."""
    q = quantizer(bits)
    span = q.upper - q.lower
    v = rng.uniform(q.lower - 2.0, q.upper + 2.0, n_random)
    if n_boundaries is None or span <= n_boundaries:
        bounds = q.boundaries
    else:
        pick = rng.integers(0, span, n_boundaries - 3)
        bounds = q.lower + 0.5 + np.unique(np.concatenate([pick, [0, span // 2, span - 1]]))
    centres = np.concatenate([bounds, [q.lower, q.upper]])
    base = ((centres + OFFSET) * DELTA).astype(dtype)
    near = [base]
    for direction in (-np.inf, np.inf):
        step = base
        for _ in range(NEAR):
            step = np.nextafter(step, dtype(direction))
            near.append(step)
    return np.concatenate([((v + OFFSET) * DELTA).astype(dtype), *near])


def ulp_errors(est: core.Estimator, bits: int, w: np.ndarray, inverse: bool
               ) -> tuple[np.ndarray, np.ndarray]:
    """|M(w) - reference| (M⁻¹ if ``inverse``) in ulps of max(|reference|, Δ), w's dtype; and
    ulp(max(|w|, Δ)) / ulp(max(|reference|, Δ)): how many output ulps one input ulp is worth at
    slope 1 (the input's own rounding, times the map's slope κ, bounds what any method gets)."""
    q = quantizer(bits)
    plan = plan_for(est, q)
    got = (core.unremap if inverse else core.remap)(est, q, w).astype(np.float64)
    v = w.astype(np.float64) / DELTA - OFFSET  # exact: Δ is a power of two, z = ½
    anchor, off = reference(plan, v, inverse)
    err = np.abs((got / DELTA - OFFSET - anchor) - off) * DELTA  # both sides exact but the last
    size = np.spacing(np.maximum(np.abs((anchor + off + OFFSET) * DELTA), DELTA).astype(w.dtype))
    given = np.spacing(np.maximum(np.abs(w), w.dtype.type(DELTA)))
    return err / size.astype(np.float64), given.astype(np.float64) / size.astype(np.float64)
