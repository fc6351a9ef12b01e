"""``save`` / ``load``: checkpoints that carry their quantization, written atomically, verified.

File format: one header line ``stequiv-checkpoint 1 <sha256 hex>\\n`` followed by a ``torch.save``
payload ``{"quantization": {name: record}, "state_dict": model.state_dict()}``; the hash covers the
payload. ``load`` verifies the hash, reads the payload with ``weights_only=True`` (no code runs),
checks every layer's quantization against the model's *before* loading anything, then loads.

A quantized model's own ``state_dict`` also records each layer's quantization (the
``…parametrizations.weight.0._extra_state`` entries), and ``load_state_dict`` refuses a state of
another quantization too, naming the layer and the first difference.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._fake_quant import check_same_quantization
from ._quantize import quantized_layers

__all__ = ["load", "save"]

_MAGIC = b"stequiv-checkpoint 1 "


def _records(model: nn.Module) -> dict[str, dict[str, Any]]:
    return {name: fq.get_extra_state() for name, fq in quantized_layers(model).items()}


def save(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s state and quantization to ``path`` atomically; returns the path.

    The file appears complete or not at all: it is written to a temporary file next to ``path``,
    flushed to disk and renamed over it; on failure the temporary file is removed.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save({"quantization": _records(model), "state_dict": model.state_dict()}, buffer)
    data = buffer.getvalue()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(_MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n")
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _payload(path: Path) -> dict[str, Any]:
    raw = path.read_bytes()
    header, _, data = raw.partition(b"\n")
    if not header.startswith(_MAGIC):
        raise ValueError(f"{path} is not a stequiv checkpoint (written by stequiv.save); for a "
                         "plain state_dict use model.load_state_dict(torch.load(...))")
    if hashlib.sha256(data).hexdigest().encode() != header[len(_MAGIC):]:
        raise ValueError(f"{path}: sha256 mismatch, the file is corrupt or truncated; save it again")
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def load(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Load a :func:`save` checkpoint into ``model`` (quantized as the checkpoint was); returns it.

    Raises:
        ValueError: the file is not a stequiv checkpoint or is corrupt, or ``model`` is quantized
            differently (the message names the first differing layer and field). Nothing is loaded
            then.
    """
    path = Path(path)
    payload = _payload(path)
    recorded, ours = payload["quantization"], _records(model)
    for name in [*recorded, *ours]:
        if name not in ours or name not in recorded:
            where, other = ("the checkpoint", "the model") if name in recorded else (
                "the model", "the checkpoint")
            raise ValueError(f"layer {name!r} is quantized in {where} but not in {other}; "
                             f"the checkpoint's quantization: {recorded.get(name)}; quantize the "
                             "model the same way (stequiv.quantize_) before loading")
        check_same_quantization(f"layer {name!r}", recorded[name], ours[name])
    model.load_state_dict(payload["state_dict"])
    return model
