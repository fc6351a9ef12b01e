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

import numpy as np
import torch
from torch import nn

from ..core import Estimator, UniformQuantizer
from ..core.estimators._basic import STE

__all__ = ["WeightFakeQuant"]

_CHUNK = 1 << 18  # elements per NumPy pass of the CPU backward: the temporaries stay in L2


class _FakeQuantize(torch.autograd.Function):
    # Fresh large CPU tensors are slow (every page is faulted in), so the forward allocates only
    # what it keeps: v for the backward (not for the STE, nor without grad) and the output,
    # computed in place by the same operations in the same order as the core's Q.
    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, delta: torch.Tensor, fq: WeightFakeQuant) -> torch.Tensor:
        ctx.fq = fq
        v = torch.mul(w, fq.inv_delta.to(w.dtype)).sub_(fq.offset)
        if isinstance(fq.estimator, STE) or not ctx.needs_input_grad[0]:
            out = v.clamp_(fq.lower, fq.upper)
        else:
            ctx.save_for_backward(w if fq.estimator.units == "weight" else v)
            out = v.clamp(fq.lower, fq.upper)
        return out.round_().add_(fq.offset).mul_(delta.to(w.dtype))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        fq: WeightFakeQuant = ctx.fq
        if isinstance(fq.estimator, STE):  # Q̂′ ≡ 1: the upstream gradient passes through
            return (grad if fq.grad_scale == 1.0 else grad * fq.grad_scale), None, None
        (x,) = ctx.saved_tensors
        return fq.gradient(x, grad), None, None


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

    def gradient(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``grad · Q̂′(x)`` (times ``grad_scale``) at the forward's v (or w, in weight units).

        On the CPU Q̂′ is evaluated by NumPy, as the core evaluates it, in cache-sized chunks:
        vectorised transcendentals, and no OpenMP parallel region per operation (each of which can
        cost a scheduler time slice when other work holds the cores). Accelerators, half precision
        and double backward (``create_graph=True``) use torch.
        """
        if (x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64)
                or torch.is_grad_enabled()):
            return grad * self._scale(x)
        out = torch.empty(x.shape, dtype=x.dtype)
        flat_x, flat_out = x.detach().reshape(-1).numpy(), out.view(-1).numpy()
        flat_g = grad.expand_as(x).reshape(-1).numpy()
        with np.errstate(all="ignore"):  # inf and NaN as torch gives them: silently
            for start in range(0, flat_x.size, _CHUNK):
                part = slice(start, start + _CHUNK)
                np.multiply(flat_g[part], self._scale(flat_x[part]), out=flat_out[part])
        return out

    def _scale(self, x: Any) -> Any:  # a torch tensor or a NumPy array
        scale = self.estimator.gradient(x, self.lower, self.upper, self.offset)
        return scale * self.grad_scale if self.grad_scale != 1.0 else scale

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
