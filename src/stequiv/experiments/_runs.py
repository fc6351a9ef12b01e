"""The results folder, its one format: what the engine writes and what the report and figures read.

::

    DIR/config.json                 the resolved ExperimentConfig (claims the folder)
    DIR/runs/<run_id>/final.json    one pair's final numbers (Ē, agreement, both nets' scores)
    DIR/runs/<run_id>/metrics.csv   Ē, agreement and losses every ``eval_every`` steps
    DIR/runs/<run_id>/weights.npz   the final latent weights of both nets, for Figure 3
    DIR/runs/<run_id>/checkpoint.pt while a group trains (in its first run's folder)
    DIR/summary.json, tables/, figures/, report.md   rebuilt from the files above

Every file is written by :func:`atomic_write` (never half-written). Net ``a`` is always the
Q̂-net, net ``b`` its partner.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._protocol import OPTIMIZERS, PARTNERS, PROTOCOL

__all__ = ["METRICS_COLUMNS", "atomic_write", "config_diff", "find_run", "load_runs",
           "metrics_csv", "read_config", "read_metrics", "read_weights", "weights_npz",
           "write_json"]

METRICS_COLUMNS = ("step", "epoch", "ebar", "agreement", "loss_a", "loss_b", "lr")
WEIGHT_KEYS = ("x", "y", "layer", "layer_names")  # + boundaries_<i> for layer i
_RUN_KEYS = ("run_id", "optimizer", "experiment", "lr", "remap", "ebar", "agreement", "nets")
NET_KEYS = ("train_acc", "train_loss", "val_acc", "val_loss")
_SWEEP_KEYS = ("lr_factor", "partner")
# ------------------------------------------------------------------------------------------ writing


def atomic_write(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never a part.

    The bytes go to a temporary file in the same folder (same file system), are flushed to disk
    (``fsync``), and :func:`os.replace` moves them into place; on any failure the temporary file
    is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only; results are meant to be read
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return path


def write_json(path: Path, obj: Any, *, newline: bool = False) -> Path:
    """``obj`` as indented JSON (``config.json``, ``final.json``, ``summary.json``)."""
    return atomic_write(path, json.dumps(obj, indent=2) + ("\n" if newline else ""))


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
    """One validated ``final.json``, plus ``dir``."""
    try:
        run = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
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
    """Raise unless every one of ``keys`` holds a JSON number (a table cannot format anything else)."""
    _require(obj, keys, where)
    bad = {k: obj[k] for k in keys if isinstance(obj[k], bool) or not isinstance(obj[k], int | float)}
    if bad:
        raise ValueError(f"load_runs: {where}: expected numbers, got {bad}")


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
    """``weights.npz`` of a run as a dict of arrays, or ``None`` if the run saved none."""
    path = Path(run["dir"]) / "weights.npz"
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"write_report: cannot read {path} ({err})") from err
    missing = [k for k in WEIGHT_KEYS if k not in data]
    if missing:
        raise ValueError(f"write_report: {path} is missing array(s) {missing}")
    return data


def read_metrics(run: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """``step``, ``ebar`` and ``agreement`` columns of a run's ``metrics.csv`` (``None`` if absent)."""
    path = Path(run["dir"]) / "metrics.csv"
    if not path.exists():
        return None
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    try:
        return {k: np.array([float(r[k]) if r[k] else np.nan for r in rows]) for k in ("step", "ebar", "agreement")}
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"write_report: {path} is malformed ({err!r}); expected the columns "
                         f"{','.join(METRICS_COLUMNS)}") from err
