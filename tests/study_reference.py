"""What the study tests share: an MNIST-shaped split of continuous images (no exact max-pool ties).
The fixture ``small_bound_check`` lives in conftest.py."""

from __future__ import annotations

import torch


class GaussianSplit:
    """Continuous images (no exact ties), MNIST-shaped."""

    in_channels, num_classes = 1, 10

    def __init__(self, n: int = 64):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g)

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, idx):
        return self.x[idx], self.y[idx]
