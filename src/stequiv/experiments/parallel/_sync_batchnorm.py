r"""Batch normalisation over the global batch of a distributed run, on GPU and on CPU.

On CUDA this is PyTorch's :class:`torch.nn.SyncBatchNorm`. PyTorch's version refuses CPU
tensors (and DDP refuses it on CPU modules), so on CPU the BatchNorm layers become
:class:`CpuSyncBatchNorm2d`: the same statistics computed with two all-reduces through
autograd,

.. math::
    \mu = \frac{1}{N}\sum_{r}\sum_{i \in B_r} x_i, \qquad
    \sigma^2 = \frac{1}{N}\sum_{r}\sum_{i \in B_r} (x_i - \mu)^2, \qquad N = \sum_r |B_r|,

so a W-process run normalises exactly the batch a one-process run would (up to the order of
the float sums), and the backward pass all-reduces the gradient of the statistics just as
PyTorch's SyncBatchNorm does. One process, or ``eval()`` mode: plain BatchNorm.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd import Function

__all__ = ["CpuSyncBatchNorm2d", "convert_sync_batchnorm"]


class _AllReduceSum(Function):
    """Sum over ranks; its gradient is the sum over ranks of the gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _AllReduceSum.apply(grad)


class CpuSyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics span every rank's batch (CPU, gloo).

    Same parameters, buffers and ``state_dict`` keys as :class:`torch.nn.BatchNorm2d`; the
    running variance is updated with the unbiased global variance, as BatchNorm does.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        dims, shape = [0, 2, 3], (1, -1, 1, 1)
        local = torch.cat([x.sum(dims), x.new_tensor([x.numel() / x.shape[1]])])
        total = _AllReduceSum.apply(local)
        n, mean = total[-1], total[:-1] / total[-1]
        centred = x - mean.view(shape)
        var = _AllReduceSum.apply(centred.square().sum(dims)) / n
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach() * n / (n - 1))
        return out

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                  else self.momentum)
        self.running_mean.lerp_(mean, factor)
        self.running_var.lerp_(unbiased_var, factor)


def _to_cpu_sync(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.BatchNorm2d):
        new = CpuSyncBatchNorm2d(module.num_features, module.eps, module.momentum,
                                 module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        return new
    for name, child in module.named_children():
        module.add_module(name, _to_cpu_sync(child))
    return module


def convert_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm of ``model`` computed over the global batch, for ``device``'s kind."""
    if device.type == "cpu":
        return _to_cpu_sync(model)
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
