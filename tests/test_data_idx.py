"""IDX reading: the real MNIST test set, corrupted copies of it, and a round-trip property."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from stequiv.data import DataError, read_idx

# In CI the repository is cloned with `shared/` beside it.
MNIST_T10K = Path(__file__).resolve().parents[2] / "shared/data/mnist-t10k"
needs_mnist = pytest.mark.skipif(
    not MNIST_T10K.is_dir(), reason=f"real MNIST test set not found at {MNIST_T10K}"
)
LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
IDX_TYPE_CODES = {"u1": 0x08, "i1": 0x09, ">i2": 0x0B, ">i4": 0x0C, ">f4": 0x0D, ">f8": 0x0E}


def write_bytes(path: Path, data: bytes | bytearray) -> Path:
    """Write ``data`` to ``path``, gzip-compressed when the name ends in .gz."""
    path.write_bytes(gzip.compress(bytes(data)) if path.suffix == ".gz" else bytes(data))
    return path


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in .gz)."""
    dtype = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = bytes([0, 0, IDX_TYPE_CODES[dtype.str.lstrip("|")], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    return write_bytes(path, header + array.astype(dtype).tobytes())


def raw_labels() -> bytes:
    return gzip.decompress((MNIST_T10K / "t10k-labels-idx1-ubyte.gz").read_bytes())


@needs_mnist
def test_reads_the_real_mnist_test_set() -> None:
    images = read_idx(MNIST_T10K / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(MNIST_T10K / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28)
    assert images.dtype == np.uint8
    assert images.flags.writeable
    assert 0 < images.mean() < 255
    assert labels.shape == (10000,)
    assert labels.dtype == np.uint8
    assert np.bincount(labels).tolist() == LABEL_COUNTS


@needs_mnist
def test_raw_and_gzip_files_read_the_same(tmp_path: Path) -> None:
    raw = tmp_path / "t10k-labels-idx1-ubyte"
    raw.write_bytes(raw_labels())
    np.testing.assert_array_equal(read_idx(raw), read_idx(MNIST_T10K / f"{raw.name}.gz"))


@needs_mnist
def test_wrong_magic_number(tmp_path: Path) -> None:
    data = bytearray(raw_labels())
    data[2] = 0x09  # 0x00000801 -> 0x00000901: claims int8 instead of uint8 -- still valid
    assert read_idx(write_bytes(tmp_path / "int8.gz", data)).dtype == np.int8
    data[2] = 0x07  # no such type
    with pytest.raises(DataError, match=r"bad\.gz.*magic number 0x00000701.*not an IDX file"):
        read_idx(write_bytes(tmp_path / "bad.gz", data))


@needs_mnist
@pytest.mark.parametrize(
    ("magic", "shown"), [(b"\x01\x00\x08\x01", "0x01000801"), (b"\x00\x00\x08\x00", "0x00000800")]
)
def test_nonzero_prefix_or_zero_dims_is_rejected(tmp_path: Path, magic: bytes, shown: str) -> None:
    data = magic + raw_labels()[4:]
    with pytest.raises(DataError, match=f"magic number {shown}"):
        read_idx(write_bytes(tmp_path / "bad", data))


@needs_mnist
def test_truncated_payload(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "labels.gz", raw_labels()[:-1])
    with pytest.raises(DataError, match=r"labels\.gz' truncated.*\(10000,\).*10000 .*9999 payload"):
        read_idx(path)


@needs_mnist
def test_trailing_bytes(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "labels", raw_labels() + b"\x00\x00")
    with pytest.raises(DataError, match=r"'.*labels' has trailing bytes.*10000 .*10002 payload"):
        read_idx(path)


@needs_mnist
@pytest.mark.parametrize("cut", [20, 2000])
def test_truncated_gzip(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes((MNIST_T10K / "t10k-labels-idx1-ubyte.gz").read_bytes()[:cut])
    with pytest.raises(DataError, match=r"labels\.gz' is not valid gzip"):
        read_idx(path)


def test_not_gzip_at_all(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(b"<html>404 Not Found</html>")
    with pytest.raises(DataError, match=r"labels\.gz' is not valid gzip \(BadGzipFile"):
        read_idx(path)


def test_corrupt_deflate_stream(tmp_path: Path) -> None:
    data = bytearray(gzip.compress(bytes(range(256)) * 64))
    data[20:40] = b"\xff" * 20
    (tmp_path / "x.gz").write_bytes(data)
    with pytest.raises(DataError, match="is not valid gzip"):
        read_idx(tmp_path / "x.gz")
    (tmp_path / "x").write_bytes(data)
    with pytest.raises(DataError, match=r"0x1F8B0800.*gzip-compressed: name it x\.gz"):
        read_idx(tmp_path / "x")


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"\x00\x00", "2 bytes long, too short"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated inside its header.*16 header bytes.*8"),
    ],
)
def test_short_files(tmp_path: Path, data: bytes, match: str) -> None:
    with pytest.raises(DataError, match=match):
        read_idx(write_bytes(tmp_path / "short", data))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.gz' does not exist"):
        read_idx(tmp_path / "nope.gz")


@settings(max_examples=40, deadline=None)
@given(
    array=hnp.arrays(
        dtype=st.sampled_from([np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
    ),
    compress=st.booleans(),
)
def test_round_trip(
    tmp_path_factory: pytest.TempPathFactory, array: np.ndarray, compress: bool
) -> None:
    path = tmp_path_factory.mktemp("idx") / ("a.idx.gz" if compress else "a.idx")
    result = read_idx(write_idx(path, array))
    assert result.dtype == array.dtype.newbyteorder("=")
    assert result.dtype.isnative
    np.testing.assert_array_equal(result, array)


def test_accepts_a_str_path(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "a.gz", np.arange(6, dtype=np.uint8).reshape(2, 3))
    np.testing.assert_array_equal(read_idx(str(path)), [[0, 1, 2], [3, 4, 5]])
