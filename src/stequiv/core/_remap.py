r"""The equivalence math of the paper's Eq. 4, as public verbs: α, M, M⁻¹ and M′.

.. math::
    \alpha = \frac{\Delta}{\int_{w_-}^{w_+} ds/\hat Q'(s)}, \qquad
    M(w) = w_b + \alpha \int_{w_b}^{w} \frac{ds}{\hat Q'(s)}, \qquad M'(w) = \frac{\alpha}{\hat Q'(w)}.

The math lives in :mod:`._primitives` (∫1/Q̂′), :mod:`._tails` (M beyond the clip range) and
:mod:`._plan` (α, M and M⁻¹ of one estimator on one grid). This module checks the arrays, picks the
float32 table path (:mod:`._fastmap`) where it applies, redoes exactly what that path could not
place, and keeps every weight in its bin.

Floating point: after evaluation, any M(w) that rounding pushed across a boundary is moved back by
one ulp, so ``Q(M(w)) == Q(w)`` holds exactly for every finite ``w`` in float32 and float64.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np

from . import _fastmap
from ._estimator import Estimator
from ._plan import BinPlan, EstimatorLike, RemapPlan, plan_for
from ._primitives import NoRemapError, bin_primitive
from ._quantizer import UniformQuantizer

__all__ = [
    "NoRemapError",
    "alpha",
    "plan_for",
    "remap",
    "remap_derivative",
    "unremap",
]

Arr = np.ndarray


def _float_array(name: str, w: Any) -> Arr:
    """``w`` as a finite, native-byte-order floating array (float16, float32 or float64).

    Integers are converted to float64 (never truncated); other dtypes are refused. Non-native byte
    order is converted here and restored by :func:`_restore`.
    """
    arr = np.asarray(w)
    kind = arr.dtype.kind
    if kind in "iu":
        arr = arr.astype(np.float64)
    elif kind != "f" or arr.dtype.itemsize > 8:
        raise ValueError(
            f"`{name}` must be a real float16/float32/float64 (or integer) array, got dtype "
            f"{arr.dtype}; convert it, e.g. `{name}.astype(np.float64)`")
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"`{name}` holds NaN or inf at {int((~np.isfinite(arr)).sum())} entries")
    return arr


def _restore(out: Arr, w: Any) -> Arr:
    """``out`` in the byte order of the caller's floating ``w`` (integers came back as float64)."""
    dtype = np.asarray(w).dtype
    return out.astype(dtype) if dtype.kind == "f" and not dtype.isnative else out


def _keep_bins(quantizer: UniformQuantizer, w: Arr, m: Arr) -> Arr:
    """Undo rounding that pushed M(w) across a boundary, so that Q(M(w)) == Q(w) exactly.

    Only weights within a few ulp of a boundary point are affected: they are put on that boundary
    point and stepped into the bin of ``w`` (M fixes boundary points, so this is the correctly
    rounded answer up to those ulp). The steps start at one ulp and double, and are never below
    eps·Δ/256: a boundary point at 0 has subnormal ulps, while ``code`` rounds at the scale of Δ
    (in float64, BinaryQuantizer puts every w ∈ (-1.1e-16, 0) in the +1 bin). Where the dtype
    resolves a bin so coarsely that the steps jump over it (a bin holding one or two floats), the
    answer is ``w`` itself: in its bin by definition, and so within one bin of M(w).
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
            break
        fixed = np.where(wrong, fixed + toward * step, fixed)
        step = np.where(wrong, 2 * step, step)
    m[bad] = np.where(wrong, w[bad], fixed)
    return m


@functools.lru_cache(maxsize=256)
def _unit_tables(est: Estimator) -> tuple[_fastmap.UnitTable | None, _fastmap.UnitTable | None]:
    return _fastmap.unit_tables(bin_primitive(est))


def _exact(plan: RemapPlan, quantizer: UniformQuantizer, w: Arr, inverse: bool) -> Arr:
    """M(w) (M⁻¹ if ``inverse``) by the plan in float64, rounded once to ``w``'s dtype, every
    weight kept in its bin."""
    fn = plan.backward if inverse else plan.forward
    w64 = w.astype(np.float64)
    with np.errstate(over="ignore"):  # an overflow shows up as a non-finite M, refused below
        m = plan.from_coordinate(quantizer, fn(plan.to_coordinate(quantizer, w64)), like=w64)
    with np.errstate(over="ignore"):
        out = m.astype(w.dtype)
    if not np.all(np.isfinite(out)):
        bad = w64[~np.isfinite(out)][0]
        raise NoRemapError(
            f"{'M⁻¹' if inverse else 'M'} of {plan.est.describe()} is not finite in {w.dtype} at "
            f"w = {bad!r} (and {int((~np.isfinite(out)).sum()) - 1} more weights): the map "
            "overflows there; keep weights nearer the clip range or use milder parameters")
    return _keep_bins(quantizer, w, out)


def _redo(plan: RemapPlan, quantizer: UniformQuantizer, w: Arr, out: Arr, idx: Arr,
          inverse: bool) -> None:
    """Recompute ``out`` exactly at the flat indices ``idx`` (a per-channel Δ row by row)."""
    flat_w, flat_out = w.reshape(-1), out.reshape(-1)
    if not quantizer.per_channel:
        flat_out[idx] = _exact(plan, quantizer, flat_w[idx], inverse)
        return
    channel = np.unravel_index(idx, w.shape)[quantizer.channel_axis % w.ndim]
    for c in np.unique(channel):
        part = idx[channel == c]
        row_q = dataclasses.replace(quantizer, delta=float(quantizer.delta_array[c]))
        flat_out[part] = _exact(plan, row_q, flat_w[part], inverse)


def _apply(plan: RemapPlan, quantizer: UniformQuantizer, w: Arr, inverse: bool) -> Arr:
    """M(w) (or M⁻¹(w)): by the table for float32 where it applies, else exactly."""
    if w.dtype != np.float32 or w.size == 0 or not isinstance(plan, BinPlan):
        return _exact(plan, quantizer, w, inverse)
    table = _unit_tables(plan.est)[inverse]
    if table is None:
        return _exact(plan, quantizer, w, inverse)
    if table.identity and (plan.tail is None or plan.tail.translates):
        return w.copy()  # M = id (the STE, PWL): exact
    spec = _fastmap.MapSpec.of(plan, inverse)
    if spec is None:
        return _exact(plan, quantizer, w, inverse)
    out, redo = _fastmap.evaluate(table, spec, quantizer, w)
    if redo.size:
        _redo(plan, quantizer, w, out, redo, inverse)
    return out


def alpha(estimator: EstimatorLike, quantizer: UniformQuantizer) -> float | Arr:
    """The learning-rate factor α of Eq. 4 (an array, one per channel, if Δ is per channel)."""
    a = plan_for(estimator, quantizer).alpha
    return np.full(quantizer.delta_array.shape, a) if quantizer.per_channel else a


def remap(estimator: EstimatorLike, quantizer: UniformQuantizer, w: Any) -> Arr:
    """M(w) of Eq. 4, same shape and dtype as ``w`` (float16/32/64, either byte order; integers
    give float64)."""
    out = _apply(plan_for(estimator, quantizer), quantizer, _float_array("w", w), inverse=False)
    return _restore(out, w)


def unremap(estimator: EstimatorLike, quantizer: UniformQuantizer, w: Any) -> Arr:
    """M⁻¹(w), same shape and dtype as ``w`` (as :func:`remap`)."""
    out = _apply(plan_for(estimator, quantizer), quantizer, _float_array("w", w), inverse=True)
    return _restore(out, w)


def remap_derivative(estimator: EstimatorLike, quantizer: UniformQuantizer, w: Any) -> Arr:
    """M′(w) = α/Q̂′(w) (Eq. 13); 1 where a vanishing estimator's M is continued by translation."""
    plan = plan_for(estimator, quantizer)
    arr = _float_array("w", w)
    v = plan.to_coordinate(quantizer, arr)
    g = np.asarray(plan.est.gradient(v, quantizer.lower, quantizer.upper, quantizer.offset),
                   dtype=np.float64)
    with np.errstate(divide="ignore"):
        out = np.where(g > 0, plan.alpha / np.where(g > 0, g, 1.0), 1.0)
    return _restore(out.astype(arr.dtype), w)
