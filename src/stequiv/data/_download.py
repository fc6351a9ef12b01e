"""Checksum-verified download of one file from a list of mirrors (standard library only)."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ._idx import DataError

__all__ = ["download", "md5sum"]

_CHUNK = 1 << 20
_USER_AGENT = "stequiv (+https://pypi.org/project/stequiv)"


def md5sum(path: str | Path) -> str:
    """Hex MD5 digest of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    filename: str,
    mirrors: Sequence[str],
    dest_dir: str | Path,
    md5: str,
    *,
    timeout: float = 30,
) -> Path:
    """Download ``filename`` into ``dest_dir`` from the first mirror that serves it intact.

    Each mirror is a base URL; the file's URL is ``mirror.rstrip("/") + "/" + filename``.
    Mirrors are tried in order. A download streams into a temporary file in ``dest_dir``, is
    checked against ``md5`` and only then atomically renamed to ``dest_dir / filename``, so the
    destination never holds a partial or unverified file. A mirror that fails, or serves a file
    with the wrong checksum, is recorded and the next one is tried.

    Args:
        filename: the file's name on the mirrors and on disk.
        mirrors: base URLs, tried in order.
        dest_dir: the folder to download into (created if missing).
        md5: the expected hex MD5 digest of the file.
        timeout: seconds to wait on each network operation.

    Returns:
        The path of the verified file. An existing file with the right checksum is reused.

    Raises:
        DataError: an existing file has the wrong checksum (delete it), the arguments are
            invalid, or every mirror failed (the message lists each mirror's error).
    """
    md5 = md5.lower()
    if not re.fullmatch(r"[0-9a-f]{32}", md5):
        raise DataError(f"`md5` must be 32 hex digits, got {md5!r}")
    if not mirrors:
        raise DataError(f"`mirrors` is empty: give at least one base URL to download {filename!r}")
    dest_dir = Path(dest_dir)
    dest = dest_dir / filename
    if dest.exists():
        actual = md5sum(dest)
        if actual != md5:
            raise DataError(
                f"{str(dest)!r} exists but its md5 is {actual}, expected {md5}: "
                "the file is corrupt or a different version; delete it and run again"
            )
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + filename
        try:
            _fetch_verified(url, dest, md5, timeout)
        except (OSError, DataError) as err:  # urllib's URLError/HTTPError/timeouts are OSErrors
            errors.append(f"  {url}: {err}")
        else:
            return dest
    raise DataError(
        f"could not download {filename!r} into {str(dest_dir)!r}; every mirror failed:\n"
        + "\n".join(errors)
        + "\nCheck the network connection, or download the file by hand into that folder."
    )


def _fetch_verified(url: str, dest: Path, md5: str, timeout: float) -> None:
    """Stream ``url`` into a temporary file beside ``dest``; rename it there if ``md5`` matches."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        err.close()  # else its socket is only closed by the GC, with a ResourceWarning
        raise
    with response:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            digest = hashlib.md5(usedforsecurity=False)
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != md5:
                raise DataError(f"checksum mismatch: expected md5 {md5}, got {actual}")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
