r"""GGUF (the ``gguf`` package's writer): integer weights as Q4_0 or Q8_0 blocks, the rest as floats.

GGUF's block formats hold 32 consecutive weights of a row with one float16 scale d:

* Q4_0: 4-bit q ∈ 0..15, :math:`w = d\,(q - 8)` — the offset-0 grid with levels k = q − 8 ∈ −8..7;
* Q8_0: int8 q, :math:`w = d\,q` — the offset-0 grid with levels −128..127.

So a weight trained with ``QuantConfig.for_format("gguf-q4_0")`` (or ``"gguf-q8_0"``: 4 or 8
bits, offset 0, groups of 32, Δ rounded to float16) is written with d = Δ and q = k (+ 8), and
``gguf.quants.dequantize`` returns d·k in float32, which is the float32 fake-quant weight bit for
bit (d has 11 significant bits, k at most 8: the product is exact). Each weight is written as the
2-D matrix of its rows (output channels first, ``(C, N/C)``); the original shape and output axis
are recorded under ``stequiv.shape.<name>`` and ``stequiv.axis.<name>``. Any other grid is refused
with the format's limit and the config that fits; nothing is re-rounded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._optional import require
from ..qat import IntegerLayer, integer_layers
from ._files import tensor_bytes

__all__ = ["ARCHITECTURE", "write_gguf"]

ARCHITECTURE = "stequiv"
BLOCK = 32
_GRIDS = {(-8, 7): "Q4_0", (-128, 127): "Q8_0"}


def _refuse(name: str, layer: IntegerLayer, why: str) -> ValueError:
    w = layer.weight
    return ValueError(
        f"GGUF export: weight {name!r} ({why}; levels {w.lower}..{w.upper}, offset {w.offset:g}, "
        f"{w.extra_repr()}) does not fit GGUF's Q4_0/Q8_0 blocks, which hold 32 consecutive "
        "weights of a row with one float16 scale d and codes q: Q4_0 w = d·(q−8), q = 0..15, "
        "Q8_0 w = d·q, q an int8. Train it with QuantConfig.for_format('gguf-q4_0') or "
        "QuantConfig.for_format('gguf-q8_0')")


def _qtype(name: str, layer: IntegerLayer) -> str:
    w, lay = layer.weight, layer.weight.layout
    if w.offset != 0.0 or (w.lower, w.upper) not in _GRIDS:
        raise _refuse(name, layer, "not on the offset-0 4- or 8-bit grid")
    if lay.group_size != BLOCK:
        raise _refuse(name, layer, f"Δ per {'group of ' + str(lay.group_size) if lay.group_size else 'channel or tensor'}, not per block of {BLOCK}")
    scale = layer.scale.detach()
    if not torch.equal(scale.to(torch.float16).to(scale.dtype), scale):
        raise _refuse(name, layer, "a Δ that is not a float16 number (trained, or not rounded)")
    return _GRIDS[(w.lower, w.upper)]


def _blocks(layer: IntegerLayer, qtype: str) -> np.ndarray:
    """The GGUF bytes of a weight: rows (C, K) → K/32 blocks per row of d and q."""
    lay = layer.weight.layout
    k = lay.rows(layer.levels()).reshape(-1, BLOCK)  # (blocks, 32), one Δ per block
    d = layer.scale.detach().to(torch.float16).reshape(-1, 1).numpy().view(np.uint8)
    if qtype == "Q8_0":
        q = k.to(torch.int8).numpy().view(np.uint8)
    else:
        u = (k + 8).to(torch.uint8).numpy()
        q = u[:, :BLOCK // 2] | (u[:, BLOCK // 2:] << np.uint8(4))
    channels = lay.shape[lay.axis if lay.axis is not None else 0]
    return np.concatenate([d, q], axis=1).reshape(channels, -1)


def _array(t: torch.Tensor) -> tuple[np.ndarray, Any]:
    """A float or integer tensor as GGUF stores it (bfloat16 as its raw 16-bit words)."""
    gguf = require("gguf", "export", feature="GGUF export")
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        raw = np.frombuffer(tensor_bytes(t), dtype=np.uint16).reshape(t.shape)
        return raw, gguf.GGMLQuantizationType.BF16
    if t.dtype in (torch.float16, torch.float32, torch.float64, torch.int8, torch.int16,
                   torch.int32, torch.int64):
        return t.numpy(), None
    raise ValueError(f"GGUF export: a tensor of dtype {t.dtype}, which GGUF does not hold")


def _state_key(name: str, param: str) -> str:
    base = name if param == "weight" else name.rpartition(".")[0]
    return f"{base + '.' if base else ''}{param}"


def write_gguf(model: nn.Module, path: Path, example: Any = None) -> Path:
    """Write a converted ``model`` as GGUF (module docstring); returns ``path``."""
    gguf = require("gguf", "export", feature="GGUF export")
    layers = integer_layers(model)
    qtypes = {name: _qtype(name, layer) for name, layer in layers.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), ARCHITECTURE)
    try:
        writer.add_string("general.name", type(model).__name__)
        done: dict[int, str] = {}
        for name, layer in layers.items():
            key = _state_key(name, layer.param)
            if id(layer.weight) in done:
                writer.add_string(f"stequiv.tied.{key}", done[id(layer.weight)])
                continue
            done[id(layer.weight)] = key
            lay = layer.weight.layout
            writer.add_tensor(key, _blocks(layer, qtypes[name]),
                              raw_dtype=getattr(gguf.GGMLQuantizationType, qtypes[name]))
            writer.add_string(f"stequiv.shape.{key}", json.dumps(list(lay.shape)))
            writer.add_uint32(f"stequiv.axis.{key}", int(lay.axis or 0))  # grouped: has an axis
        seen: set[tuple] = set()
        for key, value in model.state_dict().items():
            if (".parametrizations." in f".{key}" and ".original" in key) or key.endswith("_extra_state"):
                continue  # integer weights: written above
            ident = (value.untyped_storage().data_ptr(), value.storage_offset(), value.shape)
            if ident not in seen:
                seen.add(ident)
                array, raw = _array(value)
                writer.add_tensor(key, array, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
