"""ResNets in plain PyTorch: ImageNet ResNet-18/34/50 and the CIFAR-style ResNet-20.

The ImageNet networks follow torchvision's layout and parameter names (``conv1``, ``bn1``,
``layer1`` .. ``layer4``, ``fc``; blocks with ``conv1``/``bn1``/... and a ``downsample``
projection), so their ``state_dict`` keys and parameter counts match torchvision's
``resnet18``/``resnet34``/``resnet50`` (the Bottleneck puts the stride on its 3x3 conv,
"ResNet v1.5"). All convolutions are bias-free; every conv/linear weight is He-uniform
(:func:`~stequiv.models.he_uniform_`), the classifier bias zero, BatchNorm weight 1, bias 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import nn

from ._init import he_uniform_

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "GlobalAvgPool",
    "ResNet",
    "resnet18",
    "resnet20",
    "resnet34",
    "resnet50",
]


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Sequential | None:
    """1x1 conv + BN shortcut when the block changes shape, else ``None`` (identity)."""
    if stride == 1 and in_planes == out_planes:
        return None
    return nn.Sequential(_conv1x1(in_planes, out_planes, stride), nn.BatchNorm2d(out_planes))


def _reset_batchnorm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dimensions, N x C x H x W -> N x C x 1 x 1.

    The value of ``nn.AdaptiveAvgPool2d((1, 1))``, as a plain reduction: the adaptive pool's
    CUDA backward has no deterministic implementation, so under
    ``torch.use_deterministic_algorithms(True)`` (every reproduction) it raises on GPUs.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34, ResNet-20)."""

    expansion: ClassVar[int] = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _projection(in_planes, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 bottleneck with 4x expansion (ResNet-50)."""

    expansion: ClassVar[int] = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = _conv1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, out_planes)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _projection(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_Block = type[BasicBlock] | type[Bottleneck]


class _ResNetBase(nn.Module):
    first_conv: ClassVar[str] = "conv1"
    classifier: ClassVar[str] = "fc"

    def _make_layer(
        self, block: _Block, in_planes: int, planes: int, blocks: int, stride: int
    ) -> tuple[nn.Sequential, int]:
        layers: list[nn.Module] = []
        for i in range(blocks):
            layers.append(block(in_planes, planes, stride if i == 0 else 1))
            in_planes = planes * block.expansion
        return nn.Sequential(*layers), in_planes

    def _init_weights(self, generator: torch.Generator | None) -> None:
        he_uniform_(self, generator)
        _reset_batchnorm(self)


class ResNet(_ResNetBase):
    """ImageNet ResNet (He et al., 2016) with torchvision's layer names.

    Stem: ``conv1`` 7x7 stride 2 -> ``bn1`` -> ReLU -> ``maxpool`` 3x3 stride 2; then
    ``layer1`` .. ``layer4`` (widths 64/128/256/512 times ``block.expansion``, strides
    1/2/2/2), global average pooling and ``fc``. The global pooling accepts any input
    of at least 32x32 (overall stride 32).

    Attributes ``first_conv = "conv1"`` and ``classifier = "fc"`` name the layers that
    quantization schemes usually keep at full precision.
    """

    def __init__(
        self,
        block: _Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        in_channels: int = 3,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"an ImageNet ResNet has 4 stages, got layers={list(layers)}")
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        planes = 64
        self.layer1, planes = self._make_layer(block, planes, 64, layers[0], 1)
        self.layer2, planes = self._make_layer(block, planes, 128, layers[1], 2)
        self.layer3, planes = self._make_layer(block, planes, 256, layers[2], 2)
        self.layer4, planes = self._make_layer(block, planes, 512, layers[3], 2)
        self.avgpool = GlobalAvgPool()
        self.fc = nn.Linear(planes, num_classes)
        self._init_weights(generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class CifarResNet(_ResNetBase):
    """CIFAR-style ResNet (He et al., 2016, Sec. 4.2) with ``6n + 2`` layers.

    Stem ``conv1`` 3x3 stride 1 -> ``bn1`` -> ReLU; three stages ``layer1`` .. ``layer3`` of
    ``n`` BasicBlocks with widths 16/32/64 and strides 1/2/2, 1x1-conv + BN projection
    shortcuts where the shape changes ("option B"); global average pooling and ``fc``.
    Works on 28x28 (MNIST-type) as well as 32x32 inputs.
    """

    def __init__(
        self,
        blocks_per_stage: int = 3,
        num_classes: int = 10,
        in_channels: int = 1,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        planes = 16
        self.layer1, planes = self._make_layer(BasicBlock, planes, 16, blocks_per_stage, 1)
        self.layer2, planes = self._make_layer(BasicBlock, planes, 32, blocks_per_stage, 2)
        self.layer3, planes = self._make_layer(BasicBlock, planes, 64, blocks_per_stage, 2)
        self.avgpool = GlobalAvgPool()
        self.fc = nn.Linear(planes, num_classes)
        self._init_weights(generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(
    num_classes: int = 1000, in_channels: int = 3, *, generator: torch.Generator | None = None
) -> ResNet:
    """ResNet-18 (BasicBlock, [2, 2, 2, 2]); 11,689,512 parameters at 3 -> 1000."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, generator=generator)


def resnet34(
    num_classes: int = 1000, in_channels: int = 3, *, generator: torch.Generator | None = None
) -> ResNet:
    """ResNet-34 (BasicBlock, [3, 4, 6, 3]); 21,797,672 parameters at 3 -> 1000."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, generator=generator)


def resnet50(
    num_classes: int = 1000, in_channels: int = 3, *, generator: torch.Generator | None = None
) -> ResNet:
    """ResNet-50 (Bottleneck, [3, 4, 6, 3]); 25,557,032 parameters at 3 -> 1000."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, generator=generator)


def resnet20(
    num_classes: int = 10, in_channels: int = 1, *, generator: torch.Generator | None = None
) -> CifarResNet:
    """CIFAR-style ResNet-20 (3 stages x 3 BasicBlocks, widths 16/32/64), ~0.27M parameters."""
    return CifarResNet(3, num_classes, in_channels, generator=generator)
