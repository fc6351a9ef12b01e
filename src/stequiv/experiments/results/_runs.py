"""The results folder, its one format: what the engine writes and what the report and figures read.

::

    DIR/config.json                 the resolved ExperimentConfig (claims the folder)
    DIR/runs/<run_id>/final.json    one pair's final numbers (Ē, agreement, both nets' scores)
    DIR/runs/<run_id>/metrics.csv   Ē, agreement and losses every ``eval_every`` steps
    DIR/runs/<run_id>/weights.npz   the final latent weights of both nets, for Figure 3
    DIR/runs/<run_id>/checkpoint.pt while a group trains (in its first run's folder)
    DIR/runs/<run_id>/manifest.json the SHA-256 digest and size of each file above it
    DIR/summary.json, tables/, figures/, report.md   rebuilt from the files above

Every file is written by :func:`atomic_write` (never half-written). A run folder's files are
written with :func:`write_with_manifest`: the files first, then ``manifest.json`` listing exactly
them. Reading goes through :func:`read_verified`: a listed file whose bytes no longer match is
refused with an :class:`IntegrityError` naming it and the remedy, and never used. (A results
folder without any manifest, written by hand or by an older stequiv, is read unverified; a
checkpoint always needs one.) JSON is written strictly: a non-finite number becomes ``null``, and
reads back as NaN. Net ``a`` is always the Q̂-net, net ``b`` its partner.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..._atomic import write_atomic as atomic_write
from ..config import OPTIMIZERS, PARTNERS, PROTOCOL

__all__ = [
    "MANIFEST",
    "METRICS_COLUMNS",
    "NET_KEYS",
    "RESULT_FILES",
    "IntegrityError",
    "atomic_write",
    "config_diff",
    "find_run",
    "finite_json",
    "json_text",
    "load_runs",
    "metrics_csv",
    "read_config",
    "read_final",
    "read_metrics",
    "read_verified",
    "read_weights",
    "results_remedy",
    "weights_npz",
    "write_json",
    "write_with_manifest",
]

METRICS_COLUMNS = ("step", "epoch", "ebar", "agreement", "loss_a", "loss_b", "lr")
WEIGHT_KEYS = ("x", "y", "layer", "layer_names")  # + boundaries_<i> for layer i
_RUN_KEYS = ("run_id", "optimizer", "experiment", "lr", "remap", "ebar", "agreement", "nets")
NET_KEYS = ("train_acc", "train_loss", "val_acc", "val_loss")
_SWEEP_KEYS = ("lr_factor", "partner")
MANIFEST = "manifest.json"
RESULT_FILES = ("metrics.csv", "weights.npz", "final.json")
_MANIFEST_FORMAT = 1


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


def write_json(path: Path, obj: Any, *, newline: bool = False) -> Path:
    """``obj`` as indented, valid JSON (``config.json``, ``summary.json``; see :func:`json_text`)."""
    return atomic_write(path, json_text(obj, newline=newline))


def write_with_manifest(folder: Path, files: Mapping[str, str | bytes]) -> None:
    """Write ``files`` (name → content) into ``folder``, each atomically, then ``manifest.json``
    listing exactly these files with their SHA-256 digest and size (written last)."""
    entries = {}
    for name, data in files.items():
        raw = data.encode() if isinstance(data, str) else data
        atomic_write(folder / name, raw)
        entries[name] = {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}
    write_json(folder / MANIFEST, {"format": _MANIFEST_FORMAT, "files": entries}, newline=True)


def metrics_csv(history: Sequence[Mapping[str, float]]) -> str:
    """``metrics.csv``: one row per measurement, :data:`METRICS_COLUMNS`, blank where not measured."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({c: row.get(c, "") for c in METRICS_COLUMNS})
    return buf.getvalue()


def weights_npz(x: Sequence[np.ndarray], y: Sequence[np.ndarray], names: Sequence[str],
                boundaries: Sequence[np.ndarray]) -> bytes:
    """``weights.npz``: layer i's weights of net a (``x``) and b (``y``) as float32, concatenated,
    with ``layer`` (int16 index per weight), ``layer_names`` and ``boundaries_<i>`` (float64)."""
    layer = [np.full(w.size, i, dtype=np.int16) for i, w in enumerate(x)]
    extra = {f"boundaries_{i}": np.asarray(b, dtype=np.float64) for i, b in enumerate(boundaries)}
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.concatenate([w.ravel().astype(np.float32) for w in x]),
                        y=np.concatenate([w.ravel().astype(np.float32) for w in y]),
                        layer=np.concatenate(layer), layer_names=np.array(names), **extra)
    return buf.getvalue()

# ------------------------------------------------------------------------------------- verifying


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


def results_remedy(run_dir: Path) -> str:
    return f"delete the folder {run_dir} to train its group again"

# ------------------------------------------------------------------------------------------ config


def as_json(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(obj))


def config_diff(saved: Mapping[str, Any], ours: Mapping[str, Any]) -> list[str]:
    """The keys whose values differ between two configs, compared as JSON (sorted)."""
    a, b = as_json(saved), as_json(ours)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def read_config(root: Path) -> dict[str, Any]:
    """``root/config.json`` (``{}`` if there is none); malformed: an error naming the file."""
    path = root / "config.json"
    if not path.exists():
        return {}
    try:
        config = json.loads(path.read_bytes())
    except ValueError as err:
        raise ValueError(f"write_report: {path} is not valid JSON ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"write_report: {path} must be a JSON object, got {type(config).__name__}")
    return config

# ------------------------------------------------------------------------------------------ runs


def load_runs(result_dir: str | Path) -> list[dict[str, Any]]:
    """Every ``runs/<run_id>/final.json`` under ``result_dir``, in folder order.

    Each dict is the file's content plus ``dir``, the run's folder (where ``metrics.csv`` and
    ``weights.npz`` live). Raises :class:`FileNotFoundError` if there is none, and
    :class:`ValueError` naming the file if one is malformed, lacks a key or repeats a run.
    """
    root = Path(result_dir)
    files = sorted(root.glob("runs/*/final.json"))
    if not files:
        raise FileNotFoundError(f"load_runs: no runs/<run_id>/final.json under {root}: "
                                "train first (the engine writes one per pair run)")
    runs = [read_final(f) for f in files]
    _check_unique(runs)
    return runs


def read_final(path: Path) -> dict[str, Any]:
    """One validated ``final.json``, plus ``dir`` (a ``null`` number reads as NaN), once every
    result file of its folder is verified (so that a report uses all of them, or none)."""
    for name in RESULT_FILES:
        if name != path.name and (path.parent / name).exists():
            read_verified(path.parent / name, results_remedy(path.parent), required=False)
    raw = read_verified(path, results_remedy(path.parent), required=False)
    try:
        run = json.loads(raw)
    except ValueError as err:
        raise ValueError(f"load_runs: {path} is not valid JSON ({err})") from err
    _require(run, _RUN_KEYS, str(path))
    _require_choice(run, "optimizer", OPTIMIZERS, path)
    _require_choice(run, "experiment", tuple(PROTOCOL), path)
    _require_numbers(run, ("lr", "ebar", "agreement"), str(path))
    _require(run["nets"], ("a", "b"), f"{path} `nets`")
    for net in ("a", "b"):
        _require_numbers(run["nets"][net], NET_KEYS, f"{path} `nets.{net}`")
    if run["experiment"] == "lr-sweep":
        _require(run, _SWEEP_KEYS, str(path))
        _require_numbers(run, ("lr_factor",), str(path))
        _require_choice(run, "partner", PARTNERS, path)
    return {**run, "dir": str(path.parent)}


def _require(obj: Any, keys: Iterable[str], where: str) -> None:
    """Raise unless ``obj`` is a JSON object holding every one of ``keys``."""
    if not isinstance(obj, dict):
        raise ValueError(f"load_runs: {where} must be a JSON object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise ValueError(f"load_runs: {where} is missing key(s) {missing}")


def _require_numbers(obj: Any, keys: Sequence[str], where: str) -> None:
    """Raise unless every one of ``keys`` holds a JSON number (a table cannot format anything
    else); ``null`` (how a non-finite number is written) becomes NaN in ``obj``."""
    _require(obj, keys, where)
    bad = {k: obj[k] for k in keys if obj[k] is not None
           and (isinstance(obj[k], bool) or not isinstance(obj[k], int | float))}
    if bad:
        raise ValueError(f"load_runs: {where}: expected numbers, got {bad}")
    obj.update({k: math.nan for k in keys if obj[k] is None})


def _require_choice(run: dict[str, Any], key: str, allowed: Sequence[str], path: Path) -> None:
    if run[key] not in allowed:
        raise ValueError(f"load_runs: {path}: `{key}` is {run[key]!r}; expected one of {list(allowed)}")


def _run_key(run: dict[str, Any]) -> tuple[Any, ...]:
    if run["experiment"] == "lr-sweep":
        return run["optimizer"], "lr-sweep", run["partner"], float(run["lr_factor"])
    return run["optimizer"], run["experiment"]


def _check_unique(runs: list[dict[str, Any]]) -> None:
    """Two runs of the same experiment would make every table ambiguous."""
    seen: dict[tuple[Any, ...], str] = {}
    for run in runs:
        key = _run_key(run)
        if key in seen:
            raise ValueError(f"load_runs: {seen[key]} and {run['dir']} are both {key}; "
                             "move one of them out of runs/")
        seen[key] = run["dir"]


def find_run(runs: Iterable[dict[str, Any]], optimizer: str, experiment: str) -> dict[str, Any] | None:
    """The (single) run of ``experiment`` with ``optimizer``, or ``None``."""
    return next((r for r in runs if r["optimizer"] == optimizer and r["experiment"] == experiment), None)

# ------------------------------------------------------------------------------------------ series


def read_weights(run: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """``weights.npz`` of a run as a dict of arrays (verified), or ``None`` if the run saved none."""
    path = Path(run["dir"]) / "weights.npz"
    if not path.exists():
        return None
    raw = read_verified(path, results_remedy(path.parent), required=False)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"write_report: cannot read {path} ({err})") from err
    missing = [k for k in WEIGHT_KEYS if k not in data]
    if missing:
        raise ValueError(f"write_report: {path} is missing array(s) {missing}")
    return data


def read_metrics(run: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """``step``, ``ebar`` and ``agreement`` of a run's ``metrics.csv`` (verified), ``None`` if absent.

    Strict: the header must be :data:`METRICS_COLUMNS`, every row complete and ended by a line
    break (a truncated last row is refused, not parsed), every cell a number or blank (blank: not
    measured, read as NaN); the error names the file and line.
    """
    path = Path(run["dir"]) / "metrics.csv"
    if not path.exists():
        return None
    text = read_verified(path, results_remedy(path.parent), required=False).decode(errors="replace")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    where = f"write_report: {path} is malformed"
    if not rows or tuple(rows[0]) != METRICS_COLUMNS:
        raise ValueError(f"{where}: its header is {rows[0] if rows else 'missing'}; expected the "
                         f"columns {','.join(METRICS_COLUMNS)}")
    if not text.endswith("\n"):
        raise ValueError(f"{where}: line {len(rows)} is cut off (no line break at the end: the file "
                         f"was truncated); {results_remedy(path.parent)}")
    cols = {k: METRICS_COLUMNS.index(k) for k in ("step", "ebar", "agreement")}
    out: dict[str, list[float]] = {k: [] for k in cols}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(METRICS_COLUMNS):
            raise ValueError(f"{where}: line {line} has {len(row)} of {len(METRICS_COLUMNS)} "
                             f"columns; {results_remedy(path.parent)}")
        for key, i in cols.items():
            out[key].append(_cell(row[i], f"{where}: line {line}, column `{key}`"))
    return {k: np.array(v, dtype=np.float64) for k, v in out.items()}


def _cell(text: str, where: str) -> float:
    """A metrics cell: a number, or NaN where blank (not measured)."""
    try:
        return float(text) if text else math.nan
    except ValueError:
        raise ValueError(f"{where} is {text!r}, not a number") from None
