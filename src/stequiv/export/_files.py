"""Shared by the exporters: the model to export, and the checks on its weights."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .._atomic import write_atomic as write_atomic
from ..qat import IntegerLayer, convert_, integer_layers, quantized_layers

__all__ = ["converted_copy", "float_bytes", "symmetric_codes", "tensor_bytes"]


def converted_copy(model: nn.Module) -> tuple[nn.Module, dict[str, IntegerLayer]]:
    """``model`` if it is converted, else a converted deep copy (the argument is left as it is).

    Raises:
        ValueError: the model is neither fake-quantized nor converted.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    if quantized_layers(model):
        model = convert_(copy.deepcopy(model))
    layers = integer_layers(model)
    if not layers:
        raise ValueError("the model has no quantized weight to export; quantize it with "
                         "stequiv.quantize_ (and train it) first")
    return model, layers


def float_bytes(model: nn.Module) -> int:
    """Bytes of the model's weights as floats: integer weights counted at their scale's dtype."""
    seen: set[int] = set()
    total = 0
    for layer in integer_layers(model).values():
        if id(layer.weight) not in seen:
            seen.add(id(layer.weight))
            total += layer.weight.numel * layer.scale.element_size()
    for p in model.parameters():
        total += p.numel() * p.element_size()
    return total


def tensor_bytes(t: torch.Tensor) -> bytes:
    """The raw bytes of ``t`` (contiguous, native little-endian), any dtype."""
    return t.detach().contiguous().reshape(-1).view(torch.uint8).cpu().numpy().tobytes()


def symmetric_codes(layer: IntegerLayer, where: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(q, s, bits)`` with q·s = (k + z)·Δ exactly, for formats whose weights are q·s.

    Offset 0: q = k, s = Δ, b bits. Offset ½ (the zero-free grid): the odd codes q = 2k + 1 at
    s = Δ/2, b + 1 bits (Δ/2 is exact unless subnormal). q is int32 in the weight's shape, s is
    Δ's tensor (the scale's dtype, one per row of the layout, flattened).

    Raises:
        ValueError: another offset, or a Δ whose half is not exact; ``where`` names the format
            and the weight.
    """
    w = layer.weight
    k, scale = layer.levels(), layer.scale.detach().reshape(-1)
    levels_bits = (w.upper - w.lower + 1).bit_length() - 1
    if w.offset == 0.0:
        return k, scale, levels_bits
    if w.offset != 0.5:
        raise ValueError(f"{where} is on a grid with offset {w.offset:g}; integer formats hold "
                         "offset 0 (q = k) or the zero-free offset 0.5 (odd codes at half the "
                         "step): quantize with QuantConfig(offset=0.0) or offset=0.5")
    half = scale / 2
    if not bool(torch.all((half * 2 == scale) & (half >= torch.finfo(half.dtype).tiny))):
        raise ValueError(f"{where} has a Δ whose half is subnormal in {half.dtype}, so the odd "
                         "codes 2k+1 at Δ/2 cannot hold its levels exactly; quantize with a "
                         "larger scale")
    return 2 * k + 1, half, levels_bits + 1
