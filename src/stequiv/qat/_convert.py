r"""``convert_`` / ``from_integer``: turn fake-quantized layers into integer layers and back.

A fake-quantized weight computes, at every forward, :math:`Q(w) = \Delta(k + z)` with the level
index :math:`k = \operatorname{round}(\operatorname{clip}(w\Delta^{-1} - z, l, u))`. Once training is
over, w is only needed through k. :func:`convert_` stores k instead of w:

* **codes** u = k − l ∈ [0, u − l], packed w bits each, w the smallest of 1, 2, 4, 8 that holds
  the grid's 2^b levels (binary: one bit per weight; 2 bits: four per byte; 3–4 bits: two per
  byte; 5–8 bits: one byte);
* **scale** Δ in the weight's dtype (one per tensor, per output channel or per group, shaped as
  the fake-quantizer's Δ), and the grid's offset z and lower limit l as the layer's record.

The integer layer's weight is :math:`(u + l + z)\cdot\Delta`, computed by the same torch operations
in the same dtype and order as the fake-quantizer's forward (``k.add_(z).mul_(Δ)``), so the
converted model's forward equals the fake-quant model's bit for bit; :func:`convert_` checks that
equality on every weight before it changes the model. Tied weights stay tied: one set of codes,
read by every layer that read the weight.

The integer weight is a ``torch.nn.utils.parametrize`` parametrization whose originals are the
two buffers ``…parametrizations.<param>.original0`` (codes, uint8) and ``original1`` (Δ), so every
layer kind that :func:`~stequiv.qat.quantize_` handles (its forward reads the weight attribute)
works unchanged. A later dtype cast (``model.half()``) casts Δ and not the codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ._hf_guard import unguard
from ._layout import Layout
from ._packing import pack, unpack, width_for
from ._quantize import _layers, _quantized, target_name

__all__ = ["IntegerLayer", "IntegerWeight", "convert_", "from_integer", "integer_layers"]


class IntegerWeight(nn.Module):
    """Parametrization ``(codes, Δ) ↦ (u + l + z)·Δ`` of one weight (see the module docstring).

    Attributes:
        lower, upper, offset: the grid's clip limits l, u and offset z (level k at (k + z)·Δ).
        layout: where each Δ lies on the weight (per tensor, channel or group).
        width: bits per stored code (1, 2, 4 or 8).
    """

    def __init__(self, lower: int, upper: int, offset: float, layout: Layout):
        super().__init__()
        self.lower, self.upper, self.offset, self.layout = int(lower), int(upper), float(offset), layout
        self.width = width_for(self.upper - self.lower + 1)
        self._pending: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def numel(self) -> int:
        """Number of weights."""
        return math.prod(self.layout.shape)

    def levels(self, codes: torch.Tensor) -> torch.Tensor:
        """The level indices k = u + l (int32, the weight's shape) of packed ``codes``."""
        return unpack(codes, self.width, self.numel).add_(self.lower).reshape(self.layout.shape)

    def forward(self, codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        v = self.layout.view(self.levels(codes).to(scale.dtype))
        return self.layout.unview(v.add_(self.offset).mul_(scale))

    def right_inverse(self, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (codes, Δ) this parametrization was built with (set by :func:`attach`)."""
        if self._pending is None:
            raise RuntimeError("an IntegerWeight is attached by stequiv.convert_ or "
                               "stequiv.load_integer, not by register_parametrization")
        return self._pending

    def record(self) -> dict[str, Any]:
        """JSON-ready description (saved with the codes; :meth:`from_record` inverts it)."""
        return {"lower": self.lower, "upper": self.upper, "offset": self.offset,
                "width": self.width, **self.layout.to_dict()}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> IntegerWeight:
        """Inverse of :meth:`record`."""
        layout = Layout(tuple(record["shape"]), record["axis"], record["group_size"],
                        record.get("batch", 0))
        out = cls(record["lower"], record["upper"], record["offset"], layout)
        if out.width != record["width"]:
            raise ValueError(f"an integer weight recorded with width {record['width']} for levels "
                             f"{out.lower}..{out.upper} (which need {out.width} bits)")
        return out

    def get_extra_state(self) -> dict[str, Any]:
        return self.record()

    def set_extra_state(self, state: Any) -> None:
        if state != self.record():
            raise ValueError(f"integer weight: the state was saved with {state} but this layer "
                             f"is {self.record()}; convert the model the same way before loading")

    def extra_repr(self) -> str:
        lay = self.layout
        where = ("per-tensor" if lay.axis is None else f"axis={lay.axis}"
                 + ("" if lay.group_size is None else f", group_size={lay.group_size}"))
        return f"l={self.lower}, u={self.upper}, offset={self.offset:g}, {self.width}-bit codes, {where}"


@dataclass(frozen=True)
class IntegerLayer:
    """One integer weight of a converted model: its layer, parameter, grid and tensors."""

    module: nn.Module
    param: str
    weight: IntegerWeight
    codes: torch.Tensor  # packed uint8
    scale: torch.Tensor  # Δ in the weight's dtype, shaped as layout.delta_shape()

    def levels(self) -> torch.Tensor:
        """Level indices k (int32, the weight's shape)."""
        return self.weight.levels(self.codes)

    def dequantize(self) -> torch.Tensor:
        """The weight (k + z)·Δ, as the layer's forward reads it."""
        return self.weight(self.codes, self.scale)


def attach(module: nn.Module, param: str, weight: IntegerWeight, codes: torch.Tensor,
           scale: torch.Tensor) -> None:
    """Make ``module.<param>`` read ``weight(codes, scale)`` (its current tensor is dropped)."""
    current = getattr(module, param)
    delattr(module, param)
    module.register_buffer(param, current.detach())  # a buffer: the originals become buffers
    weight._pending = (codes, scale)
    try:
        parametrize.register_parametrization(module, param, weight, unsafe=True)
    finally:
        weight._pending = None


def own_class(module: nn.Module) -> None:
    """Give a parametrized ``module`` a class of its own (same bases and properties).

    ``copy.deepcopy`` of a parametrized module shares torch's generated class with the original,
    so adding or removing a parametrization on the copy would add or delete the property on the
    original too.
    """
    cls = type(module)
    if parametrize.is_parametrized(module):
        body = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")}
        module.__class__ = type(cls.__name__, cls.__bases__, body)  # type: ignore[assignment]


def integer_layers(model: nn.Module) -> dict[str, IntegerLayer]:
    """``{name: IntegerLayer}`` for every integer weight of a converted model, in module order.

    Names are :func:`~stequiv.qat.quantized_layers`'s; a tied weight appears under each layer.
    """
    out = {}
    for layer, module in _layers(model):
        if not parametrize.is_parametrized(module):
            continue
        for param, chain in module.parametrizations.items():  # type: ignore[union-attr]
            if len(chain) == 1 and isinstance(chain[0], IntegerWeight):
                out[target_name(layer, param)] = IntegerLayer(
                    module, param, chain[0], chain.original0, chain.original1)
    return out


@dataclass(frozen=True)
class _Conversion:
    weight: IntegerWeight
    codes: torch.Tensor
    scale: torch.Tensor
    readers: list[tuple[nn.Module, str]]


def _plan(name: str, module: nn.Module, param: str, fq: Any) -> _Conversion:
    chain = getattr(module.parametrizations, param)
    if len(chain) != 1:
        raise ValueError(f"convert_: weight {name!r} carries other parametrizations besides "
                         "stequiv's; remove those first")
    latent = chain.original.detach()
    if not bool(torch.isfinite(latent).all()):
        raise ValueError(f"convert_: the latent weight of {name!r} has non-finite entries "
                         f"({int((~torch.isfinite(latent)).sum())} of {latent.numel()}); a NaN "
                         "or inf weight has no integer code: fix the training run first")
    weight = IntegerWeight(fq.lower, fq.upper, fq.offset, fq.layout)
    with torch.no_grad():
        k = fq.code(latent)
        codes = pack((k - fq.lower).to(torch.int32), weight.width)
        scale = fq.delta.detach().to(latent.dtype).clone()
        expected = getattr(module, param)
        got = weight(codes, scale)
    if not torch.equal(got, expected):  # would be a bug in stequiv: refuse rather than drift
        raise RuntimeError(f"convert_: the integer weight of {name!r} differs from its fake-quant "
                           f"weight at {int((got != expected).sum())} entries; please report")
    return _Conversion(weight, codes, scale, [])


def convert_(model: nn.Module) -> nn.Module:
    r"""Replace, in place, every fake-quantized weight by integer codes and Δ; returns ``model``.

    The converted model's forward equals the fake-quant model's bit for bit (module docstring);
    its ``state_dict`` holds packed codes (uint8) and Δ instead of latent float weights.
    Activation quantizers stay as they are. :func:`from_integer` goes back to a float model.

    Raises:
        ValueError: the model has no fake-quantized weight, a weight carries another
            parametrization, a latent weight is not finite, or a grid has more than 256 levels.
            Nothing is changed then.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    found = _quantized(model)
    if not found:
        hint = ("it is already converted" if integer_layers(model) else
                "quantize it with stequiv.quantize_ and train it first")
        raise ValueError(f"convert_: the model has no fake-quantized weight; {hint}")
    plans: dict[int, _Conversion] = {}
    for name, (module, param, fq) in found.items():
        if id(fq) not in plans:
            plans[id(fq)] = _plan(name, module, param, fq)
        plans[id(fq)].readers.append((module, param))
    for module in {id(m): m for plan in plans.values() for m, _ in plan.readers}.values():
        own_class(module)
    for plan in plans.values():
        for module, param in plan.readers:
            parametrize.remove_parametrizations(module, param, leave_parametrized=False)
        for module, param in plan.readers:
            attach(module, param, plan.weight, plan.codes, plan.scale)
    return model


def from_integer(model: nn.Module) -> nn.Module:
    """Replace, in place, every integer weight by an ordinary float parameter holding (k + z)·Δ.

    The result is a plain float model whose forward equals the converted (and the fake-quant)
    model's; tied weights stay one parameter. Returns ``model``.

    Raises:
        ValueError: the model has no integer weight.
    """
    found = integer_layers(model)
    if not found:
        raise ValueError("from_integer: the model has no integer weight; convert it with "
                         "stequiv.convert_ first")
    params: dict[int, nn.Parameter] = {}
    for module in {id(layer.module): layer.module for layer in found.values()}.values():
        own_class(module)
    for layer in found.values():
        key = id(layer.weight)
        if key not in params:
            with torch.no_grad():
                params[key] = nn.Parameter(layer.dequantize())
        parametrize.remove_parametrizations(layer.module, layer.param, leave_parametrized=True)
        del layer.module._buffers[layer.param]
        layer.module.register_parameter(layer.param, params[key])
    unguard(model)  # a plain float model again: Hugging Face's own methods work
    return model
