r"""M and M⁻¹ of float32 weights at memory speed: one uniform cubic table per estimator.

In the grid coordinate a bin-unit estimator's map repeats one shape every bin (see
:mod:`._plan`). With :math:`T(d) = P(d)/I`, which maps [0, 1] onto itself, and the boundary
:math:`j + \tfrac12` just below v (or y),

.. math::  M(v) = j + \tfrac12 + T(d), \quad d = v - \tfrac12 - j, \qquad
           M^{-1}(y) = j + \tfrac12 + T^{-1}(s), \quad s = y - \tfrac12 - j

on a grid with a finite bin (aI = 1; the binary grid goes to the exact path). T and T⁻¹ are
tabulated once per estimator as cubic Hermite pieces on ``CELLS`` uniform cells (values and
one-sided slopes at the nodes). Evaluating one is an index computation and a cubic:
``x = d·CELLS`` splits into its cell ``⌊x⌋`` and the position in it (a power of two, so the split
is exact, as is ``d`` itself for ``|v| < 2^21``): the error does not grow with the bit width. A table is used only where it is
as good as a float32 answer: every kink of the estimator sits on a node, every cubic is monotone
(Fritsch–Carlson) and within ``TABLE_TOL`` of the exact map at its cell's midpoint (times the
map's slope where that exceeds 1: one float32 rounding of the input moves it more). Otherwise, and
for float64 weights, :mod:`._remap` evaluates the plan (closed form or quadrature table).

The loops are compiled with numba when it is installed (NumPy runs the same steps otherwise), and
every result is checked in a second pass: :func:`evaluate` returns the indices of the elements
whose M(w) rounded into another bin than w (a few ulp from a boundary point), or that lie on a
tail the table does not cover, and :mod:`._remap` recomputes those by the exact path, which
guarantees ``Q(M(w)) == Q(w)``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._plan import BinPlan
from ._primitives import BinPrimitive
from ._quantizer import UniformQuantizer

__all__ = ["CELLS", "MapSpec", "UnitTable", "evaluate", "unit_tables"]

Arr = np.ndarray
CELLS = 1024  # a power of two; 4 float32 coefficients per cell = 16 KiB, held in L1
_SHIFT = CELLS.bit_length() - 1
_MASK = np.uint32(CELLS - 1)
TABLE_TOL = 2.0**-27  # |table - exact| / max(1, slope) at cell midpoints: 1/16 float32 ulp at 1
_SIDE = 1e-12  # one-sided slopes are taken this far inside the cell (estimators may jump at nodes)
_EXACT = 2.0**21  # |v| below this: v - 1/2 and its split into bin and position are exact
_CHUNK = 1 << 16  # NumPy fallback: elements per pass, to stay in cache
_BLOCK = 1 << 12  # misplaced elements are counted per block, and searched in blocks that have some
_FOUND = 1 << 12  # room for their indices (a second pass makes more room if needed)
# STEQUIV_NUMBA=0 runs the NumPy version of the loops (CI runs the precision tests both ways)
USE_NUMBA = os.environ.get("STEQUIV_NUMBA", "1") != "0"


# ---------------------------------------------------------------------------------- the table
@dataclass(frozen=True, eq=False)
class UnitTable:
    """An increasing map of [0, 1] onto itself as cubic pieces on ``CELLS`` uniform cells.

    ``coef[:, i]`` are the power-basis coefficients of cell ``i`` in its local ``t ∈ [0, 1)``.
    """

    coef: Arr
    identity: bool

    @classmethod
    def fit(cls, f: Callable[[Arr], Arr], slope: Callable[[Arr], Arr],
            kinks: tuple[float, ...]) -> UnitTable | None:
        """The Hermite table of ``f`` (float64, vectorised) with derivative ``slope``, or None.

        ``kinks`` are where ``f''`` may jump; None unless every one is a node and the table meets
        ``TABLE_TOL`` with monotone cubics.
        """
        if any(abs(k * CELLS - round(k * CELLS)) > 1e-9 for k in kinks):
            return None
        nodes = np.arange(CELLS + 1) / CELLS
        y = f(nodes)
        m0 = slope(nodes[:-1] + _SIDE) / CELLS  # each cell's own (one-sided) end slopes
        m1 = slope(nodes[1:] - _SIDE) / CELLS
        dy = np.diff(y)
        coef = np.stack([y[:-1], m0, 3 * dy - 2 * m0 - m1, m0 + m1 - 2 * dy])
        with np.errstate(all="ignore"):
            monotone = (dy > 0) & (m0 >= 0) & (m1 >= 0) & ((m0 / dy) ** 2 + (m1 / dy) ** 2 <= 9)
            mid = coef[0] + 0.5 * (coef[1] + 0.5 * (coef[2] + 0.5 * coef[3]))
            mids = nodes[:-1] + 0.5 / CELLS
            # where the map is steep, float32 rounding of its input already moves it by ~slope·ulp
            err = np.abs(mid - f(mids)) / np.maximum(1.0, slope(mids))
        if not (np.all(monotone) and np.all(err <= TABLE_TOL)):
            return None
        identity = bool(np.array_equal(y, nodes) and np.all(m0 == 1 / CELLS)
                        and np.all(m1 == 1 / CELLS))
        return cls(coef.astype(np.float32), identity)


def bisect_inverse(f: Callable[[Arr], Arr], s: Arr) -> Arr:
    """x in [0, 1] with f(x) = s for an increasing f of [0, 1] onto itself (to double precision)."""
    lo, hi = np.zeros_like(s), np.ones_like(s)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = f(mid) < s
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return np.where(np.abs(f(hi) - s) <= np.abs(f(lo) - s), hi, lo)


def unit_tables(prim: BinPrimitive) -> tuple[UnitTable | None, UnitTable | None]:
    """The tables of T = P/I and of T⁻¹ for a bin primitive of :mod:`._remap` (None: none)."""
    total = prim.integral

    def t(d: Arr) -> Arr:
        return np.asarray(prim(d), dtype=np.float64) / total

    def t_slope(d: Arr) -> Arr:
        return 1.0 / (total * np.asarray(prim.h(d), dtype=np.float64))

    def u(s: Arr) -> Arr:
        return bisect_inverse(t, s)

    def u_slope(s: Arr) -> Arr:
        return total * np.asarray(prim.h(u(s)), dtype=np.float64)

    kinks = tuple(sorted({(k - 0.5) % 1.0 for k in prim.est.kinks}))
    return UnitTable.fit(t, t_slope, kinks), UnitTable.fit(u, u_slope, tuple(t(np.asarray(kinks))))


@dataclass(frozen=True)
class MapSpec:
    """Where a table applies, in the grid coordinate ``v = w·(1/Δ) - z``.

    ``v`` is clamped to ``[lo, hi]``; beyond, the map is continued by a translation
    (``translate``) or left to the exact path. Either way the answer is
    ``(j + ½ + z + table(d) + tail)·Δ`` with ``j = ⌊v - ½⌋`` and ``d = v - ½ - j``, both exact.
    """

    lo: float
    hi: float
    translate: bool

    @classmethod
    def of(cls, plan: BinPlan, inverse: bool) -> MapSpec | None:
        """M (M⁻¹ if ``inverse``) of a bin-unit plan, or None where no table applies: a grid
        without a finite bin (aI ≠ 1), or one so wide that ``v - ½`` is not exact in float32."""
        if plan.period != 1.0 or max(-plan.lower, plan.upper) >= _EXACT:
            return None
        if plan.tail is None:
            return cls(-_EXACT, _EXACT, False)
        if not inverse:  # v in [l, u]
            return cls(plan.lower, plan.upper, plan.tail.translates)
        m_lo, m_hi = plan.range_ends  # y in [M(l), M(u)]
        return cls(m_lo, m_hi, plan.tail.translates)


# ---------------------------------------------------------------------------------- the loops
def _evaluate(w, out, coef, inv, delta, z, lo, hi, translate):
    """out = (j + ½ + z + tail + table(d))·Δ, bin-relative; tail NaN where it must not translate.

    Per block: a vectorised pass splits v into its bin and the position in it, then the table
    lookups (scalar loads) finish each element; one loop doing both would not vectorise at all.
    """
    nan = np.float32(np.nan)
    half = np.float32(0.5)
    base = np.float32(0.5 + z)
    cells = np.float32(CELLS)
    c0, c1, c2, c3 = coef[0], coef[1], coef[2], coef[3]
    cell = np.empty(_BLOCK, np.uint32)
    pos = np.empty(_BLOCK, np.float32)
    for r in range(w.shape[0]):
        for start in range(0, w.shape[1], _BLOCK):
            wb, ob = w[r, start:start + _BLOCK], out[r, start:start + _BLOCK]
            for k in range(wb.size):
                v = wb[k] * inv[r] - z
                vc = min(max(v, lo), hi)
                h = vc - half
                j = np.floor(h)
                x = (h - j) * cells
                c = np.floor(x)
                cell[k] = np.uint32(np.int32(c)) & _MASK
                pos[k] = x - c
                d = v - vc
                tail = d if translate else (nan if d != 0 else np.float32(0))
                ob[k] = (j + base) + tail
            for k in range(wb.size):
                i, t = cell[k], pos[k]
                ob[k] = (ob[k] + (c0[i] + t * (c1[i] + t * (c2[i] + t * c3[i])))) * delta[r]


def _misplaced(w, out, inv, z, lo, hi, found):
    """How many ``out`` are not finite or in another level than ``w``; their indices go to found.

    Compiled without contraction: ``w·(1/Δ) - z`` must round exactly as the quantizer's does.
    Each block is counted branch-free (vectorised) and searched only if its count is not zero.
    """
    total = 0
    n = 0
    for r in range(w.shape[0]):
        for start in range(0, w.shape[1], _BLOCK):
            wb, ob = w[r, start:start + _BLOCK], out[r, start:start + _BLOCK]
            block = 0
            for k in range(wb.size):  # a loop from 0 over 1-D views: LLVM vectorises it
                m = ob[k]
                a = np.rint(min(max(wb[k] * inv[r] - z, lo), hi))
                b = np.rint(min(max(m * inv[r] - z, lo), hi))
                block += (a != b) | (m - m != 0)
            total += block
            for k in range(wb.size if block else 0):
                m = ob[k]
                a = np.rint(min(max(wb[k] * inv[r] - z, lo), hi))
                b = np.rint(min(max(m * inv[r] - z, lo), hi))
                if (a != b or m - m != 0) and n < found.size:
                    found[n] = r * w.shape[1] + start + k
                    n += 1
    return total


def _evaluate_numpy(w, out, coef, inv, delta, z, lo, hi, translate):
    f32 = np.float32
    for r in range(w.shape[0]):
        for s in range(0, w.shape[1], _CHUNK):
            v = w[r, s:s + _CHUNK] * inv[r] - z
            vc = np.clip(v, lo, hi)
            h = vc - f32(0.5)
            j = np.floor(h)
            x = (h - j) * f32(CELLS)
            cf = np.floor(x)
            c = coef[:, cf.astype(np.int32) & np.int32(_MASK)]
            t = x - cf
            d = v - vc
            tail = d if translate else np.where(d != 0, f32(np.nan), f32(0))
            p = c[0] + t * (c[1] + t * (c[2] + t * c[3]))
            out[r, s:s + _CHUNK] = ((j + f32(0.5 + z)) + tail + p) * delta[r]


def _misplaced_numpy(w, out, inv, z, lo, hi, found):
    total = 0
    for r in range(w.shape[0]):
        for s in range(0, w.shape[1], _CHUNK):
            ws, ms = w[r, s:s + _CHUNK], out[r, s:s + _CHUNK]
            a = np.rint(np.clip(ws * inv[r] - z, lo, hi))
            b = np.rint(np.clip(ms * inv[r] - z, lo, hi))
            bad = (a != b) | ~np.isfinite(ms)
            idx = np.flatnonzero(bad)[:max(found.size - total, 0)]
            found[total:total + idx.size] = idx + r * w.shape[1] + s
            total += int(np.count_nonzero(bad))
    return total


@functools.cache
def _compiled() -> tuple[Callable, Callable] | None:
    """The two loops compiled by numba (cached on disk), or None without numba."""
    try:
        import numba
    except ImportError:
        return None

    def jit(fn: Callable, **options: Any) -> Callable:
        try:
            return numba.njit(fn, nogil=True, cache=True, error_model="numpy", **options)
        except RuntimeError:  # no writable cache directory: compile in memory only
            return numba.njit(fn, nogil=True, error_model="numpy", **options)

    # contraction (fused multiply-add) only in the evaluation: it changes float rounding, not bins
    return jit(_evaluate, fastmath={"contract"}), jit(_misplaced)


def _loops() -> tuple[Callable, Callable]:
    compiled = _compiled() if USE_NUMBA else None
    return compiled or (_evaluate_numpy, _misplaced_numpy)


# --------------------------------------------------------------------------------- the driver
def _rows(quantizer: UniformQuantizer, w: Arr) -> tuple[Arr, int | None]:
    """w as a C-contiguous (rows, width) array, one row per Δ; the channel axis (or None)."""
    quantizer.delta_for(w)  # validates a per-channel Δ against w's shape
    if not quantizer.per_channel:
        return np.ascontiguousarray(w).reshape(1, -1), None
    axis = quantizer.channel_axis % w.ndim
    moved = np.moveaxis(w, axis, 0)
    return np.ascontiguousarray(moved).reshape(moved.shape[0], -1), axis


def evaluate(table: UnitTable, spec: MapSpec, quantizer: UniformQuantizer, w: Arr) -> tuple[Arr, Arr]:
    """The map of ``spec`` on float32 ``w``, and the flat indices (C order) of the elements it
    could not place exactly: not finite, in another bin than ``w``, or on a tail the table does
    not cover. The caller recomputes those by the exact path."""
    w2, axis = _rows(quantizer, w)
    delta = np.atleast_1d(quantizer.delta_array)
    inv = (1.0 / delta).astype(np.float32)  # exactly the quantizer's 1/Δ
    f32 = np.float32
    out2 = np.empty_like(w2)
    evaluate_loop, check_loop = _loops()
    evaluate_loop(w2, out2, table.coef, inv, delta.astype(f32), f32(quantizer.offset),
                  f32(spec.lo), f32(spec.hi), spec.translate)
    check = (w2, out2, inv, f32(quantizer.offset), f32(quantizer.lower), f32(quantizer.upper))
    found = np.empty(_FOUND, np.int64)
    count = check_loop(*check, found)
    if count > found.size:
        found = np.empty(count, np.int64)
        check_loop(*check, found)
    if axis is None:
        return out2.reshape(w.shape), found[:count]
    moved = np.moveaxis(w, axis, 0).shape
    out = np.ascontiguousarray(np.moveaxis(out2.reshape(moved), 0, axis))
    index = np.unravel_index(found[:count], moved)
    index = (*index[1:axis + 1], index[0], *index[axis + 1:])
    return out, np.ravel_multi_index(index, w.shape)
