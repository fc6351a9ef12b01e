r"""Stacked forwards: N nets of one architecture evaluated without vmap, in layouts the CPU likes.

``vmap`` over ``functional_call`` turns each convolution of N nets into one grouped convolution,
but hands every pooling and activation a permuted, non-contiguous view (``(N, B, C, H, W)`` of a
``(B, N·C, H, W)`` tensor): on one CPU thread the ConvNet's two max-pools, ReLUs and their
backwards then cost about as much as its convolutions. A stacked forward keeps the activations of
all nets in one contiguous ``(B, N·C, H, W)`` tensor, where pooling and ReLU act per channel and
so per net unchanged, and computes

* the first convolution, whose input the nets share, as one matrix product over the shared
  im2col columns: :math:`Y_{b,(n,o),p} = \sum_k W_{(n,o),k}\,\mathrm{cols}(x)_{b,k,p} + b_{n,o}`
  (its weight gradient is then one GEMM, not oneDNN's slow single-input-channel kernel);
* the next convolutions as grouped convolutions (``groups = N``);
* the classifier as a batched product :math:`z_n = h_n W_n^\top + b_n`.

Each is the ConvNet's own forward up to float summation order (tests/test_study.py compares it
with the vmap path and with one net at a time). Architectures without an entry here take the
vmap path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from ...models import ConvNet

__all__ = ["stacked_forward"]

StackedForward = Callable[[nn.Module, dict[str, torch.Tensor], torch.Tensor], torch.Tensor]


def _convnet(net: nn.Module, w: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """:class:`~stequiv.models.ConvNet` of N nets (weights stacked on dim 0) → (N, B, classes)."""
    n, b = w["conv1.weight"].shape[0], x.shape[0]
    k = net.conv1.kernel_size
    cols = F.unfold(x, k)  # (B, C·k·k, P): the input is shared, so are its columns
    side = x.shape[-1] - k[0] + 1
    w1 = w["conv1.weight"].flatten(0, 1).flatten(1)  # (N·32, C·k·k)
    h = torch.baddbmm(w["conv1.bias"].reshape(1, -1, 1), w1.expand(b, -1, -1), cols)
    h = net.pool1(net.relu1(h.view(b, -1, side, side)))
    h = F.conv2d(h, w["conv2.weight"].flatten(0, 1), w["conv2.bias"].flatten(), groups=n)
    h = net.pool2(net.relu2(h))
    h = net.relu3(F.conv2d(h, w["conv3.weight"].flatten(0, 1), w["conv3.bias"].flatten(), groups=n))
    h = h.view(b, n, -1).transpose(0, 1)  # (N, B, 128·3·3), each net's Flatten
    return torch.baddbmm(w["fc.bias"].unsqueeze(1), h, w["fc.weight"].transpose(1, 2))


_FORWARDS: dict[type[nn.Module], StackedForward] = {ConvNet: _convnet}


def stacked_forward(net: nn.Module) -> StackedForward | None:
    """The stacked forward of ``net``'s architecture (exactly that class), or None."""
    return _FORWARDS.get(type(net))
