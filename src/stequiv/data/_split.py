"""What the experiments need of a data split, whether it is held in memory or read from files."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import torch

from ._idx import DataError

__all__ = ["Batch", "Split", "evenly_spaced"]

Batch = tuple[torch.Tensor, torch.Tensor]
"""(images N x C x H x W float32, labels N int64)."""


class Split(Protocol):
    """A labelled image split: :class:`~stequiv.data.ArrayData` or :class:`ImageFolderSplit`.

    ``batch(indices, epoch)`` is a pure function of its arguments (augmentation, if any, is
    seeded by (seed, epoch, index)), so every process of a distributed run, and every resumed
    run, sees the same images for the same indices.
    """

    @property
    def num_classes(self) -> int: ...

    @property
    def in_channels(self) -> int: ...

    def __len__(self) -> int: ...

    def batch(self, indices: Sequence[int] | torch.Tensor, epoch: int = 0) -> Batch:
        """The images and labels of ``indices`` in epoch ``epoch``."""
        ...

    def batches(self, index_batches: Sequence[Sequence[int]], epoch: int = 0,
                workers: int = 0) -> Iterator[Batch]:
        """``batch(ix, epoch)`` for each ``ix`` in turn, prepared by ``workers`` processes."""
        ...

    def subset(self, n: int) -> Split:
        """``n`` samples evenly spaced over the split."""
        ...

    def eval_view(self) -> Split:
        """The same samples with evaluation preprocessing (no augmentation)."""
        ...


def evenly_spaced(length: int, n: int) -> torch.Tensor:
    """``n`` indices spread evenly over ``range(length)``: ``floor(k * length / n)``, k < n."""
    if not 0 < n <= length:
        raise DataError(f"a subset of `n` = {n} samples needs 0 < n <= {length}, the split's size")
    return torch.arange(n, dtype=torch.int64) * length // n
