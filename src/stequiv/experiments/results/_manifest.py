"""Manifests: every file stequiv reads back from a folder is listed, with its SHA-256 digest and
size, in that folder's ``manifest.json``, and is read only through :func:`read_verified`.

A folder's files are written first (each atomically), its manifest last, so a crash between the
two leaves files the manifest does not list: they are refused when read, and removed when the
folder is resumed (:func:`remove_unlisted`), never used unverified. A folder is *claimed* by the
``config.json`` listed in its own manifest (:func:`check_claim`, :func:`write_config`): a rerun
with another config is refused once the folder holds results, and a ``config.json`` that was
edited or deleted stops every reader with an :class:`IntegrityError` naming it and the remedy.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..._atomic import write_atomic

__all__ = ["CONFIG", "MANIFEST", "IntegrityError", "add_to_manifest", "check_claim",
           "finite_json", "json_text", "listed_files", "read_claimed_config", "read_verified",
           "remove_partial_writes", "remove_unlisted", "write_config", "write_with_manifest"]

MANIFEST = "manifest.json"
CONFIG = "config.json"
_MANIFEST_FORMAT = 1
# write_atomic's temporary files: ".<name>.<random>.tmp" beside the file being written
_PARTIAL_GLOB = ".*.tmp"


class IntegrityError(ValueError):
    """A saved file differs from what stequiv wrote (its digest), or is not the file it claims to be."""

# ------------------------------------------------------------------------------------------ writing


def json_text(obj: Any, *, newline: bool = False) -> str:
    """``obj`` as indented, valid JSON: a NaN or ±inf becomes ``null`` (never a bare ``NaN``)."""
    return json.dumps(finite_json(obj), indent=2, allow_nan=False) + ("\n" if newline else "")


def finite_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by ``None`` (tuples become lists)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [finite_json(v) for v in obj]
    return obj


def _entry(raw: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}


def _write_manifest(folder: Path, entries: Mapping[str, Mapping[str, Any]]) -> None:
    text = json.dumps({"format": _MANIFEST_FORMAT, "files": dict(sorted(entries.items()))}, indent=2)
    write_atomic(folder / MANIFEST, text + "\n")


def _write_files(folder: Path, files: Mapping[str, str | bytes]) -> dict[str, dict[str, Any]]:
    entries = {}
    for name, data in files.items():
        raw = data.encode() if isinstance(data, str) else data
        write_atomic(folder / name, raw)
        entries[name] = _entry(raw)
    return entries


def write_with_manifest(folder: Path, files: Mapping[str, str | bytes]) -> None:
    """Write ``files`` (name → content) into ``folder``, each atomically, then ``manifest.json``
    listing exactly these files with their SHA-256 digest and size (written last)."""
    _write_manifest(folder, _write_files(folder, files))


def add_to_manifest(folder: Path, files: Mapping[str, str | bytes], remedy: str) -> None:
    """Write ``files`` into ``folder``, then its manifest: the entries it had plus these (a folder
    that grows, e.g. a study's ``cells/``; one writer at a time)."""
    old = _manifest_entries(folder / MANIFEST, remedy) if (folder / MANIFEST).exists() else {}
    _write_manifest(folder, {**old, **_write_files(folder, files)})

# ------------------------------------------------------------------------------------------ reading


def read_verified(path: Path, remedy: str, *, required: bool) -> bytes:
    """The bytes of ``path``, if they have the digest its folder's ``manifest.json`` lists.

    Raises :class:`IntegrityError` naming the file and ``remedy`` if they do not, if the file is
    not listed, or if the manifest is unreadable. Without a manifest: an error if ``required``,
    else the bytes unverified (a folder written by hand or by an older stequiv).
    """
    manifest = path.parent / MANIFEST
    raw = path.read_bytes()
    if not manifest.exists():
        if required:
            raise IntegrityError(f"{path} has no {MANIFEST} beside it to check it against (written "
                                 f"by an older stequiv, or its writing was interrupted); {remedy}")
        return raw
    entry = _manifest_entries(manifest, remedy).get(path.name)
    if entry is None:
        raise IntegrityError(f"{path} is not listed in {manifest} (it was not written by this run, "
                             f"or its writing was interrupted); it was not used; {remedy}")
    if len(raw) != entry["bytes"] or hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        raise IntegrityError(f"{path} does not match its SHA-256 digest in {manifest} ({len(raw)} "
                             f"bytes, {entry['bytes']} written): it was changed or damaged after "
                             f"stequiv wrote it and was not used; {remedy}")
    return raw


def listed_files(folder: Path, remedy: str) -> list[str]:
    """The files ``folder``'s manifest lists (``[]`` without a manifest), once each is checked to
    exist: a listed file that was deleted is an :class:`IntegrityError` naming it (a reader uses
    all of a folder's results or none, never the survivors)."""
    manifest = folder / MANIFEST
    if not manifest.exists():
        return []
    names = sorted(_manifest_entries(manifest, remedy))
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise IntegrityError(f"{folder}: {', '.join(missing)} listed in {MANIFEST} "
                             f"{'is' if len(missing) == 1 else 'are'} missing (deleted after "
                             f"stequiv wrote {'it' if len(missing) == 1 else 'them'}); nothing of "
                             f"this folder was used; {remedy}")
    return names


def _manifest_entries(manifest: Path, remedy: str) -> dict[str, dict[str, Any]]:
    """``{file name: {"sha256", "bytes"}}`` of a manifest; malformed: an IntegrityError naming it."""
    try:
        data = json.loads(manifest.read_bytes())
        files = data["files"]
        if data["format"] != _MANIFEST_FORMAT or not all(
                isinstance(e["sha256"], str) and isinstance(e["bytes"], int) for e in files.values()):
            raise ValueError(f"format {data['format']!r} or entries {files!r}")
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise IntegrityError(f"{manifest} is not a stequiv manifest ({err}); nothing it lists was "
                             f"used; {remedy}") from err
    return files

# ------------------------------------------------------------------------------------------ resuming


def remove_partial_writes(root: Path) -> list[Path]:
    """Delete the temporary files of atomic writes that were killed (SIGKILL, power loss) under
    ``root``; returns them. Only for a folder no other process is writing into."""
    partial = sorted(p for p in root.rglob(_PARTIAL_GLOB) if p.is_file())
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def remove_unlisted(folder: Path, remedy: str) -> list[Path]:
    """Delete the files of ``folder`` its manifest does not list (written before a crash let the
    manifest list them: never read, so safe to drop); returns them. No manifest: nothing."""
    if not (folder / MANIFEST).exists():
        return []
    listed = {*_manifest_entries(folder / MANIFEST, remedy), MANIFEST}
    stray = sorted(p for p in folder.iterdir() if p.is_file() and p.name not in listed)
    for path in stray:
        path.unlink()
    return stray

# ------------------------------------------------------------------------------------------ claiming


def _holds_results(out: Path, results: str) -> bool:
    return (out / results).is_dir() and any((out / results).iterdir())


def read_claimed_config(out: Path, results: str, remedy: str) -> dict[str, Any] | None:
    """The verified ``config.json`` that claims ``out``, or ``None`` if nothing claims it.

    Raises :class:`IntegrityError` naming the file and ``remedy`` when it was changed, when it is
    missing while the manifest lists it or ``out/results`` holds results (they could not be matched
    to a config), or when it is not a JSON object.
    """
    path = out / CONFIG
    if not path.exists():
        held = [f"{results}/"] * _holds_results(out, results) + [MANIFEST] * (out / MANIFEST).exists()
        if held:
            raise IntegrityError(f"{path} is missing, but {out} holds {' and '.join(held)} "
                                 f"written with it: its results cannot be matched to a config and "
                                 f"were not used; {remedy}")
        return None
    raw = read_verified(path, remedy, required=True)
    try:
        config = json.loads(raw)
    except ValueError as err:
        raise IntegrityError(f"{path} is not valid JSON ({err}); {remedy}") from err
    if not isinstance(config, dict):
        raise IntegrityError(f"{path} must be a JSON object, got {type(config).__name__}; {remedy}")
    return config


def check_claim(out: Path, ours: Mapping[str, Any], results: str,
                differs: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]]) -> bool:
    """Whether ``out`` must be claimed by writing ``ours`` as its ``config.json``: ``False`` if
    it already holds this config (a resume). Reads only, so every process of a run may call it.

    A folder that holds results of another config (``differs`` lists the keys) is refused; one
    that holds none yet (a run stopped before its first result) is free for another config, as is
    a ``config.json`` without a manifest beside it and no results (a claim cut short).
    """
    remedy = f"delete the folder {out} (or choose another --out folder) and run again"
    if (out / CONFIG).exists() and not (out / MANIFEST).exists() and not _holds_results(out, results):
        return True
    saved = read_claimed_config(out, results, remedy)
    if saved is None:
        return True
    diff = differs(saved, ours)
    if diff and _holds_results(out, results):
        raise ValueError(f"{out} already holds results of a different config (keys differ: "
                         f"{diff}); choose another --out folder or delete it")
    return bool(diff)


def write_config(out: Path, ours: Mapping[str, Any]) -> None:
    """``out/config.json`` and the manifest listing it. Strict JSON: a non-finite value is an
    error here (a config never holds one once validated), never an ``Infinity`` in the file."""
    write_with_manifest(out, {CONFIG: json.dumps(ours, indent=2, allow_nan=False)})
