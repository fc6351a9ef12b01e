r"""torchao hand-off: integer Linear weights as torchao's ``IntxUnpackedToInt8Tensor``.

Letting torchao choose its own scales from the trained weights re-rounds them; here torchao gets
stequiv's codes and scales: each integer ``nn.Linear`` weight becomes an
``IntxUnpackedToInt8Tensor`` with ``qdata`` = q, ``scale`` = s and zero point 0, block
``(1, G)`` per group, ``(1, in)`` per channel, the whole weight per tensor, and target dtype
``torch.int<bits>``. torchao dequantizes it as q·s (float32, then the model's dtype), which is the
fake-quant weight bit for bit (q = k, s = Δ on the offset-0 grid; q = 2k + 1, s = Δ/2 on the
zero-free grid), so the model's outputs are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrize import type_before_parametrizations

from .._optional import require
from ..qat import IntegerLayer, convert_, from_integer, quantized_layers
from ._files import converted_copy, symmetric_codes

__all__ = ["to_torchao_"]


def _tensor(torchao: object, name: str, layer: IntegerLayer) -> torch.Tensor:
    if not isinstance(layer.module, nn.Linear) or layer.param != "weight":
        raise ValueError(f"torchao hand-off: {name!r} is a {type_before_parametrizations(layer.module).__name__}; its "
                         "intx weight-only tensors cover nn.Linear weights: quantize only the "
                         "Linear layers (filter_fn=lambda module, name: isinstance(module, nn.Linear))")
    q, s, bits = symmetric_codes(layer, f"torchao hand-off: {name!r}")
    if bits > 8:
        raise ValueError(f"torchao hand-off: {name!r} needs {bits}-bit codes; torchao's intx "
                         "tensors hold 1-8 bits: use bits <= 7 on the zero-free grid or offset=0")
    lay = layer.weight.layout
    out, inputs = lay.shape
    block = (out, inputs) if lay.axis is None else (1, lay.group_size or inputs)
    scale = s.reshape(out // block[0], inputs // block[1])
    return torchao.IntxUnpackedToInt8Tensor(  # type: ignore[attr-defined]
        qdata=q.to(torch.int8), scale=scale, zero_point=torch.zeros_like(scale, dtype=torch.int8),
        target_dtype=getattr(torch, f"int{bits}"), block_size=block, dtype=s.dtype,
        activation_quantization=None)


def to_torchao_(model: nn.Module) -> nn.Module:
    """In place: every quantized ``nn.Linear`` weight becomes a torchao intx tensor carrying
    stequiv's codes and scales (module docstring); a fake-quantized model is converted first.
    Returns ``model``; its outputs equal the fake-quant model's.

    Raises:
        ValueError: a quantized weight that is not a Linear's, or whose grid torchao cannot hold.
            Nothing is changed then.
    """
    torchao = require("torchao.quantization", "export", feature="torchao hand-off")
    _, layers = converted_copy(model)
    tensors = {name: _tensor(torchao, name, layer) for name, layer in layers.items()}
    if quantized_layers(model):
        convert_(model)  # (not dequantize_: a layer that reads a tied weight raw keeps reading w)
    from_integer(model)
    for name, tensor in tensors.items():
        model.get_submodule(name).weight = nn.Parameter(tensor, requires_grad=False)
    return model
