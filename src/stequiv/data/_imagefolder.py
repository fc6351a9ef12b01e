"""An ImageNet-style image folder with the standard ResNet preprocessing, without torchvision.

Layout: ``root/split/<class>/<image>.{jpg,jpeg,png}``; classes are the sorted folder names.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .._optional import require
from ._idx import DataError
from ._split import Batch, evenly_spaced

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ImageFolderDataset", "ImageFolderSplit"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# RandomResizedCrop's defaults (Szegedy et al. 2015, "Going deeper with convolutions").
_CROP_SCALE = (0.08, 1.0)
_CROP_RATIO = (3 / 4, 4 / 3)


def _pil() -> ModuleType:
    """``PIL.Image`` (Pillow, of the ``experiments`` extra), or the error naming that extra."""
    return require("PIL.Image", "experiments", "reading image folders")


def _bilinear() -> int:
    """PIL's bilinear filter: it widens with the downscale factor (antialiases like torchvision's)."""
    return _pil().Resampling.BILINEAR


class ImageFolderDataset(Dataset[tuple[torch.Tensor, int]]):
    """Images from ``root/split/<class>/`` as normalised ``float32`` 3 x S x S tensors.

    Preprocessing (``S = image_size``), as in torchvision's ResNet recipe:

    * train: random resized crop (area fraction in [0.08, 1], aspect ratio in [3/4, 4/3],
      bilinear resize to S x S), then a horizontal flip with probability 1/2;
    * eval: resize the shorter side to ``round(S * 256 / 224)``, then a centre S x S crop;

    then ImageNet mean/std normalisation of each channel.

    Determinism: the augmentation of sample ``index`` draws from a ``torch.Generator`` seeded
    from ``(seed, epoch, index)``, so it does not depend on the number of DataLoader workers
    or the order of access. Call :meth:`set_epoch` at the start of each epoch to get fresh
    crops, or pass a generator of your own to :meth:`load`. (DataLoader workers copy the dataset
    when an epoch's iteration starts, so this holds unless ``persistent_workers=True``.)

    Args:
        root: the dataset folder, holding one folder per split.
        split: the split's folder name, e.g. ``"train"`` or ``"val"``.
        train_augment: random crop and flip if true, resize and centre crop if false;
            ``None`` means ``split == "train"``.
        image_size: the output's side S.
        seed: the base seed of the augmentation.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        train_augment: bool | None = None,
        image_size: int = 224,
        seed: int = 0,
    ) -> None:
        _pil()  # without Pillow, stop here with the extra to install, before reading the folder
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise DataError(f"`image_size` must be a positive int, got {image_size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise DataError(f"`seed` must be a non-negative int, got {seed!r}")
        self.folder = Path(root) / split
        self.train_augment = split == "train" if train_augment is None else train_augment
        self.image_size = image_size
        self.seed = seed
        self.epoch = 0
        self.classes = _class_folders(self.folder)
        self.samples = _list_samples(self.folder, self.classes)
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.load(index)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentation ``__getitem__`` draws."""
        if not isinstance(epoch, int) or epoch < 0:
            raise DataError(f"`epoch` must be a non-negative int, got {epoch!r}")
        self.epoch = epoch

    def load(
        self, index: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, int]:
        """Sample ``index`` as (3 x S x S image, class index).

        The augmentation draws from ``generator``; by default from one seeded from
        ``(seed, epoch, index)``. Evaluation preprocessing uses no randomness.
        """
        if not -len(self) <= index < len(self):
            raise IndexError(f"`index` {index} out of range for {len(self)} images")
        index %= len(self)
        path, label = self.samples[index]
        image = _open_rgb(path)
        if self.train_augment:
            if generator is None:
                generator = self._generator(index)
            image = _random_resized_crop(image, self.image_size, generator)
            if torch.rand((), generator=generator) < 0.5:
                image = image.transpose(_pil().Transpose.FLIP_LEFT_RIGHT)
        else:
            image = _resize_centre_crop(image, self.image_size)
        pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)
        return (pixels.to(torch.float32).div_(255) - self._mean) / self._std, label

    def _generator(self, index: int) -> torch.Generator:
        # SeedSequence mixes the three numbers into a well-spread 63-bit seed.
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)
        return torch.Generator().manual_seed(int(state[0]) >> 1)


class ImageFolderSplit:
    """An :class:`ImageFolderDataset` (or a subset of it) as a :class:`~stequiv.data.Split`.

    ``batch(indices, epoch)`` decodes and augments in this process; ``batches(...,
    workers=k)`` with k > 0 hands the same index lists to a ``torch.utils.data.DataLoader``
    with k worker processes (same images: the augmentation depends on (seed, epoch, index)
    only).

    Args:
        dataset: the images.
        indices: the dataset indices this split holds, in order (default: all).
    """

    name = "imagefolder"
    in_channels = 3

    def __init__(self, dataset: ImageFolderDataset, indices: torch.Tensor | None = None) -> None:
        self.dataset = dataset
        self.indices = torch.arange(len(dataset)) if indices is None else indices

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    def __len__(self) -> int:
        return len(self.indices)

    def _dataset_indices(self, indices: Sequence[int] | torch.Tensor) -> list[int]:
        return self.indices[torch.as_tensor(indices, dtype=torch.int64)].tolist()

    def batch(self, indices: Sequence[int] | torch.Tensor, epoch: int = 0) -> Batch:
        """Images and labels of ``indices``, augmented as in epoch ``epoch`` (train only)."""
        self.dataset.set_epoch(epoch)
        items = [self.dataset[i] for i in self._dataset_indices(indices)]
        return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])

    def batches(self, index_batches: Sequence[Sequence[int]], epoch: int = 0,
                workers: int = 0) -> Iterator[Batch]:
        """:meth:`batch` of each list of indices, decoded by ``workers`` DataLoader processes."""
        if workers == 0:
            for indices in index_batches:
                yield self.batch(indices, epoch)
            return
        self.dataset.set_epoch(epoch)  # before the workers copy the dataset
        loader = DataLoader(self.dataset, num_workers=workers,
                            batch_sampler=[self._dataset_indices(ix) for ix in index_batches])
        yield from loader

    def subset(self, n: int) -> ImageFolderSplit:
        """``n`` images evenly spaced over the split (so every class keeps its share)."""
        return ImageFolderSplit(self.dataset, self.indices[evenly_spaced(len(self), n)])

    def eval_view(self) -> ImageFolderSplit:
        """The same images with evaluation preprocessing (resize, centre crop)."""
        plain = copy.copy(self.dataset)
        plain.train_augment = False
        return ImageFolderSplit(plain, self.indices)


def _class_folders(folder: Path) -> list[str]:
    if not folder.is_dir():
        raise DataError(
            f"image folder {str(folder)!r} does not exist; `root` must hold one folder per "
            "split, each with one sub-folder per class"
        )
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(
            f"image folder {str(folder)!r} has {len(classes)} class folder(s) {classes}; "
            "a classification split needs at least 2, as sub-folders <class>/<image>"
        )
    return classes


def _list_samples(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    samples: list[tuple[Path, int]] = []
    empty: list[str] = []
    for label, name in enumerate(classes):
        files = sorted(
            p
            for p in (folder / name).iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            empty.append(name)
        samples.extend((p, label) for p in files)
    if empty:
        raise DataError(
            f"class folder(s) {empty} in {str(folder)!r} hold no images with extension "
            f"{', '.join(IMAGE_EXTENSIONS)}; add images or remove the folders"
        )
    return samples


def _open_rgb(path: Path) -> Image.Image:
    pil = _pil()
    try:
        with pil.open(path) as image:
            return image.convert("RGB")
    except (pil.UnidentifiedImageError, OSError) as err:
        raise DataError(f"cannot decode image {str(path)!r} ({err}); replace or delete it") from err


def _random_resized_crop(image: Image.Image, size: int, generator: torch.Generator) -> Image.Image:
    """Crop a random box (area and aspect ratio as in RandomResizedCrop), resize it to size^2.

    Ten tries to draw a box that fits; otherwise the whole image, or its largest centred box of
    aspect ratio 3/4 or 4/3 when its own lies outside that range (torchvision's fallback).
    """
    width, height = image.size
    area = width * height
    log_lo, log_hi = math.log(_CROP_RATIO[0]), math.log(_CROP_RATIO[1])
    for _ in range(10):
        target_area = area * _uniform(*_CROP_SCALE, generator)
        aspect = math.exp(_uniform(log_lo, log_hi, generator))
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (), generator=generator))
            left = int(torch.randint(0, width - w + 1, (), generator=generator))
            return image.resize((size, size), _bilinear(), box=(left, top, left + w, top + h))
    if width / height < _CROP_RATIO[0]:
        w, h = width, round(width / _CROP_RATIO[0])
    elif width / height > _CROP_RATIO[1]:
        w, h = round(height * _CROP_RATIO[1]), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return image.resize((size, size), _bilinear(), box=(left, top, left + w, top + h))


def _resize_centre_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``round(size * 256 / 224)``, then crop the centre size^2."""
    width, height = image.size
    short = round(size * 256 / 224)
    if width <= height:
        new_w, new_h = short, int(short * height / width)
    else:
        new_w, new_h = int(short * width / height), short
    left, top = round((new_w - size) / 2), round((new_h - size) / 2)
    resized = image.resize((new_w, new_h), _bilinear())
    return resized.crop((left, top, left + size, top + size))


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))
