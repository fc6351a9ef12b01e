"""``save`` / ``load``: checkpoints that carry their quantization, written atomically, verified.

File format: one header line ``stequiv-checkpoint 1 <sha256 hex>\\n`` followed by a ``torch.save``
payload ``{"quantization": {name: record}, "state_dict": model.state_dict()}``; the hash covers the
payload. ``load`` verifies the hash, reads the payload with ``weights_only=True`` (no code runs),
checks every layer's quantization against the model's *before* loading anything, then loads.

``load`` into a model that is not quantized at all first quantizes it as the checkpoint records
(estimator, bits, offset, axis, group size; Δ then comes from the checkpoint).

Hugging Face: ``model.save_pretrained`` of a quantized model raises a TypeError pointing here (its
latent weights sit under ``…parametrizations.weight.original``, which ``from_pretrained`` would drop
and re-initialise). :func:`save_pretrained` writes the config and ``stequiv.ckpt`` and no weights
under Hugging Face's names, so plain ``from_pretrained`` refuses the folder rather than load the
latent weights as a different model; :func:`load_pretrained` reads it back.

A quantized model's own ``state_dict`` also records each layer's quantization (the
``…parametrizations.weight.0._extra_state`` entries), and ``load_state_dict`` refuses a state of
another quantization too, naming the layer and the first difference.
"""

from __future__ import annotations

import copy
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._atomic import write_atomic
from ._config import QuantConfig
from ._fake_quant import check_same_quantization
from ._layout import kind_of
from ._quantize import dequantize_, quantize_, quantized_layers

__all__ = ["load", "load_pretrained", "save", "save_pretrained"]

_MAGIC = b"stequiv-checkpoint 1 "
PRETRAINED_CHECKPOINT = "stequiv.ckpt"
_HF_WEIGHTS = ("model.safetensors", "pytorch_model", "model-0", "tf_model", "flax_model")


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
    return write_atomic(path, _MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)


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
        quantize_(model, {name: _recorded_config(path, name, r) for name, r in recorded.items()},
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


def _recorded_config(path: Path, name: str, record: Any) -> QuantConfig:
    """:func:`config_of` a layer's record, refusing a record that lacks a field by name."""
    fields = ("estimator", "lower", "upper", "offset", "axis", "group_size")
    missing = [f for f in fields if f not in record] if isinstance(record, dict) else list(fields)
    if missing:
        raise ValueError(f"{path}: the quantization record of layer {name!r} lacks {missing} "
                         f"(found {record!r}); the file was not written by stequiv.save: save it "
                         "again with stequiv.save")
    return config_of(record)


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


def save_pretrained(model: nn.Module, directory: str | os.PathLike, **kwargs: Any) -> Path:
    """Save a quantized Hugging Face model to ``directory``: its config and ``stequiv.ckpt``.

    The folder holds no weights under Hugging Face's file names, so plain ``from_pretrained``
    refuses it ("no file named model.safetensors") instead of loading the latent weights as if
    they were the model (its logits would differ from the quantized model's).
    :func:`load_pretrained` builds the model from the config and loads the checkpoint, quantized as
    recorded; for a folder that plain transformers loads as the quantized model, export it
    (``stequiv.export(model, directory, format="compressed-tensors")``). ``kwargs`` go to the
    config's ``save_pretrained``. Returns the checkpoint's path.
    """
    config = getattr(model, "config", None)
    if config is None or not callable(getattr(config, "save_pretrained", None)):
        raise TypeError(f"save_pretrained needs a Hugging Face model (with a `.config`), got "
                        f"{type(model).__name__}; use stequiv.save(model, path) for other models")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stale = [f.name for f in directory.iterdir() if f.name.startswith(_HF_WEIGHTS)]
    if stale:
        raise ValueError(f"{directory} already holds Hugging Face weights {stale}, which plain "
                         "from_pretrained would load instead of the quantized model; save into "
                         "an empty folder")
    config.save_pretrained(directory, **kwargs)
    generation = getattr(model, "generation_config", None)
    if generation is not None and callable(getattr(generation, "save_pretrained", None)):
        generation.save_pretrained(directory)
    return save(model, directory / PRETRAINED_CHECKPOINT)


def load_pretrained(model_class: Any, directory: str | os.PathLike) -> nn.Module:
    """The model that :func:`save_pretrained` wrote: ``model_class`` (e.g. ``LlamaForCausalLM``)
    built from the folder's config, quantized as recorded, with its latent weights and Δ."""
    directory = Path(directory)
    checkpoint = directory / PRETRAINED_CHECKPOINT
    if not checkpoint.exists():
        raise FileNotFoundError(f"{directory} has no {PRETRAINED_CHECKPOINT}; it was not written "
                                "by stequiv.save_pretrained")
    config = model_class.config_class.from_pretrained(directory)
    return load(checkpoint, model_class(config))
