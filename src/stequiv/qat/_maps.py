r"""M and M⁻¹ on a quantized torch weight: in its layout, in its dtype, inside its bins.

float32 and float64 weights go to the core as they are (its float32 path keeps every weight in its
bin). float16 and bfloat16 weights are mapped in float64 and rounded back; rounding can carry a
value one ulp over a decision boundary, so each such value is stepped by one ulp at a time toward
the original weight until its level, computed as the forward computes it, is the original's.
Levels are monotone in w, so the bin of w is an interval of the dtype's values and the walk ends
inside it (within a few ulps: the float64 value lies inside the bin).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..core import Estimator
from ._fake_quant import WeightFakeQuant

__all__ = ["keep_bins", "weight_map"]

_CORE_DTYPES = (torch.float32, torch.float64)
_MAX_ULPS = 64  # far more than rounding a float64 value into the bin can need


def keep_bins(fq: WeightFakeQuant, w: torch.Tensor, mapped: torch.Tensor) -> torch.Tensor:
    """``mapped`` with every value whose level differs from ``w``'s stepped back into w's bin."""
    target = fq.code(w)
    for _ in range(_MAX_ULPS):
        wrong = fq.code(mapped) != target
        if not bool(wrong.any()):
            return mapped
        mapped = torch.where(wrong, torch.nextafter(mapped, w), mapped)
    raise AssertionError("could not place a mapped weight inside its bin")  # impossible: see above


def weight_map(fn: Callable[..., np.ndarray], est: Estimator,
               fq: WeightFakeQuant) -> Callable[[torch.Tensor], torch.Tensor]:
    """``w ↦ fn(est, q, w)`` (the core's ``remap`` or ``unremap``) for a weight of layer ``fq``."""
    q = fq.quantizer()

    def apply(w: torch.Tensor) -> torch.Tensor:
        w = w.detach()
        rows = fq.layout.rows(w).to("cpu")
        native = w.dtype in _CORE_DTYPES
        out = fn(est, q, (rows if native else rows.double()).numpy())
        mapped = fq.layout.unrows(torch.from_numpy(np.ascontiguousarray(out)).to(w.dtype))
        mapped = mapped.to(w.device)
        return mapped if native else keep_bins(fq, w, mapped)

    return apply
