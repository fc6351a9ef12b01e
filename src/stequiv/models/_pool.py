"""Max pooling over non-overlapping windows, computed where torch's CPU kernel is fast.

PyTorch's CPU ``max_pool2d`` is about ten times faster on a channels-last tensor than on the
usual (N, C, H, W) layout with one thread (0.8 ms against 7.4 ms for a 64 x 32 x 26 x 26 batch):
the channels-last kernel is vectorised over the channels. :class:`ChannelsLastMaxPool2d` copies
the input to channels-last (1.3 ms), pools there and hands back (N, C, H, W) tensors, so the
layers after it see the layout they always saw.

Nothing in the arithmetic changes. A maximum is exact in any order, and both kernels pick, in
every window, the first maximal element in row-major order (each compares with ``>``), so the
indices of the maxima are the same; the backward pass is torch's own
``max_pool2d_with_indices_backward`` on those indices in the (N, C, H, W) layout. Values and
gradients are bit-identical to :class:`torch.nn.MaxPool2d` (``tests/test_models.py`` checks
both, ties included).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch._C._functorch import is_functorch_wrapped_tensor

__all__ = ["ChannelsLastMaxPool2d"]


class _ChannelsLastMaxPool(torch.autograd.Function):
    """``max_pool2d(x, k)`` (stride ``k``) computed channels-last; gradient through its indices."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, k: int) -> torch.Tensor:
        out, indices = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), [k, k], [k, k])
        ctx.k = k
        ctx.save_for_backward(x, indices.contiguous())
        return out.contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, indices = ctx.saved_tensors
        k = ctx.k
        return torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(), x, [k, k], [k, k], [0, 0], [1, 1], False, indices), None


class ChannelsLastMaxPool2d(nn.MaxPool2d):
    """:class:`torch.nn.MaxPool2d` over non-overlapping ``k x k`` windows (stride ``k``, no
    padding), computed channels-last on the CPU: the same values and gradients, faster.

    Elsewhere (CUDA, inside ``torch.func`` transforms such as ``vmap``, ``torch.compile``,
    tracing, ONNX export) it is ``F.max_pool2d`` itself.
    """

    def __init__(self, kernel_size: int) -> None:
        nn.MaxPool2d.__init__(self, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        # is_compiling first: dynamo cannot trace is_functorch_wrapped_tensor (a pybind builtin)
        if (torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
                or x.device.type != "cpu" or x.dim() != 4 or not isinstance(k, int)
                or is_functorch_wrapped_tensor(x)):
            return F.max_pool2d(x, k)
        if torch.is_grad_enabled() and x.requires_grad:
            return _ChannelsLastMaxPool.apply(x, k)
        return F.max_pool2d(x.contiguous(memory_format=torch.channels_last), k).contiguous()
