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

from typing import Any

import torch
from torch import nn

from ..core import Estimator, UniformQuantizer
from ._autograd import fake_quantize, gradient_times
from ._layout import Layout

__all__ = ["WeightFakeQuant"]


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
        weights_remapped: on a twin made by :func:`~stequiv.qat.to_ste`, whether its latent
            weight started at M(w) of the Q̂-net's (SGD-like) or at w (Adam-like, or
            ``remap_weights=False``); None on any other model. :func:`~stequiv.qat.alignment`
            reads it to choose Eq. 5's form. A property of the pair, not of the quantization:
            not part of ``state_dict``.
    """

    delta: torch.Tensor  # a registered buffer (a Parameter in LearnedStepFakeQuant)
    inv_delta: torch.Tensor
    weights_remapped: bool | None = None  # set on the twin by to_ste

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
        v = fake_quantize(self.layout.view(w), self.delta, self.inv_delta, self.estimator,
                          self.lower, self.upper, self.offset)
        return self.layout.unview(v)

    def gradient(self, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``grad · Q̂′(x)`` at the forward's v (or w, in weight units), as the backward computes it."""
        return gradient_times(self.estimator, x, grad, self.lower, self.upper, self.offset)

    def _apply(self, fn: Any, recurse: bool = True) -> WeightFakeQuant:
        # Δ is data of the grid, not a weight: a dtype cast (model.half()) must not round it.
        exact = {"delta": self.delta, "inv_delta": self.inv_delta}
        super()._apply(fn, recurse)
        for name, value in exact.items():
            setattr(self, name, value.to(getattr(self, name).device))
        return self

    def quantizer(self) -> UniformQuantizer:
        """The core quantizer of ``layout.view(w)`` (Δ read from the buffer).

        Per tensor and per channel that is the weight itself (a per-channel Δ along the layer's
        output axis); per group, or with batch (expert) axes, it is the rows ``layout.rows(w)``,
        one Δ per row.
        """
        lay = self.layout
        d = self.delta.detach().to("cpu", torch.float64).flatten().numpy()
        axis = 0 if lay.axis is None or lay.rowwise else lay.axis
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
    """Raise, naming ``layer`` and the first differing field, unless the two records agree
    (a field that only one record has, e.g. a learned Δ's ``learn_step``, differs too)."""
    for key in {**ours, **recorded}:
        value = ours.get(key)
        if recorded.get(key) != value:
            raise ValueError(
                f"{where}: the checkpoint was quantized with {key}={recorded.get(key)!r} "
                f"but this model has {key}={value!r}; quantize the model with the checkpoint's "
                f"config before loading (the checkpoint's record: {recorded})")
