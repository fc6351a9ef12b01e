"""Real-data layer: IDX files, checksum-verified downloads, MNIST-family tensors, image folders,
byte-level text (Debian's fortunes).

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
from ._text import FORTUNES_DIR as FORTUNES_DIR
from ._text import TEXT_DATASETS as TEXT_DATASETS
from ._text import TextSplit as TextSplit
from ._text import load_text as load_text
from ._text import read_corpus as read_corpus

__all__ = [
    "FASHION_MNIST_SYSTEM_DIR",
    "FORTUNES_DIR",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "TEXT_DATASETS",
    "ArrayData",
    "Batch",
    "DataError",
    "ImageFolderDataset",
    "ImageFolderSplit",
    "Split",
    "TextSplit",
    "download",
    "list_datasets",
    "load_split",
    "load_text",
    "read_corpus",
    "read_idx",
]
