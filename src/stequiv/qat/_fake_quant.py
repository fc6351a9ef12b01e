r"""Weight fake-quantization as a parametrization: forward Q(w), backward the estimator's Q̂′(w).

Forward is exactly the core's Eq. 1, :math:`Q(w) = \Delta(\operatorname{round}(\operatorname{clip}(w\Delta^{-1} - z, l, u)) + z)`
(round half to even). Backward multiplies the upstream gradient by :math:`\hat Q'(w)` evaluated by
the estimator's own definition (one generic autograd function for every estimator, user-defined
ones included):

* at a decision boundary the formula's value there (all catalogue estimators are defined there);
* inside the clip range *including its edges* ``v = l`` and ``v = u`` the in-range formula;
* outside it the estimator's tail: the formula again (``tail="extend"``, e.g. the STE), zero
  (``tail="zero"``: PWL, HTGE, DSQ), or the estimator's own tail (MAD).

The latent weight stays the module's ordinary ``nn.Parameter`` (``parametrizations.weight.original``),
so optimizers created before or after quantization, schedulers, ``state_dict`` and
DistributedDataParallel work unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core import Estimator, UniformQuantizer

__all__ = ["WeightFakeQuant"]


class _FakeQuantize(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, delta: torch.Tensor, fq: WeightFakeQuant) -> torch.Tensor:
        d = delta.to(w.dtype)
        v = w * fq.inv_delta.to(w.dtype) - fq.offset
        ctx.fq = fq
        ctx.save_for_backward(w if fq.estimator.units == "weight" else v)
        return (torch.round(torch.clamp(v, fq.lower, fq.upper)) + fq.offset) * d

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (x,) = ctx.saved_tensors
        fq: WeightFakeQuant = ctx.fq
        scale = fq.estimator.gradient(x, fq.lower, fq.upper, fq.offset)
        if fq.grad_scale != 1.0:
            scale = scale * fq.grad_scale
        return grad * scale, None, None


class WeightFakeQuant(nn.Module):
    """Parametrization ``w ↦ Q(w)`` with the estimator's backward (see the module docstring).

    Attributes:
        estimator: the weight gradient estimator Q̂.
        lower, upper, offset: the quantizer's clip limits l, u and zero-point offset z.
        delta: buffer holding Δ (0-D, or shaped ``(C, 1, ...)`` per output channel).
        grad_scale: a constant factor on the backward (1 unless set by a conversion).
    """

    def __init__(self, estimator: Estimator, quantizer: UniformQuantizer, weight_shape: torch.Size):
        super().__init__()
        self.estimator = estimator
        self.lower = int(quantizer.lower)
        self.upper = int(quantizer.upper)
        self.offset = float(quantizer.offset)
        self.grad_scale = 1.0
        self.enabled = True
        # float64 buffers, rounded to the weights' dtype at use exactly as the core does.
        delta = torch.as_tensor(quantizer.delta_array, dtype=torch.float64)
        if delta.ndim == 1:
            delta = delta.reshape(-1, *([1] * (len(weight_shape) - 1)))
        self.register_buffer("delta", delta)
        self.register_buffer("inv_delta", 1.0 / delta)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return w
        return _FakeQuantize.apply(w, self.delta, self)

    def quantizer(self) -> UniformQuantizer:
        """The core quantizer this layer uses (Δ read from the buffer)."""
        d = self.delta.detach().to("cpu", torch.float64).flatten().numpy()
        return UniformQuantizer(delta=d if d.size > 1 else float(d[0]), offset=self.offset,
                                lower=self.lower, upper=self.upper)

    def code(self, w: torch.Tensor) -> torch.Tensor:
        """Integer level index of every weight (no gradient)."""
        v = w.detach() * self.inv_delta.to(w.dtype) - self.offset
        return torch.round(torch.clamp(v, self.lower, self.upper))

    def range_length(self) -> torch.Tensor:
        """Length of the representable range, Δ(u − l), broadcastable against the weight."""
        return self.delta * (self.upper - self.lower)

    def extra_repr(self) -> str:
        return (f"estimator={self.estimator.describe()}, l={self.lower}, u={self.upper}, "
                f"offset={self.offset:g}, per_channel={self.delta.ndim > 0}")
