"""Byte-level text data: the corpus order, the fixed split, next-byte windows, checks and errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from stequiv.data import DataError, TextSplit, _text, load_text, read_corpus


@pytest.fixture(autouse=True)
def _fresh_cache():
    _text._streams.cache_clear()
    yield
    _text._streams.cache_clear()


def _entry(k: int) -> str:
    return f"Fortune number {k}.\n\t-- author {k}\n"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two fortune files (read b, then z), an index file and a symbolic link (both skipped)."""
    (tmp_path / "z").write_text("%\n".join(_entry(k) for k in range(12, 25)) + "%\n")
    (tmp_path / "b").write_text("%\n".join(_entry(k) for k in range(12)) + "%\n")
    (tmp_path / "b.dat").write_bytes(b"\x00\x01binary index")
    os.symlink(tmp_path / "b", tmp_path / "b.u8")
    return tmp_path


def test_corpus_reads_plain_files_in_sorted_order(folder: Path) -> None:
    corpus = read_corpus(folder)
    assert corpus.files == ("b", "z")
    assert corpus.data == (folder / "b").read_bytes() + (folder / "z").read_bytes()
    entries = corpus.entries()
    assert entries == [(_entry(k).rstrip("\n") + "\n%\n").encode() for k in range(25)]


def test_fixed_split_every_tenth_entry_is_validation(folder: Path) -> None:
    train = load_text("fortunes", "train", context=4, data_dir=folder)
    val = load_text("fortunes", "val", context=4, data_dir=folder)
    val_text = bytes(val.stream.tolist()).decode()
    assert val_text == "".join(_entry(k) + "%\n" for k in (9, 19))
    train_text = bytes(train.stream.tolist()).decode()
    assert train_text == "".join(_entry(k) + "%\n" for k in range(25) if k not in (9, 19))


def test_windows_predict_the_next_byte(folder: Path) -> None:
    split = load_text("fortunes", "train", context=5, data_dir=folder)
    stream = split.stream.tolist()
    assert len(split) == (len(stream) - 1) // 5
    assert isinstance(split, TextSplit)
    assert (split.num_classes, split.in_channels) == (256, 1)
    x, y = split.batch([0, 3])
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (2, 5)
    assert x[1].tolist() == stream[15:20] and y[1].tolist() == stream[16:21]
    last = len(split) - 1
    _, y_last = split.batch([last])
    assert y_last[0, -1].item() == stream[5 * last + 5]  # the last window stays inside the stream
    sub = split.subset(4)
    assert len(sub) == 4
    torch.testing.assert_close(sub.batch([1])[0], split.batch([len(split) // 4])[0])
    assert split.eval_view() is split
    batches = list(split.batches([[0], [1, 2]]))
    assert [b[0].shape[0] for b in batches] == [1, 2]


def test_missing_folder_names_path_and_apt_fix(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"'.*nowhere' not found; install Debian's fortunes with "
                                        r"`apt-get install fortunes`"):
        load_text("fortunes", "train", context=8, data_dir=tmp_path / "nowhere")
    with pytest.raises(DataError, match=r"holds no text file.*`apt-get install fortunes`"):
        load_text("fortunes", "train", context=8, data_dir=tmp_path)


def test_altered_system_corpus_is_refused(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_text, "FORTUNES_DIR", folder)
    with pytest.raises(DataError, match=r"not Debian's fortunes 1:1\.99\.1-7\.3.*--reinstall"):
        load_text("fortunes", "train", context=8)


def test_bad_arguments(folder: Path) -> None:
    with pytest.raises(DataError, match=r"unknown text dataset 'wiki'; valid names: fortunes"):
        load_text("wiki", "train", context=8, data_dir=folder)
    with pytest.raises(DataError, match=r"no split 'test'; valid splits: train, val"):
        load_text("fortunes", "test", context=8, data_dir=folder)
    with pytest.raises(DataError, match=r"`context` must be a positive int, got 0"):
        load_text("fortunes", "train", context=0, data_dir=folder)
    with pytest.raises(DataError, match=r"too few for one window of `context` = 10000"):
        load_text("fortunes", "val", context=10_000, data_dir=folder)


def test_too_few_entries(tmp_path: Path) -> None:
    (tmp_path / "one").write_text("just one entry\n%\n")
    with pytest.raises(DataError, match=r"holds 1 entries .* fewer than the 10"):
        load_text("fortunes", "train", context=4, data_dir=tmp_path)


@pytest.mark.skipif(not _text.FORTUNES_DIR.is_dir(), reason="Debian's fortunes not installed")
def test_debian_fortunes() -> None:
    corpus = read_corpus(_text.FORTUNES_DIR)
    assert corpus.sha256 == _text.FORTUNES_SHA256
    assert (len(corpus.files), len(corpus.data), len(corpus.entries())) == (43, 2_576_674, 15_212)
    train = load_text("fortunes", "train", context=128)
    val = load_text("fortunes", "val", context=128)
    assert 0.08 < len(val) / (len(train) + len(val)) < 0.12
