"""Real English text as byte tokens: Debian's ``fortunes`` package, split into fixed windows.

The corpus is every plain file of the folder (``*.dat`` indexes and symbolic links such as
``*.u8`` skipped) in sorted name order. A fortune file holds entries separated by lines that
read ``%``; each entry keeps its closing ``%`` line, which marks the end of a document much as
an end-of-text token would. Entry ``k`` (counted over all files in order) goes to the
validation stream when ``k mod 10 = 9`` and to the training stream otherwise: a fixed split in
which no fortune is cut between the two.

Tokens are bytes (vocabulary 256, no tokenizer). A stream of ``L`` bytes gives
``⌊(L − 1)/T⌋`` windows of context ``T``: window ``i`` reads bytes ``[iT, iT + T)`` and predicts
bytes ``[iT + 1, iT + T + 1)`` (next-byte targets at every position).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ._idx import DataError
from ._split import Batch, evenly_spaced

__all__ = [
    "FORTUNES_DIR",
    "FORTUNES_SHA256",
    "TEXT_DATASETS",
    "TextSplit",
    "load_text",
    "read_corpus",
]

#: Where Debian's package ``fortunes`` installs its files.
FORTUNES_DIR = Path("/usr/share/games/fortunes")
#: SHA-256 of the corpus bytes (:func:`read_corpus`) of Debian's ``fortunes`` 1:1.99.1-7.3
#: (43 files, 2,576,674 bytes, 15,212 entries).
FORTUNES_SHA256 = "fbc2d796dde8ea64a51345ce4c18ff486a778a2d2259603987073bedb3fc3cd7"
TEXT_DATASETS = ("fortunes",)
VOCAB_SIZE = 256
_VAL_EVERY = 10
_MIN_ENTRIES = _VAL_EVERY
_ENTRY_END = re.compile(rb"^%\n", re.MULTILINE)
_INSTALL = "`apt-get install fortunes`"


@dataclass(frozen=True)
class Corpus:
    """The bytes of a text folder, and where they came from."""

    folder: Path
    files: tuple[str, ...]
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def entries(self) -> list[bytes]:
        """The entries of every file in order, each ending with ``b"%\\n"`` (blank ones dropped)."""
        return [e.rstrip(b"\n") + b"\n%\n" for e in _ENTRY_END.split(self.data) if e.strip()]


def read_corpus(folder: str | Path) -> Corpus:
    """The plain files of ``folder`` (no ``*.dat``, no symbolic links) in sorted name order.

    Raises:
        DataError: the folder is missing or holds no such file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"text folder {str(folder)!r} not found; install Debian's fortunes with "
                        f"{_INSTALL}, or pass --data-dir (data_dir=...) naming a folder of text "
                        "files")
    paths = sorted(p for p in folder.iterdir()
                   if p.is_file() and not p.is_symlink() and p.suffix != ".dat")
    if not paths:
        raise DataError(f"text folder {str(folder)!r} holds no text file (plain files other than "
                        f"*.dat); reinstall Debian's fortunes with {_INSTALL}, or pass a folder "
                        "of text files")
    # Fortune files end with a newline; joining with one keeps a missing one from gluing files.
    data = b"".join(p.read_bytes().rstrip(b"\n") + b"\n" for p in paths)
    return Corpus(folder, tuple(p.name for p in paths), data)


@functools.cache
def _streams(folder: Path) -> tuple[torch.Tensor, torch.Tensor, Corpus]:
    """(train bytes, validation bytes, corpus) as read-only ``uint8`` tensors; checked."""
    corpus = read_corpus(folder)
    if folder == FORTUNES_DIR and corpus.sha256 != FORTUNES_SHA256:
        raise DataError(
            f"{str(folder)!r} holds {len(corpus.data):,} bytes in {len(corpus.files)} files with "
            f"SHA-256 {corpus.sha256}, not Debian's fortunes 1:1.99.1-7.3 ({FORTUNES_SHA256}); "
            "reinstall it with `apt-get install --reinstall fortunes`, or pass --data-dir "
            "(data_dir=...) to train on another folder of text deliberately"
        )
    entries = corpus.entries()
    if len(entries) < _MIN_ENTRIES:
        raise DataError(
            f"text folder {str(folder)!r} holds {len(entries)} entries (text between '%' lines), "
            f"fewer than the {_MIN_ENTRIES} the train/validation split needs (every "
            f"{_VAL_EVERY}th entry is validation); give it more text"
        )
    train = b"".join(e for k, e in enumerate(entries) if k % _VAL_EVERY != _VAL_EVERY - 1)
    val = b"".join(e for k, e in enumerate(entries) if k % _VAL_EVERY == _VAL_EVERY - 1)
    return _as_tensor(train), _as_tensor(val), corpus


def _as_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


@dataclass(frozen=True)
class TextSplit:
    """Windows of a byte stream: a :class:`~stequiv.data.Split` of next-byte prediction.

    Sample ``i`` is window ``starts[i]``: input bytes ``stream[s : s + T]`` and targets
    ``stream[s + 1 : s + T + 1]`` with ``s = starts[i]·T``. ``num_classes`` is the vocabulary
    (256 bytes); ``in_channels`` is 1 (one token per position).
    """

    stream: torch.Tensor
    context: int
    name: str
    starts: torch.Tensor

    num_classes = VOCAB_SIZE
    in_channels = 1

    def __len__(self) -> int:
        return len(self.starts)

    def batch(self, indices: Sequence[int] | torch.Tensor, epoch: int = 0) -> Batch:
        """(inputs, targets), both ``int64`` N x T (``epoch`` unused: no augmentation)."""
        first = self.starts[torch.as_tensor(indices, dtype=torch.int64)] * self.context
        offsets = first[:, None] + torch.arange(self.context + 1)
        tokens = self.stream[offsets].to(torch.int64)
        return tokens[:, :-1], tokens[:, 1:]

    def batches(self, index_batches: Sequence[Sequence[int]], epoch: int = 0,
                workers: int = 0) -> Iterator[Batch]:
        """:meth:`batch` of each list of indices in turn (``workers`` unused: in memory)."""
        for indices in index_batches:
            yield self.batch(indices, epoch)

    def subset(self, n: int) -> TextSplit:
        """``n`` windows evenly spaced over the split."""
        return TextSplit(self.stream, self.context, self.name,
                         self.starts[evenly_spaced(len(self), n)])

    def eval_view(self) -> TextSplit:
        """The split as evaluation sees it: the same windows."""
        return self


def load_text(name: str, split: str, *, context: int,
              data_dir: str | Path | None = None) -> TextSplit:
    """One split (``"train"`` or ``"val"``) of a text dataset as windows of ``context`` bytes.

    ``fortunes``: the files of ``data_dir`` if given, else of :data:`FORTUNES_DIR` (Debian's
    package, whose bytes must match :data:`FORTUNES_SHA256`). See the module docstring for the
    corpus, the split and the windows.

    Raises:
        DataError: unknown name or split, ``context`` < 1, files missing or altered, or too
            little text for one window.
    """
    if name not in TEXT_DATASETS:
        raise DataError(f"unknown text dataset {name!r}; valid names: {', '.join(TEXT_DATASETS)}")
    if split not in ("train", "val"):
        raise DataError(f"text dataset {name!r} has no split {split!r}; valid splits: train, val")
    if not isinstance(context, int) or context < 1:
        raise DataError(f"`context` must be a positive int, got {context!r}")
    folder = FORTUNES_DIR if data_dir is None else Path(data_dir)
    train, val, _ = _streams(folder)
    stream = train if split == "train" else val
    windows = (len(stream) - 1) // context
    if windows < 1:
        raise DataError(f"the {split!r} text of {str(folder)!r} has {len(stream)} bytes, too few "
                        f"for one window of `context` = {context} (needs {context + 1})")
    return TextSplit(stream, context, name, torch.arange(windows))
