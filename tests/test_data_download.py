"""Downloads, against HTTP servers on 127.0.0.1 that the tests start; never the internet."""

from __future__ import annotations

import functools
import hashlib
import re
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from stequiv.data import MNIST_MD5, DataError, download, load_split

# In CI the repository is cloned with `shared/` beside it.
MNIST_T10K = Path(__file__).resolve().parents[2] / "shared/data/mnist-t10k"
pytestmark = pytest.mark.skipif(
    not MNIST_T10K.is_dir(), reason=f"real MNIST test set not found at {MNIST_T10K}"
)
LABELS = "t10k-labels-idx1-ubyte.gz"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], str]]:
    """``serve(folder)`` starts a local HTTP server for ``folder`` and returns its base URL."""
    monkeypatch.setenv("no_proxy", "*")  # a proxy from the environment must not see 127.0.0.1
    running: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(folder: Path) -> str:
        handler = functools.partial(QuietHandler, directory=str(folder))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        # A short poll interval makes shutdown() quick.
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}/"

    yield start
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def refused_url() -> str:
    """A base URL on a local port that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_good_download_then_reuse(tmp_path: Path, serve: Callable[[Path], str], refused_url: str):
    dest = tmp_path / "new" / "dir"
    path = download(LABELS, [serve(MNIST_T10K)], dest, MNIST_MD5[LABELS])
    assert path == dest / LABELS
    assert path.read_bytes() == (MNIST_T10K / LABELS).read_bytes()
    assert leftovers(dest) == []
    # The verified file is reused: no mirror is contacted.
    assert download(LABELS, [refused_url], dest, MNIST_MD5[LABELS]) == path


def test_checksum_mismatch_is_refused(tmp_path: Path, serve: Callable[[Path], str]) -> None:
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    data = bytearray((MNIST_T10K / LABELS).read_bytes())
    data[-1] ^= 0xFF
    (tampered / LABELS).write_bytes(data)
    actual = hashlib.md5(data).hexdigest()
    dest = tmp_path / "dest"
    url = serve(tampered)
    expected = MNIST_MD5[LABELS]
    message = f"{url}{LABELS}: checksum mismatch: expected md5 {expected}, got {actual}"
    with pytest.raises(DataError, match=re.escape(message)):
        download(LABELS, [url], dest, expected)
    assert list(dest.iterdir()) == []  # neither the bad file nor a temporary one is left


def test_tampered_first_mirror_then_good_second(tmp_path: Path, serve: Callable[[Path], str]):
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    (tampered / LABELS).write_bytes(b"not the labels")
    dest = tmp_path / "dest"
    path = download(LABELS, [serve(tampered), serve(MNIST_T10K)], dest, MNIST_MD5[LABELS])
    assert path.read_bytes() == (MNIST_T10K / LABELS).read_bytes()


def test_first_mirror_404_then_good_second(tmp_path: Path, serve: Callable[[Path], str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    dest = tmp_path / "dest"
    path = download(LABELS, [serve(empty), serve(MNIST_T10K)], dest, MNIST_MD5[LABELS])
    assert path.read_bytes() == (MNIST_T10K / LABELS).read_bytes()
    assert leftovers(dest) == []


def test_all_mirrors_fail(tmp_path: Path, serve: Callable[[Path], str], refused_url: str) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    url_404 = serve(empty)
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="every mirror failed") as info:
        download(LABELS, [url_404, refused_url], dest, MNIST_MD5[LABELS], timeout=5)
    message = str(info.value)
    assert f"{url_404}{LABELS}: HTTP Error 404" in message
    assert f"{refused_url}{LABELS}: <urlopen error" in message
    assert list(dest.iterdir()) == []


def test_existing_file_with_wrong_checksum(tmp_path: Path, refused_url: str) -> None:
    (tmp_path / LABELS).write_bytes(b"stale")
    with pytest.raises(DataError, match=f"{LABELS}' exists but its md5 is .*delete it"):
        download(LABELS, [refused_url], tmp_path, MNIST_MD5[LABELS])


@pytest.mark.parametrize(
    ("mirrors", "md5", "match"),
    [
        (["http://127.0.0.1:1/"], "abc", r"`md5` must be 32 hex digits, got 'abc'"),
        ([], MNIST_MD5[LABELS], r"`mirrors` is empty"),
    ],
)
def test_bad_arguments(tmp_path: Path, mirrors: list[str], md5: str, match: str) -> None:
    with pytest.raises(DataError, match=match):
        download(LABELS, mirrors, tmp_path, md5)


def test_load_split_downloads_mnist_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, serve: Callable[[Path], str]
) -> None:
    monkeypatch.setenv("STEQUIV_DATA", str(tmp_path))
    with pytest.raises(DataError, match=f"looked in '{tmp_path / 'mnist'}'.*--download"):
        load_split("mnist", "val")
    data = load_split("mnist", "val", download=True, mirrors=[serve(MNIST_T10K)])
    assert data.images.shape == (10000, 1, 28, 28)
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    # Now cached: found without a download.
    assert load_split("mnist", "test").labels.equal(data.labels)
