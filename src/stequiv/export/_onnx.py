r"""ONNX with QDQ: every integer weight an int4/int8/int16 initializer read by ``DequantizeLinear``.

The float graph is traced from the model with its weights dequantized (torch's TorchScript
exporter at opset 20, its newest, then marked opset 21, which only widened operators' type lists
(int4 among them); no constant folding, so each weight stays one initializer under its state-dict
name); each quantized weight's initializer is then replaced by

``DequantizeLinear(q, s)`` → (``Reshape`` → ``Transpose``, for per-group Δ) → the weight,

with ``DequantizeLinear(q, s) = q·s`` in float32. On the offset-0 grid q = k and s = Δ; on the
zero-free grid (offset ½) the level (k + ½)Δ is the odd code q = 2k + 1 at half the step,
s = Δ/2, exactly (Δ/2 is exact in float32 unless subnormal). q is stored in the narrowest ONNX
integer type that holds it: int4 (2 bits at offset ½ → codes ±1, ±3; up to 4 bits at offset 0),
int8, int16. Per tensor, s is a scalar; per channel, one s per output channel (``axis``); per
group, the weight is read as its rows (output axis first, G consecutive inputs per row) with one
s per row, then reshaped back. The product q·s is the fake-quant weight bit for bit.
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._optional import require
from ..qat import IntegerLayer, from_integer, integer_layers
from ._files import symmetric_codes, write_atomic

__all__ = ["OPSET", "write_onnx"]

OPSET = 21  # DequantizeLinear on int4 initializers
_TRACE_OPSET = 20  # the TorchScript exporter's newest; opset 21 changed only operators' type lists
_TYPES = ((-8, 7, "INT4", None), (-128, 127, "INT8", np.int8), (-32768, 32767, "INT16", np.int16))


def _codes(layer: IntegerLayer, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(q as int64 in the rows layout, s as float32 per row) with q·s = the weight."""
    q, s, _ = symmetric_codes(layer, f"ONNX export: {name!r}")
    lay = layer.weight.layout
    if lay.batch:
        raise ValueError(f"ONNX export: {name!r} holds {lay.shape[0]} experts' matrices in one "
                         "tensor (batch axes), which DequantizeLinear's one-axis scales cannot "
                         "express; export it to safetensors or GGUF, or leave the experts float")
    rows = lay.rows(q) if lay.group_size is not None else q
    return rows.to(torch.int64).numpy(), s.to(torch.float32).numpy()


def _onnx_type(q: np.ndarray, name: str) -> tuple[str, Any]:
    lo, hi = int(q.min()), int(q.max())
    for low, high, kind, np_type in _TYPES:
        if low <= lo and hi <= high:
            return kind, np_type
    raise ValueError(f"ONNX export: {name!r} has codes in [{lo}, {hi}], beyond int16")


def _dequantize_nodes(onnx: Any, layer: IntegerLayer, name: str, target: str) -> tuple[list, list]:
    """Initializers and nodes that compute the float weight ``target`` from its codes."""
    helper, lay = onnx.helper, layer.weight.layout
    q, s = _codes(layer, name)
    kind, np_type = _onnx_type(q, name)
    qname, sname = f"{target}.q", f"{target}.scale"
    dims = list(q.shape)
    if np_type is None:
        q_init = helper.make_tensor(qname, getattr(onnx.TensorProto, kind), dims, q.flatten().tolist())
    else:
        q_init = onnx.numpy_helper.from_array(q.astype(np_type), qname)
    per_row = lay.axis is not None
    s_init = onnx.numpy_helper.from_array(s if per_row else s.reshape(()), sname)
    inits = [q_init, s_init]
    axis = 0 if lay.group_size is not None or not per_row else lay.axis
    if lay.group_size is None:
        return inits, [helper.make_node("DequantizeLinear", [qname, sname], [target], axis=axis)]
    a = lay.axis
    assert a is not None  # a grouped layout has an output axis
    moved = [lay.shape[a], *lay.shape[:a], *lay.shape[a + 1:]]
    shape_name = f"{target}.shape"
    inits.append(onnx.numpy_helper.from_array(np.array(moved, dtype=np.int64), shape_name))
    nodes = [helper.make_node("DequantizeLinear", [qname, sname], [f"{target}.rows"], axis=0)]
    if a == 0:
        nodes.append(helper.make_node("Reshape", [f"{target}.rows", shape_name], [target]))
        return inits, nodes
    perm = [*range(1, a + 1), 0, *range(a + 1, len(lay.shape))]
    nodes += [helper.make_node("Reshape", [f"{target}.rows", shape_name], [f"{target}.moved"]),
              helper.make_node("Transpose", [f"{target}.moved"], [target], perm=perm)]
    return inits, nodes


def _state_key(name: str, layer: IntegerLayer) -> str:
    base = name if layer.param == "weight" else name.rpartition(".")[0]
    return f"{base + '.' if base else ''}{layer.param}"


def _trace(model: nn.Module, example: Any) -> bytes:
    flat = from_integer(copy.deepcopy(model)).eval()
    args = example if isinstance(example, tuple) else (example,)
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter's notice that it is the old one
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(flat, args, buffer,  # type: ignore[arg-type]  # a file object works
                          dynamo=False, opset_version=_TRACE_OPSET,
                          do_constant_folding=False, input_names=["input"],
                          output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return buffer.getvalue()


def write_onnx(model: nn.Module, path: Path, example: Any = None) -> Path:
    """Write a converted float32 ``model`` as ONNX QDQ (module docstring), traced on ``example``."""
    onnx = require("onnx", "export", feature="ONNX export")
    if example is None:
        raise ValueError("ONNX export traces the model: pass `example`, an input batch (e.g. "
                         "torch.zeros(1, 1, 28, 28) or a (1, T) tensor of token ids)")
    layers = integer_layers(model)
    dtypes = {str(layer.scale.dtype) for layer in layers.values()}
    if dtypes != {"torch.float32"}:
        raise ValueError(f"ONNX export writes float32 graphs, the model's weights are {dtypes}; "
                         "export the float32 model (model.float() before quantize_)")
    graph_model = onnx.load_from_string(_trace(model, example))
    for entry in graph_model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = OPSET
    graph = graph_model.graph
    inits = {init.name: init for init in graph.initializer}
    new_inits, new_nodes, done = [], [], {}
    for name, layer in layers.items():
        key = _state_key(name, layer)
        if id(layer.weight) in done and key not in inits:
            continue  # a tied weight, read through the first reader's initializer
        if key not in inits:
            raise ValueError(f"ONNX export: the traced graph has no initializer {key!r} for the "
                             "quantized weight; the exporter folded it into another constant")
        graph.initializer.remove(inits[key])
        more_inits, nodes = _dequantize_nodes(onnx, layer, name, key)
        new_inits += more_inits
        new_nodes += nodes
        done[id(layer.weight)] = key
    graph.initializer.extend(new_inits)
    for i, node in enumerate(new_nodes):  # producers first: the graph stays topologically sorted
        graph.node.insert(i, node)
    onnx.checker.check_model(graph_model)
    return write_atomic(path, graph_model.SerializeToString())
