r"""Learned step sizes (LSQ, Esser et al. 2020) on weights: Δ an ``nn.Parameter`` of the quantizer.

``QuantConfig(learn_step=True)`` makes every Δ of a layer (per tensor, channel or group) a
parameter, initialised as ``scale`` says, trained with the network. With v = w/Δ − z,
k = round(clip(v, l, u)) and the forward :math:`Q(w; \Delta) = \Delta(k + z)`:

.. math::
   \frac{\partial L}{\partial w} = g\,\hat Q'(v), \qquad
   \frac{\partial L}{\partial \Delta} = \gamma \sum_{i \in \Delta} g_i\,\big[(k_i + z)
       - (v_i + z)\,\hat Q'(v_i)\big], \qquad \gamma = \frac{1}{\sqrt{N\,Q_P}},

g = ∂L/∂Q, the sum over the N weights that share the Δ, :math:`Q_P` the number of positive levels
(2^{b−1} on the paper's offset-½ grid). This is LSQ's Eq. 3 with its gradient scale (Section 2.2)
for the STE, and the derivative of the surrogate Δ(f(v) + z), f′ = Q̂′, for any bin-unit estimator
(outside the range the estimator's own tail applies, as for w). Binary (weight-unit) estimators
act on w itself, whose boundary does not move with Δ: refused by :class:`~stequiv.qat.QuantConfig`.

A Δ that is ≤ 0 or not finite at a forward call is an error naming the layer and the call.
Optimizers see Δ as an ordinary parameter (``…parametrizations.weight.0.delta``): create the
optimizer after :func:`~stequiv.qat.quantize_`. Its STE twin is :class:`~stequiv.qat.LearnedStepTwin`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..core import Estimator, UniformQuantizer
from ._autograd import derivative
from ._fake_quant import WeightFakeQuant
from ._layout import Layout

__all__ = ["LearnedStepFakeQuant", "lsq_gradient_scale"]


def lsq_gradient_scale(weights_per_delta: int, quantizer: UniformQuantizer) -> float:
    """LSQ's γ = 1/√(N·Q_P): N weights share the Δ, Q_P = number of levels (k + z) > 0 (≥ 1)."""
    positive = sum(1 for k in range(quantizer.lower, quantizer.upper + 1) if k + quantizer.offset > 0)
    return 1.0 / math.sqrt(weights_per_delta * max(positive, 1))


class _LearnedQuantize(torch.autograd.Function):
    """Forward Δ(k + z); backward Q̂′(v)·g for w and LSQ's γ Σ g·[(k + z) − (v + z)Q̂′(v)] for Δ."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, delta: torch.Tensor, fq: LearnedStepFakeQuant) -> torch.Tensor:
        d = delta.detach().to(w.dtype)
        v = torch.mul(w, (1.0 / delta.detach().double()).to(w.dtype)).sub_(fq.offset)
        k = v.clamp(fq.lower, fq.upper).round_()
        ctx.fq = fq
        ctx.save_for_backward(v, k, delta)
        return (k + fq.offset).mul_(d)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        fq: LearnedStepFakeQuant = ctx.fq
        v, k, delta = ctx.saved_tensors
        slope = derivative(fq.estimator, v, fq.lower, fq.upper, fq.offset).to(v.dtype)
        grad_w = grad * slope if ctx.needs_input_grad[0] else None
        grad_delta = None
        if ctx.needs_input_grad[1]:
            z = fq.offset
            per_weight = grad.double() * ((k + z).double() - (v + z).double() * slope.double())
            grad_delta = (per_weight.sum_to_size(delta.shape) * fq.gradient_scale).to(delta.dtype)
        return grad_w, grad_delta, None


class LearnedStepFakeQuant(WeightFakeQuant):
    """:class:`WeightFakeQuant` whose Δ is a parameter trained LSQ-style (module docstring).

    Attributes:
        where: the layer (for error messages); calls: forward calls so far (training steps).
        gradient_scale: LSQ's γ = 1/√(N·Q_P).
    """

    def __init__(self, estimator: Estimator, quantizer: UniformQuantizer, layout: Layout, *,
                 where: str, dtype: torch.dtype = torch.float32):
        nn.Module.__init__(self)  # WeightFakeQuant's Δ buffers are replaced by one parameter
        self.estimator, self.layout, self.where, self.calls = estimator, layout, where, 0
        self.lower, self.upper = int(quantizer.lower), int(quantizer.upper)
        self.offset = float(quantizer.offset)
        delta = torch.as_tensor(quantizer.delta_array, dtype=torch.float64)
        self.delta = nn.Parameter(delta.reshape(layout.delta_shape()).to(dtype))
        self.gradient_scale = lsq_gradient_scale(math.prod(layout.shape) // layout.num_rows, quantizer)

    @property
    def inv_delta(self) -> torch.Tensor:
        """1/Δ in float64, as :class:`WeightFakeQuant` keeps it (no gradient)."""
        return 1.0 / self.delta.detach().double()

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.check_delta(f"forward call {self.calls}")
        if self.delta.requires_grad and torch.is_grad_enabled():
            return self.layout.unview(_LearnedQuantize.apply(self.layout.view(w), self.delta, self))
        # Δ not trained here (a twin following the Q̂-net's, or eval): the fixed-Δ path, same Q(w)
        return WeightFakeQuant.forward(self, w)

    def check_delta(self, when: str) -> None:
        """Raise unless every Δ is finite and > 0, naming the layer, ``when`` and the fix."""
        d = self.delta.detach()
        bad = ~(torch.isfinite(d) & (d > 0))
        if bool(bad.any()):
            value = float(d[bad].flatten()[0])
            raise ValueError(
                f"{self.where}: the learned step Δ = {value!r} at {when} ({int(bad.sum())} of "
                f"{d.numel()} Δ are ≤ 0 or not finite); lower the learning rate of Δ (its "
                f"parameter group), or start from a larger Δ (`scale`)")

    def _apply(self, fn: Any, recurse: bool = True) -> LearnedStepFakeQuant:
        # Δ is a parameter here: it follows the model's device and dtype like any other.
        nn.Module._apply(self, fn, recurse)
        return self

    def range_length(self) -> torch.Tensor:
        """Δ(u − l) (no gradient), broadcastable against ``layout.view(w)``."""
        return self.delta.detach().double() * (self.upper - self.lower)

    def get_extra_state(self) -> dict[str, Any]:
        """The record of :class:`WeightFakeQuant`, plus ``learn_step``."""
        return {**WeightFakeQuant.get_extra_state(self), "learn_step": True}

    def extra_repr(self) -> str:
        return WeightFakeQuant.extra_repr(self) + ", learned Δ"
