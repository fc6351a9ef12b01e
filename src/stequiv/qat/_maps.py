r"""M and M⁻¹ on a quantized torch weight: in its layout, in its dtype, inside its bins.

float32 and float64 weights go to the core as they are (its float32 path keeps every weight in its
bin). float16 and bfloat16 weights are mapped in float64 and rounded back. The bins that count are
those of the forward, computed in the weight's dtype (``w·(1/Δ) − z`` rounded twice), and they
differ from the exact ones: near w = 0 on the offset-½ grid bfloat16 arithmetic puts the
boundary hundreds of ulps away. So a rounded value whose level (computed as the forward does)
is not its weight's is replaced by the nearest value of the weight's bin: levels are monotone
in w, so each bin is an interval of the dtype's values, found by bisection between the rounded
value and the weight.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..core import Estimator
from ._fake_quant import WeightFakeQuant

__all__ = ["keep_bins", "weight_map"]

_CORE_DTYPES = (torch.float32, torch.float64)
_MAX_STEPS = 17  # bisection over 2^16 values


def _key(x: torch.Tensor) -> torch.Tensor:
    """16-bit floats as integers in the order of their values (±0 both 0)."""
    bits = x.view(torch.int16).to(torch.int32)
    return torch.where(bits >= 0, bits, -(bits & 0x7FFF))


def _value(key: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Inverse of :func:`_key`."""
    return torch.where(key >= 0, key, -key - 0x8000).to(torch.int16).view(dtype)


def keep_bins(fq: WeightFakeQuant, w: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
    """``mapped`` with each value whose level differs from ``w``'s replaced by the value of w's
    bin nearest to it (bisection over the 16-bit dtype's ordered values between it and w)."""
    target = fq.code(w)
    wrong = fq.code(mapped) != target
    if not bool(wrong.any()):
        return mapped
    lo, hi = _key(mapped[wrong]), _key(w[wrong])  # level wrong at lo, right at hi
    goal = target[wrong]
    lay = fq.layout
    inv = lay.unview(fq.inv_delta.to(w.dtype).expand(lay.view(w).shape))[wrong]

    def level(x: torch.Tensor) -> torch.Tensor:  # fq.code, on the selected elements
        return torch.round(torch.clamp(x * inv - fq.offset, fq.lower, fq.upper))

    for _ in range(_MAX_STEPS):
        open_ = (hi - lo).abs() > 1
        if not bool(open_.any()):
            break
        mid = lo + torch.div(hi - lo, 2, rounding_mode="trunc")
        right = level(_value(mid, w.dtype)) == goal
        hi, lo = torch.where(open_ & right, mid, hi), torch.where(open_ & ~right, mid, lo)
    out = mapped.clone()
    out[wrong] = _value(hi, w.dtype)
    return out


def weight_map(fn: Callable[..., np.ndarray], est: Estimator,
               fq: WeightFakeQuant) -> Callable[[torch.Tensor], torch.Tensor]:
    """``w ↦ fn(est, q, w)`` (the core's ``remap`` or ``unremap``) for a weight of layer ``fq``."""
    q = fq.quantizer()

    def apply(w: torch.Tensor) -> torch.Tensor:
        w = w.detach()
        view = fq.layout.view(w).to("cpu")
        native = w.dtype in _CORE_DTYPES
        out = fn(est, q, (view if native else view.double()).numpy())
        mapped = fq.layout.unview(torch.from_numpy(np.ascontiguousarray(out)).to(w.dtype))
        mapped = mapped.to(w.device)
        return mapped if native else keep_bins(fq, w, mapped)

    return apply
