r"""compressed-tensors (``pack-quantized``): a Hugging Face folder that ``from_pretrained`` loads.

Each quantized ``nn.Linear`` ``X`` is stored as compressed-tensors stores a symmetric integer
weight: ``X.weight_packed`` (its codes q packed into int32 by compressed-tensors' own
``pack_to_int32``), ``X.weight_scale`` (s, in the model's dtype) and ``X.weight_shape``; the
folder's ``config.json`` carries the ``quantization_config`` (one scheme per distinct bits and
strategy, targeting the layers by name). Loading decompresses :math:`w = q\cdot s` in s's dtype.

On the offset-0 grid q = k and s = Δ (b bits); on the zero-free grid (offset ½) the odd codes
q = 2k + 1 at s = Δ/2 (b + 1 bits): q·s is then the fake-quant weight (k + ½)·Δ bit for bit
(Δ/2 is exact unless subnormal). Per channel is the ``channel`` strategy, per group of G the
``group`` strategy (G consecutive inputs), per tensor ``tensor``. Weights of other layer kinds,
or needing more than 8 bits, are refused.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils.parametrize import type_before_parametrizations

from .._optional import require
from ..qat import IntegerLayer, from_integer, integer_layers
from ._files import symmetric_codes, write_atomic

__all__ = ["write_compressed_tensors"]


def _scheme(name: str, layer: IntegerLayer) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(q as int8, s shaped for compressed-tensors, the weights' QuantizationArgs fields)."""
    w, lay = layer.weight, layer.weight.layout
    if not isinstance(layer.module, nn.Linear) or layer.param != "weight":
        raise ValueError(f"compressed-tensors export: {name!r} is a {type_before_parametrizations(layer.module).__name__}; "
                         "pack-quantized holds nn.Linear weights: quantize only the Linear layers "
                         "(filter_fn=lambda module, name: isinstance(module, nn.Linear))")
    q, s, bits = symmetric_codes(layer, f"compressed-tensors export: {name!r}")
    if bits > 8 or w.lower != -(2 ** ((w.upper - w.lower + 1).bit_length() - 2)):
        raise ValueError(f"compressed-tensors export: {name!r} needs {bits}-bit codes; "
                         "pack-quantized holds 1-8 bits: use QuantConfig.for_format("
                         "'compressed-tensors-w4-group128') or fewer bits")
    out = lay.shape[0]
    if lay.axis is None:
        strategy, s = {"strategy": "tensor"}, s.reshape(1)
    elif lay.group_size is None:
        strategy, s = {"strategy": "channel"}, s.reshape(out, 1)
    else:
        strategy = {"strategy": "group", "group_size": lay.group_size}
        s = s.reshape(out, -1)
    args = {"num_bits": bits, "type": "int", "symmetric": True, **strategy}
    return q.to(torch.int8), s.contiguous(), args


def write_compressed_tensors(model: nn.Module, path: Path, example: Any = None) -> Path:
    """Write a converted Hugging Face ``model`` to the folder ``path`` (module docstring)."""
    ct = require("compressed_tensors", "export", feature="compressed-tensors export")
    helpers = require("compressed_tensors.compressors.pack_quantized.helpers", "export",
                      feature="compressed-tensors export")
    st = require("safetensors.torch", "export", feature="compressed-tensors export")
    if not hasattr(model, "config") or not callable(getattr(type(model), "save_pretrained", None)):
        raise ValueError("compressed-tensors export writes Hugging Face folders: `model` must be a "
                         "transformers PreTrainedModel (e.g. AutoModelForCausalLM.from_config)")
    schemes = {name: _scheme(name, layer) for name, layer in integer_layers(model).items()}
    groups: dict[str, dict[str, Any]] = {}
    for name, (_, _, args) in schemes.items():
        key = json.dumps(args, sort_keys=True)
        groups.setdefault(key, {"targets": [], "weights": args})["targets"].append(name)
    config = ct.QuantizationConfig(
        config_groups={f"group_{i}": g for i, g in enumerate(groups.values())},
        format="pack-quantized", quantization_status="compressed")
    state = {k: v for k, v in from_integer(copy.deepcopy(model)).state_dict().items()
             if k.rpartition(".")[0] not in schemes or not k.endswith(".weight")}
    for name, (q, s, args) in schemes.items():
        state[f"{name}.weight_packed"] = helpers.pack_to_int32(q, args["num_bits"])
        state[f"{name}.weight_scale"] = s
        state[f"{name}.weight_shape"] = torch.tensor(q.shape)
    tied = getattr(model.config, "tie_word_embeddings", False)
    path.mkdir(parents=True, exist_ok=True)
    unique = _without_aliases(state, tied)
    write_atomic(path / "model.safetensors", st.save(unique, metadata={"format": "pt"}))
    hf_config: Any = copy.deepcopy(model.config)
    hf_config.quantization_config = config.model_dump(exclude_none=True)
    hf_config.quantization_config["quant_method"] = "compressed-tensors"
    write_atomic(path / "config.json", hf_config.to_json_string().encode())
    return path


def _without_aliases(state: dict[str, torch.Tensor], tied: bool) -> dict[str, torch.Tensor]:
    """Each storage once (a tied head is rebuilt by ``from_pretrained`` from the config)."""
    seen: set[tuple] = set()
    out = {}
    for key, value in state.items():
        ident = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape))
        if ident in seen:
            if not tied:
                raise ValueError(f"compressed-tensors export: {key!r} shares its storage with "
                                 "another tensor but the config does not tie word embeddings")
            continue
        seen.add(ident)
        out[key] = value.detach().contiguous()
    return out
