r"""Stacked forwards: N nets of one architecture evaluated without vmap, in layouts the CPU likes.

``vmap`` over ``functional_call`` turns each convolution of N nets into one grouped convolution,
but hands every pooling and activation a permuted, non-contiguous view (``(N, B, C, H, W)`` of a
``(B, N·C, H, W)`` tensor): on one CPU thread the ConvNet's two max-pools, ReLUs and their
backwards then cost about as much as its convolutions. A stacked forward keeps the activations of
all nets in one ``(B, N·C, H, W)`` tensor, where pooling and ReLU act per channel and so per net
unchanged, and computes

* the first convolution, whose input the nets share, as one matrix product over the shared
  im2col patches, :math:`Y_{(b,p),(n,o)} = \sum_k \mathrm{patches}(x)_{(b,p),k}\,W_{(n,o),k} + b_{n,o}`:
  its output is the channels-last layout that the CPU's max-pool is fast in, with no copy, and
  its weight gradient is one GEMM (not oneDNN's slow single-input-channel kernel), computed as
  :math:`\partial W = (\mathrm{patches}^\top G)^\top` so that the long axis B·P is the inner
  dimension over the contiguous G: 3× faster than the :math:`G^\top \mathrm{patches}` that
  autograd would run, with the same numbers;
* each max-pool before its ReLU: ReLU is monotone, so :math:`\max_j \mathrm{relu}(a_j) =
  \mathrm{relu}(\max_j a_j)`, and the gradient reaches the same element (the first maximal one of
  the window, or none where the maximum is ≤ 0), while the ReLU and its backward run on a quarter
  of the elements;
* the next convolutions as grouped convolutions (``groups = N``) on the usual contiguous layout
  (channels-last would change their summation order against one net's);
* the classifier as a batched product :math:`z_n = h_n W_n^\top + b_n`.

Each is the ConvNet's own forward up to float summation order (tests/test_study.py compares it
with the vmap path and with one net at a time). Architectures without an entry here take the
vmap path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ...models import ConvNet

__all__ = ["stacked_forward"]

StackedForward = Callable[[nn.Module, dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


class _SharedInputLinear(torch.autograd.Function):
    r""":math:`Y = P W^\top + b` for patches P that every net shares (module docstring)."""

    @staticmethod
    def forward(ctx: Any, patches: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(patches, weight)
        return torch.addmm(bias, patches, weight.t())

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        patches, weight = ctx.saved_tensors
        d_patches = torch.mm(grad, weight) if ctx.needs_input_grad[0] else None
        return d_patches, torch.mm(patches.t(), grad).t(), grad.sum(0)


def _convnet(net: nn.Module, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """:class:`~stequiv.models.ConvNet` of N nets (weights stacked on dim 0) → (N, B, classes)."""
    n, b = w["conv1.weight"].shape[0], x.shape[0]
    k = net.conv1.kernel_size
    rows, cols = x.shape[-2] - k[0] + 1, x.shape[-1] - k[1] + 1
    patches = F.unfold(x, k).transpose(1, 2).reshape(b * rows * cols, -1)  # (B·P, C·k·k), shared
    w1 = w["conv1.weight"].flatten(0, 1).flatten(1)  # (N·32, C·k·k)
    h = _SharedInputLinear.apply(patches, w1, w["conv1.bias"].flatten())  # (B·P, N·32)
    h = h.view(b, rows, cols, -1).permute(0, 3, 1, 2)  # (B, N·32, H, W), channels-last strides
    h = net.relu1(F.max_pool2d(h, net.pool1.kernel_size)).contiguous()  # pool, then ReLU
    h = F.conv2d(h, w["conv2.weight"].flatten(0, 1), w["conv2.bias"].flatten(), groups=n)
    h = net.relu2(net.pool2(h))
    h = net.relu3(F.conv2d(h, w["conv3.weight"].flatten(0, 1), w["conv3.bias"].flatten(), groups=n))
    h = h.view(b, n, -1).transpose(0, 1)  # (N, B, 128·3·3), each net's Flatten
    return torch.baddbmm(w["fc.bias"].unsqueeze(1), h, w["fc.weight"].transpose(1, 2))


_FORWARDS: dict[type[nn.Module], StackedForward] = {ConvNet: _convnet}


def stacked_forward(net: nn.Module) -> StackedForward | None:
    """The stacked forward of ``net``'s architecture (exactly that class), or None."""
    return _FORWARDS.get(type(net))
