"""Reading IDX files, the binary array format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian
``uint32`` dimension sizes, then the array in C order, big-endian. MNIST's images are
``0x00000803`` (``uint8``, 3-D: N x 28 x 28) and its labels ``0x00000801`` (``uint8``, 1-D).
Reference: http://yann.lecun.com/exdb/mnist/ (section "File formats").
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DataError", "read_idx"]

# Type byte -> big-endian NumPy dtype, as listed in the format's description.
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataError(ValueError):
    """A data file, folder or dataset argument is missing, corrupt or invalid.

    The message names the file or argument, the bad value, and how to fix it.
    """


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (raw, or gzip-compressed when the name ends in ``.gz``).

    Args:
        path: the file, e.g. ``train-images-idx3-ubyte.gz``.

    Returns:
        A writable, native-byte-order array with the dtype and shape that the header declares.

    Raises:
        DataError: the file is missing, is not valid gzip, has a bad magic number, or its payload
            is shorter or longer than the product of its dimensions.
    """
    path = Path(path)
    raw = _read_bytes(path)
    dtype, shape, offset = _parse_header(path, raw)
    expected = math.prod(shape) * dtype.itemsize
    actual = len(raw) - offset
    if actual != expected:
        kind = "truncated" if actual < expected else "has trailing bytes"
        raise DataError(
            f"IDX file {str(path)!r} {kind}: its header declares shape {shape} of {dtype.name} "
            f"({expected} payload bytes) but the file holds {actual} payload bytes; "
            "the file is corrupt or incomplete, delete it and download it again"
        )
    array = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=offset)
    # astype copies into native byte order, so the result is writable (torch.from_numpy needs it).
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def _read_bytes(path: Path) -> bytes:
    """Return the (decompressed) bytes of ``path``, turning I/O and gzip errors into DataError."""
    if not path.is_file():
        raise DataError(f"IDX file {str(path)!r} does not exist; check the path or data directory")
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"IDX file {str(path)!r} is not valid gzip ({type(err).__name__}: {err}); "
            "the download is corrupt or incomplete, delete it and download it again"
        ) from err


def _parse_header(path: Path, raw: bytes) -> tuple[np.dtype, tuple[int, ...], int]:
    """Validate the magic number and return ``(dtype, shape, payload offset)``."""
    if len(raw) < 4:
        raise DataError(
            f"IDX file {str(path)!r} is {len(raw)} bytes long, too short for the 4-byte magic "
            "number; the file is corrupt or incomplete, delete it and download it again"
        )
    zero0, zero1, type_code, ndim = raw[:4]
    magic = int.from_bytes(raw[:4], "big")
    if zero0 != 0 or zero1 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        valid = ", ".join(f"0x{code:02X}" for code in _IDX_DTYPES)
        hint = (
            f"the file is gzip-compressed: name it {path.name}.gz"
            if raw[:2] == b"\x1f\x8b"
            else "this is not an IDX file"
        )
        raise DataError(
            f"IDX file {str(path)!r} has magic number 0x{magic:08X}; an IDX magic number is "
            f"0x0000TTDD with type TT in {{{valid}}} and DD >= 1 dimensions "
            f"(MNIST images: 0x00000803, labels: 0x00000801); {hint}"
        )
    offset = 4 + 4 * ndim
    if len(raw) < offset:
        raise DataError(
            f"IDX file {str(path)!r} is truncated inside its header: magic 0x{magic:08X} declares "
            f"{ndim} dimensions ({offset} header bytes) but the file holds {len(raw)} bytes; "
            "delete it and download it again"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    return _IDX_DTYPES[type_code], shape, offset
