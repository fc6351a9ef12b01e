r"""Weight fake-quantization as a parametrization: forward Q(w), backward the estimator's Q̂′(w).

Forward is exactly the core's Eq. 1, :math:`Q(w) = \Delta(\operatorname{round}(\operatorname{clip}(w\Delta^{-1} - z, l, u)) + z)`
(round half to even); backward multiplies the upstream gradient by :math:`\hat Q'(w)`, by one
autograd function for every estimator, user-defined ones included (:mod:`._autograd`: eager,
compiled, half precision).

The latent weight stays the module's ordinary ``nn.Parameter`` (``parametrizations.weight.original``),
so optimizers created before or after quantization, schedulers, ``state_dict`` and
DistributedDataParallel work unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core import Estimator, UniformQuantizer
from ._autograd import fake_quantize

__all__ = ["WeightFakeQuant"]

class WeightFakeQuant(nn.Module):
    """Parametrization ``w ↦ Q(w)`` with the estimator's backward (see the module docstring).

    Attributes:
        estimator: the weight gradient estimator Q̂.
        lower, upper, offset: the quantizer's clip limits l, u and zero-point offset z.
        delta: buffer holding Δ (0-D, or shaped ``(C, 1, ...)`` per output channel).
    """

    def __init__(self, estimator: Estimator, quantizer: UniformQuantizer, weight_shape: torch.Size):
        super().__init__()
        self.estimator = estimator
        self.lower = int(quantizer.lower)
        self.upper = int(quantizer.upper)
        self.offset = float(quantizer.offset)
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
        return fake_quantize(w, self.delta, self.inv_delta, self.estimator, self.lower, self.upper,
                             self.offset)

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
