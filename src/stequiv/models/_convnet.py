"""The small three-convolution network of Chollet (2021) used for the MNIST-type experiments."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from ._init import he_uniform_
from ._pool import ChannelsLastMaxPool2d

__all__ = ["ConvNet"]


class ConvNet(nn.Module):
    """Three-convolution MNIST network of Chollet (2021), *Deep Learning with Python*, 2nd ed.

    ``conv1`` (in->32, 3x3) -> ReLU -> MaxPool(2) -> ``conv2`` (32->64, 3x3) -> ReLU ->
    MaxPool(2) -> ``conv3`` (64->128, 3x3) -> ReLU -> Flatten -> ``fc`` (128*3*3 -> classes).

    Designed for 28x28 inputs (28 -> 26 -> 13 -> 11 -> 5 -> 3). With one input channel and
    10 classes it has 104,202 parameters, of which 92,672 are in the three convolutions.
    Weights are He-uniform, biases zero (:func:`~stequiv.models.he_uniform_`). The pools are
    :class:`~torch.nn.MaxPool2d` computed channels-last on the CPU (the same numbers, faster:
    ``stequiv.models._pool``).

    Attributes
    ----------
    quantizable_layers:
        Names of the convolutions that the QAT experiments quantize.
    first_conv, classifier:
        Names of the first convolution and of the final linear layer.
    """

    quantizable_layers: ClassVar[tuple[str, ...]] = ("conv1", "conv2", "conv3")
    first_conv: ClassVar[str] = "conv1"
    classifier: ClassVar[str] = "fc"

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3)
        self.relu1 = nn.ReLU()
        self.pool1 = ChannelsLastMaxPool2d(2)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.relu2 = nn.ReLU()
        self.pool2 = ChannelsLastMaxPool2d(2)
        self.conv3 = nn.Conv2d(64, 128, kernel_size=3)
        self.relu3 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(128 * 3 * 3, num_classes)
        he_uniform_(self, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.relu3(self.conv3(x))
        return self.fc(self.flatten(x))
