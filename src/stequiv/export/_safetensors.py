"""stequiv's own integer file: a converted model's state dict as safetensors (no pickle).

Layout: every tensor of ``model.state_dict()`` once (a tied weight's codes under its first name,
the other names listed as aliases), packed codes as uint8, Δ and the float parameters in their
dtype. The header's ``__metadata__`` holds ``format`` (``stequiv-integer``), ``version``,
``integer`` (JSON: each integer weight's layer, parameter and grid), ``aliases`` (JSON) and
``sha256`` over every tensor's name, dtype, shape and bytes, which :func:`load_integer` checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .._optional import require
from ..qat import IntegerWeight, integer_layers, quantized_layers
from ..qat._convert import attach
from ._files import converted_copy, tensor_bytes, write_atomic

__all__ = ["FORMAT", "load_integer", "save_integer"]

FORMAT = "stequiv-integer"
VERSION = "1"
_EXTRA = "._extra_state"


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        h.update(f"{key}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(tensor_bytes(t))
    return h.hexdigest()


def _split(layer_name: str, param: str) -> str:
    """The layer of a quantized weight's name (:func:`~stequiv.qat.quantized_layers` naming)."""
    return layer_name if param == "weight" else layer_name.rpartition(".")[0]


def _prefix(layer: str, param: str) -> str:
    return f"{layer + '.' if layer else ''}parametrizations.{param}."


def save_integer(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write a converted (or fake-quantized: converted on a copy) model to ``path``; returns it."""
    st = require("safetensors.torch", "export", feature="safetensors export")
    model, layers = converted_copy(model)
    records = {name: {"layer": _split(name, il.param), "param": il.param, **il.weight.record()}
               for name, il in layers.items()}
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for key, value in model.state_dict().items():
        if key.endswith(_EXTRA):
            continue  # integer weights' records: in the metadata
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"save_integer: state entry {key!r} is not a tensor "
                             f"({type(value).__name__}); safetensors holds tensors only")
        ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape),
                 value.dtype)
        if ident in seen:
            aliases[key] = seen[ident]
            continue
        seen[ident] = key
        tensors[key] = value.detach().contiguous().cpu()
    metadata = {"format": FORMAT, "version": VERSION, "integer": json.dumps(records),
                "aliases": json.dumps(aliases), "sha256": _digest(tensors)}
    return write_atomic(Path(path), st.save(tensors, metadata=metadata))


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    st = require("safetensors.torch", "export", feature="safetensors import")
    if not path.is_file():
        raise FileNotFoundError(f"load_integer: {path} does not exist")
    data = path.read_bytes()
    try:
        tensors = st.load(data)
        (size,) = struct.unpack("<Q", data[:8])
        metadata = json.loads(data[8:8 + size]).get("__metadata__") or {}
    except Exception as err:  # safetensors' own parse errors: a truncated or foreign file
        raise ValueError(f"load_integer: {path} is not a readable safetensors file ({err}); it is "
                         "truncated or not written by stequiv.export(..., format='safetensors')"
                         ) from err
    if metadata.get("format") != FORMAT:
        raise ValueError(f"load_integer: {path} is a safetensors file but not a stequiv integer "
                         f"model (format={metadata.get('format')!r}, expected {FORMAT!r}); write "
                         "one with stequiv.export(model, path, format='safetensors')")
    if metadata.get("version") != VERSION:
        raise ValueError(f"load_integer: {path} has version {metadata.get('version')!r}; this "
                         f"stequiv reads version {VERSION}")
    if _digest(tensors) != metadata.get("sha256"):
        raise ValueError(f"load_integer: {path}: sha256 mismatch, the file is corrupt; export it "
                         "again")
    return tensors, metadata


def load_integer(path: str | os.PathLike, model: nn.Module) -> nn.Module:
    """Load an integer file into ``model``, a float model of the same architecture (or one
    converted the same way); its recorded weights become integer weights. Returns ``model``.

    Raises:
        ValueError: the file is missing, truncated, corrupt or foreign, or the model does not
            match it (the message names the first mismatch). The model is unchanged then.
    """
    path = Path(path)
    tensors, metadata = _read(path)
    records: dict[str, dict[str, Any]] = json.loads(metadata["integer"])
    aliases: dict[str, str] = json.loads(metadata["aliases"])
    state: dict[str, Any] = {**tensors, **{k: tensors[v] for k, v in aliases.items()}}
    if quantized_layers(model):
        raise ValueError("load_integer: the model is fake-quantized; load into the float model "
                         "(as built, before quantize_) or into a converted one")
    fresh = not integer_layers(model)
    undo = _attach_all(model, records, state, path) if fresh else []
    try:
        for record in records.values():
            state[_prefix(record["layer"], record["param"]) + "0" + _EXTRA] = {
                k: v for k, v in record.items() if k not in ("layer", "param")}
        _check_dtypes(model, state)
        model.load_state_dict(state)
    except Exception as err:
        for module, param, original in undo:
            parametrize.remove_parametrizations(module, param, leave_parametrized=True)
            del module._buffers[param]
            module.register_parameter(param, original)
        raise ValueError(f"load_integer: {path} does not fit the model: {err}") from err
    return model


def _check_dtypes(model: nn.Module, state: dict[str, Any]) -> None:
    for key, value in model.state_dict().items():
        saved = state.get(key)
        if isinstance(value, torch.Tensor) and isinstance(saved, torch.Tensor) \
                and saved.dtype != value.dtype:
            raise ValueError(f"{key!r} is {saved.dtype} in the file but {value.dtype} in the "
                             f"model; build the model in {saved.dtype} (model.to(dtype)) first")


def _attach_all(model: nn.Module, records: dict[str, dict[str, Any]],
                state: dict[str, torch.Tensor], path: Path) -> list[tuple[nn.Module, str, Any]]:
    """Make the recorded weights of a float ``model`` integer weights (checked first)."""
    plans = []
    weights: dict[int, IntegerWeight] = {}
    for name, record in records.items():
        try:
            module = model.get_submodule(record["layer"])
        except AttributeError:
            raise ValueError(f"load_integer: {path} has integer weight {name!r} but the model has "
                             f"no layer {record['layer']!r}") from None
        current = getattr(module, record["param"], None)
        if not isinstance(current, nn.Parameter) or tuple(current.shape) != tuple(record["shape"]):
            raise ValueError(f"load_integer: {path} has {name!r} of shape {record['shape']} but "
                             f"the model's is {getattr(current, 'shape', None)}")
        prefix = _prefix(record["layer"], record["param"])
        codes, scale = state[prefix + "original0"], state[prefix + "original1"]
        key = codes.untyped_storage().data_ptr()
        if key not in weights:
            weights[key] = IntegerWeight.from_record(record)
        plans.append((module, record["param"], current, weights[key], codes, scale))
    for module, param, _, weight, codes, scale in plans:
        attach(module, param, weight, codes, scale)
    return [(module, param, original) for module, param, original, *_ in plans]
