"""Files that appear complete or not at all: the one atomic write of the package."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never a part.

    The bytes go to a temporary file in the same folder (same file system; the folder is made if
    missing), are flushed to disk (``fsync``), and :func:`os.replace` moves them into place; on any
    failure the temporary file is removed and ``path`` is as it was. Returns ``path``.

    Raises:
        OSError: the write failed; its ``filename`` is ``path`` (not the temporary file), and a
            full disk says how much space is free there and how much the file needs.
    """
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as out:
            out.write(raw)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only; results are meant to be read
        os.replace(tmp_name, path)
    except OSError as err:
        raise _naming(err, path, len(raw)) from err
    finally:
        if tmp_name is not None:
            Path(tmp_name).unlink(missing_ok=True)
    return path


def _naming(err: OSError, path: Path, size: int) -> OSError:
    """``err`` about ``path`` itself; ENOSPC/EDQUOT as a full disk with its free space."""
    reason = err.strerror or str(err)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        free = shutil.disk_usage(next(p for p in (path.parent, *path.parents) if p.exists())).free
        reason = (f"the disk is full ({reason}): {_size(free)} free there, the file needs "
                  f"{_size(size)}; free some space or write to another disk, then run it again")
    return OSError(err.errno, reason, str(path))  # the subclass of errno (PermissionError, ...)


def _size(n: int) -> str:
    """``n`` bytes in B, KiB, MiB, GiB or TiB (3 significant digits)."""
    if n < 1024:
        return f"{n} B"
    size, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.3g} {unit}"
