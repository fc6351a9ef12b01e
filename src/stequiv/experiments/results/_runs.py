"""The results folder, its one format: what the engine writes and what the report and figures read.

::

    DIR/config.json                 the resolved ExperimentConfig (claims the folder)
    DIR/manifest.json               the SHA-256 digest and size of config.json
    DIR/runs/<run_id>/final.json    one pair's final numbers (Ē, agreement, both nets' scores)
    DIR/runs/<run_id>/metrics.csv   Ē, agreement and losses every ``eval_every`` steps
    DIR/runs/<run_id>/weights.npz   the final latent weights of both nets, for Figure 3
    DIR/runs/<run_id>/checkpoint.pt while a group trains (in its first run's folder)
    DIR/runs/<run_id>/manifest.json the SHA-256 digest and size of each file above it
    DIR/summary.json, tables/, figures/, report.md   rebuilt from the files above

Every file is written by :func:`atomic_write` (never half-written). A folder's files are written
with :func:`write_with_manifest` (:mod:`._manifest`): the files first, then ``manifest.json``
listing exactly them. Reading goes through :func:`read_verified`: a listed file whose bytes no
longer match, or that is missing, is refused with an :class:`IntegrityError` naming it and the
remedy, and nothing of its folder is used. (A results folder without any manifest, written by hand
or by an older stequiv, is read unverified; a checkpoint always needs one.) The rebuilt files
(summary, tables, figures, report) are outputs only: nothing reads them back. JSON is written strictly: a non-finite number becomes ``null``, and
reads back as NaN. Net ``a`` is always the Q̂-net, net ``b`` its partner.
"""

from __future__ import annotations

import csv
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
from ._manifest import (
    CONFIG,
    MANIFEST,
    json_text,
    listed_files,
    read_claimed_config,
    read_verified,
)

__all__ = [
    "METRICS_COLUMNS",
    "NET_KEYS",
    "RESULT_FILES",
    "atomic_write",
    "config_diff",
    "find_run",
    "load_runs",
    "metrics_csv",
    "read_config",
    "read_final",
    "read_metrics",
    "read_weights",
    "results_remedy",
    "weights_npz",
    "write_json",
]

METRICS_COLUMNS = ("step", "epoch", "ebar", "agreement", "loss_a", "loss_b", "lr")
WEIGHT_KEYS = ("x", "y", "layer", "layer_names")  # + boundaries_<i> for layer i
_RUN_KEYS = ("run_id", "optimizer", "experiment", "lr", "remap", "ebar", "agreement", "nets")
NET_KEYS = ("train_acc", "train_loss", "val_acc", "val_loss")
_SWEEP_KEYS = ("lr_factor", "partner")
RESULT_FILES = ("metrics.csv", "weights.npz", "final.json")


# ------------------------------------------------------------------------------------------ writing


def write_json(path: Path, obj: Any, *, newline: bool = False) -> Path:
    """``obj`` as indented, valid JSON (``summary.json``; see :func:`json_text`)."""
    return atomic_write(path, json_text(obj, newline=newline))


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
    """``root/config.json``, verified against ``root/manifest.json`` in a folder stequiv wrote (one
    with a manifest, at the top or in a run): there a changed, unlisted or missing ``config.json``
    is an :class:`IntegrityError` naming it. A hand-made folder (no manifest anywhere) is read
    unverified, ``{}`` without a config; malformed: an error naming the file."""
    if (root / MANIFEST).exists() or any(root.glob(f"runs/*/{MANIFEST}")):
        remedy = (f"delete the folder {root} and run `stequiv reproduce` into it again (the runs "
                  "cannot be matched to a config)")
        return read_claimed_config(root, "runs", remedy) or {}
    path = root / CONFIG
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
    # a folder stequiv claimed (config.json under its manifest) has a manifest in every run
    runs = [read_final(f, required=(root / MANIFEST).exists()) for f in files]
    _check_unique(runs)
    return runs


def read_final(path: Path, *, required: bool = False) -> dict[str, Any]:
    """One validated ``final.json``, plus ``dir`` (a ``null`` number reads as NaN), once every
    result file of its folder is verified and none its manifest lists is missing (so that a report
    uses all of them, or none: a deleted ``weights.npz`` never just drops Figure 3). With
    ``required``, a run folder without a manifest is an :class:`IntegrityError`."""
    remedy = results_remedy(path.parent)
    listed_files(path.parent, remedy)
    for name in RESULT_FILES:
        if name != path.name and (path.parent / name).exists():
            read_verified(path.parent / name, remedy, required=required)
    raw = read_verified(path, remedy, required=required)
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
