r"""Activation fake-quantization: quantize the inputs of chosen layers, with any estimator.

The input x of a layer is quantized on a uniform grid of :math:`2^b` levels spanning ``[lo, hi]``:

.. math::  v = (x - lo)/\Delta,\quad \Delta = \frac{hi - lo}{2^b - 1},\qquad
           Q(x) = lo + \Delta\,\operatorname{round}(\operatorname{clip}(v, 0, 2^b - 1))

so v is the grid coordinate of :mod:`stequiv.core` (levels at the integers, boundaries at the
half-integers) and a bin-unit estimator acts on it exactly as on weights: the backward is
:math:`\partial L/\partial x = \hat Q'(v)\,\partial L/\partial Q`. A binary (weight-unit) estimator
needs ``bits=1`` and a symmetric range, and is evaluated at x itself (boundary at 0), as for weights.

Ranges (``ActivationConfig.range``): a fixed ``(lo, hi)``; ``"running"`` (min/max of each training
batch, averaged with ``momentum``; eval uses the average); ``"dynamic"`` (min/max of the current
tensor, or of each token with ``granularity="per-token"``: every index but the last dimension);
``"learned"``: Δ is an ``nn.Parameter`` trained LSQ-style (Esser et al. 2020) with the zero point
fixed at :math:`lo = z\Delta` (z from the first batch), gradient

.. math:: \frac{\partial Q}{\partial\Delta} = (z + k) - (v + z)\,\hat Q'(v),\quad k = \operatorname{round}(\operatorname{clip}(v)),

(LSQ's :math:`-v + \lfloor v\rceil` inside the range and the clip level outside, for the STE) summed
and scaled by LSQ's :math:`g = 1/\sqrt{N\,Q_P}`, N = features per example, :math:`Q_P = 2^b - 1`.

The STE twin of :func:`~stequiv.qat.to_ste` keeps activation quantizers as they are: Theorem 5.1 is
about weights, and an activation estimator has no twin (Section 8).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core import Estimator, get_estimator
from ..core._validate import finite_float, integer
from ..core.estimators._basic import STE
from ._autograd import gradient_times

__all__ = ["ActivationConfig", "ActivationFakeQuant", "activation_quantizers",
           "dequantize_activations_", "quantize_activations_"]

_RANGES = ("running", "dynamic", "learned")
_GRANULARITIES = ("per-tensor", "per-token")
ATTRIBUTE = "activation_quant"  # the quantizer is this child of the layer it serves
LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # chosen by default


@dataclass(frozen=True)
class ActivationConfig:
    """How to fake-quantize a layer's input.

    Args:
        estimator: a registered name, a ``{"name": ..., **params}`` dict, or an Estimator.
        bits: b ≥ 1 (``2**b`` levels).
        granularity: ``"per-tensor"`` or ``"per-token"`` (one range per index of all but the last
            dimension; needs ``range="dynamic"``).
        range: ``(lo, hi)`` fixed, or ``"running"``, ``"dynamic"``, ``"learned"`` (module docstring).
        symmetric: ranges ``[-max|x|, max|x|]`` instead of ``[min x, max x]`` (binary estimators).
        momentum: weight of each new batch in the running range.
        estimator_params: extra estimator parameters, merged into ``estimator``.
    """

    estimator: str | Mapping[str, Any] | Estimator = "ste"
    bits: int = 4
    granularity: str = "per-tensor"
    range: str | tuple[float, float] = "running"
    symmetric: bool = False
    momentum: float = 0.1
    estimator_params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        integer("bits", self.bits, minimum=1)
        if not 0.0 < finite_float("momentum", self.momentum) <= 1.0:
            raise ValueError(f"`momentum` must lie in (0, 1], got {self.momentum!r}")
        if self.granularity not in _GRANULARITIES:
            raise ValueError(f"`granularity` must be one of {_GRANULARITIES}, got {self.granularity!r}")
        if isinstance(self.range, str):
            if self.range not in _RANGES:
                raise ValueError(f"`range` must be one of {_RANGES} or a (lo, hi) pair, got {self.range!r}")
        else:
            lo, hi = (finite_float(f"range[{i}]", r) for i, r in enumerate(self.range))
            if not lo < hi:
                raise ValueError(f"`range` (lo, hi) needs lo < hi, got {self.range!r}")
            object.__setattr__(self, "range", (lo, hi))
        if self.granularity == "per-token" and self.range != "dynamic":
            raise ValueError("`granularity='per-token'` needs `range='dynamic'` (a running, learned or "
                             "fixed range is one per tensor)")
        est = get_estimator(self.estimator, **dict(self.estimator_params))
        object.__setattr__(self, "estimator", est)
        object.__setattr__(self, "estimator_params", {})
        if est.units == "weight" and (self.bits != 1 or not self.symmetric or self.range == "learned"):
            raise ValueError(f"{est.describe()} is a binary estimator (boundary at x = 0): use it with "
                             "bits=1, symmetric=True and a fixed, running or dynamic range")
        if est.tail == "custom" and self.granularity == "per-token":
            raise ValueError(f"{est.describe()} has a tail of its own, defined per tensor; use "
                             "granularity='per-tensor'")

    @property
    def est(self) -> Estimator:
        """The resolved estimator."""
        assert isinstance(self.estimator, Estimator)
        return self.estimator


class _ActQuantize(torch.autograd.Function):
    """Forward Q(x) on the grid (lo, Δ); backward Q̂′ for x and, if Δ is learned, LSQ's ∂Q/∂Δ."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, lo: torch.Tensor, delta: torch.Tensor,
                aq: ActivationFakeQuant) -> torch.Tensor:
        ctx.aq, ctx.ste = aq, isinstance(aq.estimator, STE)
        v = (x - lo).mul_(1.0 / delta)
        if ctx.needs_input_grad[2]:  # learned Δ: LSQ needs v and the level k
            k = v.clamp(0, aq.upper).round_()
            ctx.save_for_backward(v, k.clone(), lo, delta)
        else:
            if ctx.needs_input_grad[0] and not ctx.ste:
                ctx.save_for_backward(x if aq.estimator.units == "weight" else v.clone(), lo, delta)
            k = v.clamp_(0, aq.upper).round_()
        return k.mul_(delta).add_(lo)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, None, torch.Tensor | None, None]:
        aq: ActivationFakeQuant = ctx.aq
        if not ctx.needs_input_grad[2]:
            if ctx.ste:  # Q̂′ ≡ 1: the upstream gradient passes through
                return grad, None, None, None
            x, lo, delta = ctx.saved_tensors  # Q̂′·g by the weights' fastest path (eager CPU: NumPy)
            return gradient_times(aq.estimator, x, grad, 0, aq.upper, aq.offset(lo, delta)), None, None, None
        v, k, lo, delta = ctx.saved_tensors
        slope = aq.estimator.gradient(v, 0, aq.upper, aq.offset(lo, delta))
        z = lo / delta
        lsq = grad * ((z + k) - (v + z) * slope)
        grad_delta = lsq.sum().reshape(delta.shape) * aq.lsq_scale(v)
        return grad * slope, None, grad_delta, None


class ActivationFakeQuant(nn.Module):
    """Quantizes the input of one layer (installed as its ``activation_quant`` child + a pre-hook).

    Attributes:
        layer: the name of the layer whose input this quantizes (for error messages).
        estimator: the estimator of the activations' grid coordinate.
        upper: the top level 2^b − 1.
        config: the :class:`ActivationConfig` it was built from.
    """

    # Registered in __init__ by range kind (buffers, or a Parameter for a learned Δ).
    running: torch.Tensor
    initialized: torch.Tensor
    delta: torch.Tensor
    zero_point: torch.Tensor

    def __init__(self, config: ActivationConfig, layer: str):
        super().__init__()
        self.config, self.layer, self.estimator = config, layer, config.est
        self.upper = 2**config.bits - 1
        self.calls = 0
        if config.range in ("running", "learned"):
            self.register_buffer("running", torch.zeros(2, dtype=torch.float64))
            self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))
        if config.range == "learned":
            self.delta = nn.Parameter(torch.ones(()))
            self.register_buffer("zero_point", torch.zeros((), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        lo, delta = self._grid(x)
        return _ActQuantize.apply(x, lo, delta, self)

    def _grid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo, Δ) for this call, checked: finite and Δ > 0, else an error naming the layer."""
        rng = self.config.range
        if rng == "learned":
            if not bool(self.initialized):
                self._observe(x)
                lo, hi = (float(r) for r in self.running)
                with torch.no_grad():
                    self.delta.fill_(self._checked(torch.tensor((hi - lo) / self.upper)))
                self.zero_point.fill_(lo / float(self.delta.detach()))
            delta = self._checked(self.delta)
            return (self.zero_point.to(x.dtype) * delta).to(x.dtype), delta.to(x.dtype)
        if rng == "dynamic":
            lo, hi = self._min_max(x.detach(), per_token=self.config.granularity == "per-token")
        elif rng == "running":
            if self.training:
                self._observe(x)
            elif not bool(self.initialized):
                raise ValueError(f"the running activation range of layer {self.layer!r} was never "
                                 "measured: run a training-mode forward first, or give a fixed range")
            lo, hi = self.running[0].to(x), self.running[1].to(x)
        else:
            lo, hi = (torch.tensor(r, dtype=x.dtype, device=x.device) for r in rng)
        return lo, self._checked((hi - lo) / self.upper)

    def _min_max(self, x: torch.Tensor, per_token: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if per_token:
            lo, hi = torch.aminmax(x, dim=-1, keepdim=True)
        else:
            lo, hi = torch.aminmax(x)
        if self.config.symmetric:
            hi = torch.maximum(hi.abs(), lo.abs())
            lo = -hi
        return lo, hi

    @torch.no_grad()
    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = self._min_max(x.detach(), per_token=False)
        new = torch.stack([lo, hi]).to(torch.float64)
        if bool(self.initialized):
            self.running.lerp_(new, self.config.momentum)
        else:
            self.running.copy_(new)
            self.initialized.fill_(True)

    def _checked(self, delta: torch.Tensor) -> torch.Tensor:
        ok = torch.isfinite(delta) & (delta > 0)
        if not bool(ok.all()):
            bad = delta[~ok].flatten()[0].item() if delta.ndim else delta.item()
            fix = ("the learned Δ went ≤ 0 or non-finite: lower its learning rate"
                   if self.config.range == "learned" else
                   "the input has a zero-width or non-finite range there: check the inputs, or give "
                   "a fixed range (lo, hi)")
            raise ValueError(f"activation quantizer of layer {self.layer!r}, forward call {self.calls}: "
                             f"Δ = {bad!r}; {fix}")
        return delta

    def offset(self, lo: torch.Tensor, delta: torch.Tensor) -> float:
        """The zero-point offset z = lo/Δ passed to an estimator's own tail (per-tensor only)."""
        return float(lo / delta) if self.estimator.tail == "custom" else 0.0

    def lsq_scale(self, x: torch.Tensor) -> float:
        """LSQ's gradient scale 1/√(N·Q_P), N = features per example."""
        return 1.0 / math.sqrt(max(x[0].numel() if x.ndim > 1 else x.numel(), 1) * self.upper)

    def extra_repr(self) -> str:
        c = self.config
        return (f"layer={self.layer!r}, estimator={self.estimator.describe()}, bits={c.bits}, "
                f"range={c.range!r}, granularity={c.granularity!r}")


def _quantize_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Forward pre-hook: the layer's first input through its own ``activation_quant`` child.
    A plain function (not a closure), so that ``copy.deepcopy`` of a model keeps it working."""
    return (getattr(module, ATTRIBUTE)(args[0]), *args[1:])


def quantize_activations_(model: nn.Module, config: ActivationConfig,
                          filter_fn: Callable[[nn.Module, str], bool] | None = None) -> nn.Module:
    """Fake-quantize, in place, the inputs of ``model``'s layers chosen by ``filter_fn``
    (default: Linear and Conv1d/2d/3d); returns ``model``.

    Raises:
        ValueError: no layer was selected, or a layer's input is already quantized.
    """
    if not isinstance(config, ActivationConfig):
        raise TypeError(f"`config` must be an ActivationConfig, got {type(config).__name__}")
    chosen = [(n, m) for n, m in model.named_modules()
              if n and (filter_fn(m, n) if filter_fn else isinstance(m, LAYERS))]
    if not chosen:
        raise ValueError("quantize_activations_ selected no layer; pass a filter_fn that selects them")
    for name, module in chosen:
        if isinstance(getattr(module, ATTRIBUTE, None), ActivationFakeQuant):
            raise ValueError(f"the input of layer {name!r} is already quantized; call "
                             "dequantize_activations_ first")
    for name, module in chosen:
        device = next(iter(module.parameters()), torch.empty(0)).device
        module.add_module(ATTRIBUTE, ActivationFakeQuant(config, name).to(device))
        module.register_forward_pre_hook(_quantize_input)
    return model


def activation_quantizers(model: nn.Module) -> dict[str, ActivationFakeQuant]:
    """``{layer_name: its ActivationFakeQuant}``, in module order."""
    return {m.layer: m for m in model.modules() if isinstance(m, ActivationFakeQuant)}


def dequantize_activations_(model: nn.Module) -> nn.Module:
    """Remove every activation quantizer (and its hook) in place."""
    found = False
    for module in model.modules():
        if isinstance(getattr(module, ATTRIBUTE, None), ActivationFakeQuant):
            delattr(module, ATTRIBUTE)
            for key, hook in list(module._forward_pre_hooks.items()):
                if hook is _quantize_input:
                    del module._forward_pre_hooks[key]
            found = True
    if not found:
        raise ValueError("dequantize_activations_: the model has no activation quantizer")
    return model
