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
from ._layout import Layout

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
            return grad, None, None
        (x,) = ctx.saved_tensors
        return fq.gradient(x, grad), None, None


class WeightFakeQuant(nn.Module):
    """Parametrization ``w ↦ Q(w)`` with the estimator's backward (see the module docstring).

    Attributes:
        estimator: the weight gradient estimator Q̂.
        lower, upper, offset: the quantizer's clip limits l, u and zero-point offset z.
        layout: where each Δ lies on the weight (per tensor, channel or group; see :mod:`._layout`).
        delta, inv_delta: float64 buffers holding Δ and 1/Δ, shaped to broadcast against
            ``layout.view(w)``. They stay float64 under ``.half()``/``.bfloat16()``/``.to(dtype)``
            (only their device follows), and are rounded to the weight's dtype at use, exactly as
            the core does.
    """

    def __init__(self, estimator: Estimator, quantizer: UniformQuantizer, weight_shape: torch.Size,
                 *, layout: Layout | None = None):
        super().__init__()
        self.estimator = estimator
        self.lower = int(quantizer.lower)
        self.upper = int(quantizer.upper)
        self.offset = float(quantizer.offset)
        delta = torch.as_tensor(quantizer.delta_array, dtype=torch.float64)
        if layout is None:  # a per-channel quantizer runs along its channel axis
            axis = quantizer.channel_axis if delta.ndim else None
            layout = Layout(tuple(weight_shape), axis)
        if delta.numel() != layout.num_rows:
            raise ValueError(f"the quantizer has {delta.numel()} Δ but the layout {layout} needs "
                             f"{layout.num_rows}")
        self.layout = layout
        delta = delta.reshape(layout.delta_shape())
        self.register_buffer("delta", delta)
        self.register_buffer("inv_delta", 1.0 / delta)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.layout.unview(_FakeQuantize.apply(self.layout.view(w), self.delta, self))

    def _apply(self, fn: Any, recurse: bool = True) -> WeightFakeQuant:
        # Δ is data of the grid, not a weight: a dtype cast (model.half()) must not round it.
        exact = {"delta": self.delta, "inv_delta": self.inv_delta}
        super()._apply(fn, recurse)
        for name, value in exact.items():
            setattr(self, name, value.to(getattr(self, name).device))
        return self

    def gradient(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``grad · Q̂′(x)`` at the forward's v (or w, in weight units).

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
        return self.estimator.gradient(x, self.lower, self.upper, self.offset)

    def quantizer(self) -> UniformQuantizer:
        """The core quantizer of ``layout.view(w)`` (Δ read from the buffer).

        Per tensor and per channel that is the weight itself (a per-channel Δ along the layer's
        output axis); per group it is the rows ``layout.rows(w)``, one Δ per row.
        """
        lay = self.layout
        d = self.delta.detach().to("cpu", torch.float64).flatten().numpy()
        axis = 0 if lay.axis is None or lay.group_size is not None else lay.axis
        return UniformQuantizer(delta=d if lay.axis is not None else float(d[0]),
                                offset=self.offset, lower=self.lower, upper=self.upper,
                                channel_axis=axis)

    def grid(self, w: torch.Tensor) -> torch.Tensor:
        """The grid coordinate ``v = w·(1/Δ) − z`` in ``w``'s dtype, as the forward computes it."""
        v = self.layout.view(w.detach())
        return self.layout.unview(v * self.inv_delta.to(w.dtype) - self.offset)

    def code(self, w: torch.Tensor) -> torch.Tensor:
        """Integer level index of every weight (no gradient)."""
        return torch.round(torch.clamp(self.grid(w), self.lower, self.upper))

    def range_length(self) -> torch.Tensor:
        """Length of the representable range, Δ(u − l), broadcastable against ``layout.view(w)``."""
        return self.delta * (self.upper - self.lower)

    def get_extra_state(self) -> dict[str, Any]:
        """The quantization recorded in ``state_dict`` (Δ itself is the ``delta`` buffer)."""
        return {"estimator": self.estimator.to_dict(), "lower": self.lower, "upper": self.upper,
                "offset": self.offset, **self.layout.to_dict()}

    def set_extra_state(self, state: Any) -> None:
        """Checked in :meth:`_load_from_state_dict`, before anything is loaded."""

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        recorded = state_dict.get(prefix + "_extra_state")
        if recorded is not None:
            where = prefix.removesuffix(".0.").replace("parametrizations.", "")
            check_same_quantization(where, recorded, self.get_extra_state())
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        lay = self.layout
        where = ("per-tensor" if lay.axis is None else f"axis={lay.axis}"
                 + ("" if lay.group_size is None else f", group_size={lay.group_size}"))
        return (f"estimator={self.estimator.describe()}, l={self.lower}, u={self.upper}, "
                f"offset={self.offset:g}, {where}")


def check_same_quantization(where: str, recorded: dict[str, Any], ours: dict[str, Any]) -> None:
    """Raise, naming ``layer`` and the first differing field, unless the two records agree."""
    for key, value in ours.items():
        if recorded.get(key) != value:
            raise ValueError(
                f"{where}: the checkpoint was quantized with {key}={recorded.get(key)!r} "
                f"but this model has {key}={value!r}; quantize the model with the checkpoint's "
                f"config before loading (the checkpoint's record: {recorded})")
