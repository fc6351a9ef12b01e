"""Real-data layer: IDX files, checksum-verified downloads, MNIST-family tensors, image folders.

Pure NumPy, torch and Pillow (no torchvision).
"""

from ._download import download as download
from ._idx import DataError as DataError
from ._idx import read_idx as read_idx
from ._imagefolder import IMAGENET_MEAN as IMAGENET_MEAN
from ._imagefolder import IMAGENET_STD as IMAGENET_STD
from ._imagefolder import ImageFolderDataset as ImageFolderDataset
from ._imagefolder import ImageFolderSplit as ImageFolderSplit
from ._sources import FASHION_MNIST_SYSTEM_DIR as FASHION_MNIST_SYSTEM_DIR
from ._sources import MNIST_MD5 as MNIST_MD5
from ._sources import MNIST_MIRRORS as MNIST_MIRRORS
from ._sources import ArrayData as ArrayData
from ._sources import list_datasets as list_datasets
from ._sources import load_split as load_split
from ._split import Batch as Batch
from ._split import Split as Split

__all__ = [
    "FASHION_MNIST_SYSTEM_DIR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "ArrayData",
    "Batch",
    "DataError",
    "ImageFolderDataset",
    "ImageFolderSplit",
    "Split",
    "download",
    "list_datasets",
    "load_split",
    "read_idx",
]
