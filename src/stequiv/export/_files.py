"""Shared by the exporters: atomic writes, the model to export, and the checks on its weights."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch
from torch import nn

from ..qat import IntegerLayer, convert_, integer_layers, quantized_layers

__all__ = ["atomic_write", "converted_copy", "float_bytes"]


def atomic_write(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``: to a temporary file beside it, flushed, then renamed over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


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
