"""``save`` / ``load``: checkpoints that carry their quantization, written atomically, verified.

File format: one header line ``stequiv-checkpoint 1 <sha256 hex>\\n`` followed by a ``torch.save``
payload ``{"quantization": {name: record}, "state_dict": model.state_dict()}``; the hash covers the
payload. ``load`` verifies the hash, reads the payload with ``weights_only=True`` (no code runs),
checks every layer's quantization against the model's *before* loading anything, then loads.

``load`` into a model that is not quantized at all first quantizes it as the checkpoint records
(estimator, bits, offset, axis, group size; Δ then comes from the checkpoint).

Hugging Face: ``model.save_pretrained`` of a quantized model raises a TypeError pointing here (its
latent weights sit under ``…parametrizations.weight.original``, which ``from_pretrained`` would drop
and re-initialise).
:func:`save_pretrained` writes the latent weights under the plain names, so ``from_pretrained``
restores them into a plain model, and beside them ``stequiv.ckpt``; ``load(dir/"stequiv.ckpt",
model)`` then quantizes that model as recorded and loads Δ.

A quantized model's own ``state_dict`` also records each layer's quantization (the
``…parametrizations.weight.0._extra_state`` entries), and ``load_state_dict`` refuses a state of
another quantization too, naming the layer and the first difference.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ._config import QuantConfig
from ._fake_quant import check_same_quantization
from ._layout import kind_of
from ._quantize import dequantize_, quantize_, quantized_layers

__all__ = ["load", "save", "save_pretrained"]

_MAGIC = b"stequiv-checkpoint 1 "
PRETRAINED_CHECKPOINT = "stequiv.ckpt"
_LATENT_KEY = re.compile(r"(^|\.)parametrizations\.([^.]+)\.original$")


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
    payload = torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    if not (isinstance(payload, dict) and isinstance(payload.get("quantization"), dict)
            and isinstance(payload.get("state_dict"), dict)):
        found = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path}: the checkpoint's payload must be a dict with 'quantization' and "
                         f"'state_dict' (as stequiv.save writes), found {found}; save it again with "
                         "stequiv.save")
    return payload


def _check_state(path: Path, state: dict[str, Any], model: nn.Module) -> None:
    """Refuse a state dict whose keys or tensor shapes differ from ``model``'s, before anything is
    loaded (``load_state_dict`` copies every matching tensor before it reports the others)."""
    ours = model.state_dict()
    missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
    if missing or unexpected:
        raise ValueError(f"{path} does not fit the model: missing keys {missing[:5]}"
                         f"{' …' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}"
                         f"{' …' if len(unexpected) > 5 else ''}; load it into a model of the "
                         "architecture it was saved from. Nothing was loaded")
    for key, value in state.items():
        mine = ours[key]
        if isinstance(value, torch.Tensor) and isinstance(mine, torch.Tensor) and (
                value.shape != mine.shape):
            raise ValueError(f"{path}: {key!r} has shape {tuple(value.shape)} in the checkpoint "
                             f"but {tuple(mine.shape)} in the model; load it into a model of the "
                             "architecture it was saved from. Nothing was loaded")


def load(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Load a :func:`save` checkpoint into ``model`` (quantized as the checkpoint was); returns it.

    Raises:
        ValueError: the file is not a stequiv checkpoint or is corrupt, or ``model`` is quantized
            differently (the message names the first differing layer and field), or its state does
            not fit ``model`` (keys or shapes). The model is unchanged then.
    """
    path = Path(path)
    payload = _payload(path)
    recorded = payload["quantization"]
    fresh = recorded and not quantized_layers(model)
    if fresh:
        quantize_(model, {name: config_of(r) for name, r in recorded.items()},
                  filter_fn=lambda module, name: kind_of(module) is not None)
    try:
        _check(recorded, _records(model))
        _check_state(path, payload["state_dict"], model)
        before = {k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v)
                  for k, v in model.state_dict().items()}
        try:
            model.load_state_dict(payload["state_dict"])
        except Exception:
            model.load_state_dict(before)  # all or nothing
            raise
    except Exception:
        if fresh:
            dequantize_(model)
        raise
    return model


def config_of(record: dict[str, Any]) -> QuantConfig:
    """The QuantConfig that reproduces a layer's record (Δ aside: ``scale`` is a placeholder;
    a learned Δ is recorded as ``learn_step``)."""
    levels = record["upper"] - record["lower"] + 1
    bits = levels.bit_length() - 1
    if levels != 2**bits or record["lower"] != -(2 ** (bits - 1)):
        raise ValueError(f"a record with levels {record['lower']}..{record['upper']} is not a "
                         "QuantConfig grid; quantize the model by hand before loading")
    return QuantConfig(estimator=record["estimator"], bits=bits, offset=record["offset"],
                       scale=1.0, per_channel=record["axis"] is not None, axis=record["axis"],
                       group_size=record["group_size"],
                       learn_step=record.get("learn_step", False))


def _check(recorded: dict[str, Any], ours: dict[str, Any]) -> None:
    for name in [*recorded, *ours]:
        if name not in ours or name not in recorded:
            where, other = ("the checkpoint", "the model") if name in recorded else (
                "the model", "the checkpoint")
            raise ValueError(f"layer {name!r} is quantized in {where} but not in {other}; "
                             f"the checkpoint's quantization: {recorded.get(name)}; quantize the "
                             "model the same way (stequiv.quantize_) before loading")
        check_same_quantization(f"layer {name!r}", recorded[name], ours[name])


def latent_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` as the float model's: latent weights under their plain names."""
    out = {}
    for key, value in model.state_dict().items():
        if ".parametrizations." not in f".{key}":
            out[key] = value
        elif _LATENT_KEY.search(key):
            out[_LATENT_KEY.sub(r"\1\2", key)] = value
    return out


def save_pretrained(model: nn.Module, directory: str | os.PathLike, **kwargs: Any) -> Path:
    """Hugging Face ``save_pretrained`` of a quantized model that ``from_pretrained`` restores.

    Writes the latent weights under the float model's names (``from_pretrained`` loads them into a
    plain model) and ``stequiv.ckpt`` beside them; ``load(directory / "stequiv.ckpt", model)``
    quantizes the loaded model as recorded. ``kwargs`` go to ``save_pretrained``. Returns the
    checkpoint's path.
    """
    directory = Path(directory)
    # the class's method: quantize_ shadows the instance's by a refusal
    type(model).save_pretrained(model, directory, state_dict=latent_state_dict(model), **kwargs)  # type: ignore[attr-defined]
    return save(model, directory / PRETRAINED_CHECKPOINT)
