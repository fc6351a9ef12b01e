"""Turn a results folder into what a reader sees: ``summary.json``, Tables 3–5, figures, ``report.md``.

Everything here reads the files the training engine saved (``DIR/config.json`` and
``DIR/runs/<run_id>/{final.json,metrics.csv,weights.npz}``), never live models, so a report can be
rebuilt at any time. Every file is written atomically (a temporary file in the same folder, then
:func:`os.replace`), so an interrupted rebuild never leaves a half-written file behind.

Conventions: Ē, agreement and accuracies are fractions in the data (``0.00515`` is 0.515 %); the
Markdown tables print percentages, the CSV files the raw fractions. Net ``a`` is always the Q̂-net,
net ``b`` its partner (the STE twin, or the Q̂-net with lr × 1.01 for ``lr-tweak``).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..qat._degenerate import NEARLY_STE

__all__ = [
    "PAPER", "Column", "PointCheck", "Table", "build_tables", "ebar_percent", "find_run",
    "load_runs", "point_checks", "summary", "write_report",
]

OPTIMIZERS = ("sgd", "adam")
EXPERIMENTS = ("baseline", "lr-tweak", "unadjusted", "m-only", "alpha-only", "lr-sweep",
               "activation-swap")
SUMMARY_EXPERIMENTS = ("baseline", "lr-tweak", "unadjusted", "activation-swap")
POINT_A_MAX = 1.5  # baseline Ē / lr-tweak Ē: the STE swap is "about as impactful" as a 1 % lr change
POINT_B_MIN = 3.0  # unadjusted Ē / baseline Ē: skipping M must clearly break the alignment
VAL_ACC_TOL = 0.005  # Table 5: |val acc(Q̂) − val acc(STE)| below half a point

_RUN_KEYS = ("run_id", "optimizer", "experiment", "lr", "remap", "ebar", "agreement", "nets")
_NET_KEYS = ("train_acc", "train_loss", "val_acc", "val_loss")
_SWEEP_KEYS = ("lr_factor", "partner")
_SWEEP_PARTNERS = ("ste", "lr-tweak")
_OPT_TAG = {"sgd": "S", "adam": "A"}


def _net(train_acc: float, train_loss: float, val_acc: float, val_loss: float | None) -> dict[str, float | None]:
    return {"train_acc": train_acc, "train_loss": train_loss, "val_acc": val_acc, "val_loss": val_loss}


#: The paper's Tables 3–5 (arXiv 2405.05171), as fractions. ``table4[model][optimizer][experiment]``
#: holds Ē and quantized-weight agreement; ``table5[model][optimizer]["ste"|"qhat"]`` the nets' final
#: metrics; ``table3`` the descriptions and interpretations. ``None``: cut off in the extracted text.
PAPER: dict[str, Any] = {
    "table3": {
        "baseline": ("Q̂ vs. STE", "Baseline."),
        "lr-tweak": ("Q̂ vs. Q̂ with 1% learning rate increase",
                     "Replacing STE-net with Q̂-net is about as impactful as a small change to η (A)."),
        "unadjusted": ("Q̂ vs. STE without reinitializing weights",
                       "The two models only see the same weight movement if weights are re-initialized according to M (B)."),
    },
    "table4": {
        "mnist": {
            "sgd": {"baseline": {"ebar": 0.00515, "agreement": 0.9831},
                    "lr-tweak": {"ebar": 0.00572, "agreement": 0.9866},
                    "unadjusted": {"ebar": 0.0252, "agreement": 0.9653}},
            "adam": {"baseline": {"ebar": 0.0281, "agreement": 0.9442},
                     "lr-tweak": {"ebar": 0.0174, "agreement": 0.954}},
        },
        "imagenet": {
            "sgd": {"baseline": {"ebar": 0.0542, "agreement": 0.6894},
                    "lr-tweak": {"ebar": 0.0546, "agreement": 0.7564},
                    "unadjusted": {"ebar": 0.0788, "agreement": 0.6753}},
            "adam": {"baseline": {"ebar": 0.0718, "agreement": 0.7222},
                     "lr-tweak": {"ebar": 0.0499, "agreement": 0.7632}},
        },
    },
    "table5": {
        "mnist": {
            "sgd": {"ste": _net(0.9705, 0.1439, 0.9708, 0.1417), "qhat": _net(0.9698, 0.1483, 0.9714, 0.1468)},
            "adam": {"ste": _net(0.9756, 0.1270, 0.9766, 0.1257), "qhat": _net(0.9763, 0.1254, 0.9758, 0.1245)},
        },
        "imagenet": {
            "sgd": {"ste": _net(0.6894, 1.3370, 0.6983, None), "qhat": _net(0.6851, 1.3365, 0.6877, None)},
            "adam": {"ste": _net(0.6978, 1.2876, 0.7001, None), "qhat": _net(0.6902, 1.3153, 0.6937, None)},
        },
    },
}

# ---------------------------------------------------------------------------------------- loading


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
    runs = [_read_run(f) for f in files]
    _check_unique(runs)
    return runs


def _read_run(path: Path) -> dict[str, Any]:
    """One validated ``final.json``."""
    try:
        run = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise ValueError(f"load_runs: {path} is not valid JSON ({err})") from err
    _require(run, _RUN_KEYS, str(path))
    _require_choice(run, "optimizer", OPTIMIZERS, path)
    _require_choice(run, "experiment", EXPERIMENTS, path)
    _require_numbers(run, ("lr", "ebar", "agreement"), str(path))
    _require(run["nets"], ("a", "b"), f"{path} `nets`")
    for net in ("a", "b"):
        _require_numbers(run["nets"][net], _NET_KEYS, f"{path} `nets.{net}`")
    if run["experiment"] == "lr-sweep":
        _require(run, _SWEEP_KEYS, str(path))
        _require_numbers(run, ("lr_factor",), str(path))
        _require_choice(run, "partner", _SWEEP_PARTNERS, path)
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


def _read_config(root: Path) -> dict[str, Any]:
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

# ---------------------------------------------------------------------------------- summary, checks


def summary(runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """``{optimizer: {experiment: {"ebar", "agreement", "val_acc": [Q̂-net, partner]}}}`` (fractions).

    Only the experiments ``baseline``, ``lr-tweak`` and ``unadjusted`` that were run, and only the
    optimizers with at least one of them. ``summary.json`` holds exactly this (a stable interface).
    """
    runs = list(runs)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for opt in OPTIMIZERS:
        rows = {exp: _summary_row(run) for exp in SUMMARY_EXPERIMENTS if (run := find_run(runs, opt, exp))}
        if rows:
            out[opt] = rows
    return out


def _summary_row(run: dict[str, Any]) -> dict[str, Any]:
    nets = run["nets"]
    return {"ebar": float(run["ebar"]), "agreement": float(run["agreement"]),
            "val_acc": [float(nets["a"]["val_acc"]), float(nets["b"]["val_acc"])]}


@dataclass(frozen=True)
class PointCheck:
    """A computed check of Point A or B: a ratio of SGD Ē values, ours and the paper's MNIST one."""

    point: str
    ratio: str
    ours: float | None
    paper: float | None
    rule: str
    holds: bool | None  # None: an experiment it needs was not run, or the comparison is degenerate
    untestable: str = ""  # why the comparison cannot test the point (then ``holds`` is None)

    @property
    def verdict(self) -> str:
        if self.untestable:
            return f"cannot test Point {self.point}: {self.untestable}"
        return {True: "holds", False: "fails", None: "not run"}[self.holds]


def point_checks(summ: dict[str, dict[str, dict[str, Any]]],
                 slope_spread: float | None = None) -> tuple[PointCheck, PointCheck]:
    """Point A (baseline Ē / lr-tweak Ē ≤ 1.5) and Point B (unadjusted Ē / baseline Ē ≥ 3), SGD.

    Point B cannot be tested (verdict says why, ``holds`` None) when the estimator is the STE to
    within 1 % over the initial weights (``slope_spread`` ρ = max/min Q̂′ ≤ 1.01, recorded by the
    runs), or when the unadjusted twin's Ē is below the lr-tweak floor: then nothing the twin
    leaves out is measurable, and "holds" would be vacuous.
    """
    ours, paper = summ.get("sgd", {}), PAPER["table4"]["mnist"]["sgd"]
    a = _ebar_ratio(ours, "baseline", "lr-tweak")
    b = _ebar_ratio(ours, "unadjusted", "baseline")
    untestable = ""
    if slope_spread is not None and slope_spread <= NEARLY_STE:
        untestable = (f"the estimator is the STE to within {100 * (slope_spread - 1):.2g} % over the "
                      f"initial weights (max/min Q̂′ = {slope_spread:.4g} ≤ {NEARLY_STE:g})")
    elif b is not None and ours["unadjusted"]["ebar"] < ours.get("lr-tweak", {}).get("ebar", -1.0):
        untestable = (f"the unadjusted Ē ({ebar_percent(ours['unadjusted']['ebar'])}) is below the "
                      f"lr-tweak floor ({ebar_percent(ours['lr-tweak']['ebar'])})")
    return (
        PointCheck("A", "baseline Ē / lr-tweak Ē", a, _ebar_ratio(paper, "baseline", "lr-tweak"),
                   f"≤ {POINT_A_MAX:g}", None if a is None else a <= POINT_A_MAX),
        PointCheck("B", "unadjusted Ē / baseline Ē", b, _ebar_ratio(paper, "unadjusted", "baseline"),
                   f"≥ {POINT_B_MIN:g}", None if b is None or untestable else b >= POINT_B_MIN,
                   untestable),
    )


def runs_slope_spread(runs: Iterable[dict[str, Any]]) -> float | None:
    """The smallest ρ recorded by the SGD runs (None if none recorded one)."""
    values = [float(r["slope_spread"]) for r in runs if r["optimizer"] == "sgd" and "slope_spread" in r]
    return min(values) if values else None


def _ebar_ratio(rows: dict[str, dict[str, Any]], num: str, den: str) -> float | None:
    if num not in rows or den not in rows or rows[den]["ebar"] <= 0:
        return None
    return rows[num]["ebar"] / rows[den]["ebar"]

# ------------------------------------------------------------------------------------------ tables


def ebar_percent(ebar: float) -> str:
    """Ē as a percentage with three significant digits, trailing zeros kept: 0.005 → ``0.500%``."""
    pct = 100 * ebar
    if pct == 0 or not math.isfinite(pct):  # a diverged run's nan must not break the report
        return f"{pct:g}%"
    return f"{pct:.{max(2 - math.floor(math.log10(abs(pct))), 0)}f}%"


_FORMATS: dict[str, Callable[[Any], str]] = {
    "text": lambda v: str(v).replace("|", "\\|"),
    "ebar": ebar_percent,
    "pct": lambda v: f"{100 * v:.2f}%",
    "loss": lambda v: f"{v:.4f}",
    "ratio": lambda v: f"{v:.2f}",
    "num": lambda v: f"{v:g}",
}


@dataclass(frozen=True)
class Column:
    """A table column: ``key`` heads the CSV, ``label`` the Markdown; ``kind`` picks the format."""

    key: str
    label: str
    kind: str = "text"


@dataclass(frozen=True)
class Table:
    """A results table; ``rows`` hold raw values (fractions), ``None`` where not available."""

    name: str
    title: str
    columns: tuple[Column, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""

    def markdown(self) -> str:
        """The table as GitHub Markdown (percentages), followed by its note."""
        lines = ["| " + " | ".join(c.label for c in self.columns) + " |",
                 "|" + "|".join("---" if c.kind == "text" else "---:" for c in self.columns) + "|"]
        for row in self.rows:
            cells = ("—" if v is None else _FORMATS[c.kind](v) for c, v in zip(self.columns, row, strict=True))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + (f"\n\n{self.note}" if self.note else "") + "\n"

    def csv(self) -> str:
        """The table as CSV with the raw values (fractions, full precision)."""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(c.key for c in self.columns)
        writer.writerows(["" if v is None else v for v in row] for row in self.rows)
        return buf.getvalue()


def build_tables(runs: Sequence[dict[str, Any]]) -> list[Table]:
    """Tables 3 (with the Point A/B checks), 4 and 5, plus the ablation and lr-sweep tables if run."""
    tables = [_table3(runs), _table3_checks(runs), _table4(runs), _table5(runs)]
    if any(r["experiment"] in ("m-only", "alpha-only") for r in runs):
        tables.append(_ablation(runs))
    if any(r["experiment"] == "lr-sweep" for r in runs):
        tables.append(_lr_sweep(runs))
    return tables


def _get(run: dict[str, Any] | None, *keys: str) -> Any:
    """``run[k0][k1]...``, or ``None`` for a missing run or key."""
    for key in keys:
        if run is None:
            return None
        run = run.get(key)
    return run


def _table3(runs: Sequence[dict[str, Any]]) -> Table:
    paper = PAPER["table4"]["mnist"]["sgd"]
    rows = tuple((exp, desc, _get(find_run(runs, "sgd", exp), "ebar"), paper[exp]["ebar"], why)
                 for exp, (desc, why) in PAPER["table3"].items())
    cols = (Column("experiment", "Experiment"), Column("description", "Description"),
            Column("ebar_ours", "Ē (ours)", "ebar"), Column("ebar_paper", "Ē (paper)", "ebar"),
            Column("interpretation", "Interpretation (paper)"))
    return Table("table3", "Table 3: Ē for SGD + momentum, ours vs the paper's MNIST model", cols, rows)


def _table3_checks(runs: Sequence[dict[str, Any]]) -> Table:
    rows = tuple((f"Point {c.point}", c.ratio, c.ours, c.paper, c.rule, c.verdict)
                 for c in point_checks(summary(runs), runs_slope_spread(runs)))
    cols = (Column("point", "Point"), Column("check", "Check"), Column("ours", "Ours", "ratio"),
            Column("paper", "Paper", "ratio"), Column("rule", "Holds if"), Column("verdict", "Verdict"))
    return Table("table3_checks", "Table 3 checks: Points A and B (SGD)", cols, rows)


def _table4(runs: Sequence[dict[str, Any]]) -> Table:
    paper = PAPER["table4"]
    rows = []
    for opt in OPTIMIZERS:
        for exp in SUMMARY_EXPERIMENTS:
            sources = (find_run(runs, opt, exp), paper["mnist"][opt].get(exp), paper["imagenet"][opt].get(exp))
            if sources[0] or sources[1]:
                cells = (_get(src, key) for key in ("ebar", "agreement") for src in sources)
                rows.append((f"{exp} ({_OPT_TAG[opt]})", *cells))
    cols = (Column("experiment", "Experiment"),
            *(Column(f"{key}_{who.replace(', ', '_').lower()}", f"{label} ({who})", kind)
              for key, label, kind in (("ebar", "Ē", "ebar"), ("agreement", "Agreement", "pct"))
              for who in ("ours", "paper, MNIST", "paper, ImageNet")))
    return Table("table4", "Table 4: alignment metrics, SGD (S) and Adam (A)", cols, tuple(rows),
                 "The paper has no Adam `unadjusted` run: Adam needs no re-initialization.")


def _table5(runs: Sequence[dict[str, Any]]) -> Table:
    rows = []
    for opt in OPTIMIZERS:
        run, paper = find_run(runs, opt, "baseline"), PAPER["table5"]["mnist"][opt]
        ours = {"ste": _get(run, "nets", "b"), "qhat": _get(run, "nets", "a")}
        tag = _OPT_TAG[opt]
        for net, label in (("ste", f"STE ({tag})"), ("qhat", f"Q̂ ({tag})")):
            rows.append((label, *(v for k in _NET_KEYS for v in (_get(ours[net], k), paper[net][k])), ""))
        diff_ours, diff_paper = _diff(ours), _diff(paper)
        rows.append((f"Diff ({tag})", *(v for k in _NET_KEYS for v in (diff_ours[k], diff_paper[k])),
                     _acc_verdict(diff_ours["val_acc"])))
    cols = (Column("net", "Net"),
            *(Column(f"{k}_{who}", f"{k.replace('_', ' ')} ({who})", "pct" if "acc" in k else "loss")
              for k in _NET_KEYS for who in ("ours", "paper")),
            Column("verdict", "Verdict"))
    return Table("table5", "Table 5: Q̂-net vs STE-net (baseline runs), ours vs the paper's MNIST model",
                 cols, tuple(rows), f"Diff = Q̂ − STE; the verdict holds if |Δ val acc| < {100 * VAL_ACC_TOL:g} points. "
                 "The paper's diffs are recomputed from its rounded values.")


def _diff(nets: dict[str, dict[str, Any] | None]) -> dict[str, float | None]:
    """Q̂-net minus STE-net, per metric (``None`` where either is missing)."""
    ste, qhat = nets["ste"], nets["qhat"]
    return {k: None if _get(ste, k) is None or _get(qhat, k) is None else qhat[k] - ste[k] for k in _NET_KEYS}


def _acc_verdict(diff: float | None) -> str:
    if diff is None:
        return "not run"
    return ("holds" if abs(diff) < VAL_ACC_TOL else "fails") + f" (Δ val acc = {100 * diff:+.2f} pts)"


_ABLATION = {
    "baseline": "the paper's twin (for SGD: weights through M, lr × α)",
    "m-only": "weights through M, lr not adjusted",
    "alpha-only": "lr × α, weights not re-initialized",
    "unadjusted": "neither adjustment",
}


def _ablation(runs: Sequence[dict[str, Any]]) -> Table:
    rows = []
    for opt in (o for o in OPTIMIZERS if find_run(runs, o, "m-only") or find_run(runs, o, "alpha-only")):
        base = _get(find_run(runs, opt, "baseline"), "ebar")
        for exp, desc in _ABLATION.items():
            if run := find_run(runs, opt, exp):
                ratio = run["ebar"] / base if base else None
                rows.append((f"{exp} ({_OPT_TAG[opt]})", desc, run["ebar"], run["agreement"], ratio,
                             run["nets"]["a"]["val_acc"], run["nets"]["b"]["val_acc"]))
    cols = (Column("experiment", "Experiment"), Column("description", "STE-net set-up"),
            Column("ebar", "Ē", "ebar"), Column("agreement", "Agreement", "pct"),
            Column("ebar_over_baseline", "Ē / baseline Ē", "ratio"),
            Column("val_acc_qhat", "val acc Q̂", "pct"), Column("val_acc_ste", "val acc STE", "pct"))
    return Table("ablation", "Ablation: which half of Theorem 5.1 carries the alignment", cols, tuple(rows))


def _lr_sweep(runs: Sequence[dict[str, Any]]) -> Table:
    sweep = {(r["optimizer"], float(r["lr_factor"]), r["partner"]): r for r in runs if r["experiment"] == "lr-sweep"}
    rows = []
    for opt, factor in sorted({k[:2] for k in sweep}, key=lambda k: (OPTIMIZERS.index(k[0]), k[1])):
        ste, tweak = sweep.get((opt, factor, "ste")), sweep.get((opt, factor, "lr-tweak"))
        ebar_ste, ebar_tweak = _get(ste, "ebar"), _get(tweak, "ebar")
        ratio = ebar_ste / ebar_tweak if ebar_ste is not None and ebar_tweak else None
        rows.append((opt.upper(), factor, (ste or tweak)["lr"], ebar_ste, ebar_tweak, ratio,
                     _get(ste, "agreement"), _get(tweak, "agreement")))
    cols = (Column("optimizer", "Optimizer"), Column("lr_factor", "lr factor", "num"),
            Column("lr", "Q̂-net lr", "num"), Column("ebar_ste", "Ē STE twin", "ebar"),
            Column("ebar_lr_tweak", "Ē lr-tweak", "ebar"), Column("ratio", "STE / lr-tweak", "ratio"),
            Column("agreement_ste", "Agreement STE twin", "pct"),
            Column("agreement_lr_tweak", "Agreement lr-tweak", "pct"))
    return Table("lr_sweep", "Learning-rate sweep: Ē and agreement vs lr factor", cols, tuple(rows))

# ------------------------------------------------------------------------------------------ report


def write_report(result_dir: str | Path) -> Path:
    """Rebuild ``summary.json``, ``tables/``, ``figures/`` and ``report.md`` from the saved files.

    Returns the path of ``report.md``. Every file is replaced atomically, so rebuilding is safe.
    """
    from ._figures import render_figures  # matplotlib is imported only when a report is drawn

    root = Path(result_dir)
    runs, config = load_runs(root), _read_config(root)
    summ = summary(runs)
    _write_atomic(root / "summary.json", json.dumps(summ, indent=2) + "\n")
    tables = build_tables(runs)
    for table in tables:
        _write_atomic(root / "tables" / f"{table.name}.md", f"# {table.title}\n\n{table.markdown()}")
        _write_atomic(root / "tables" / f"{table.name}.csv", table.csv())
    figures = render_figures(runs)
    for fig in figures:
        _write_atomic(root / "figures" / fig.name, fig.png)
    images = [(fig.caption, f"figures/{fig.name}") for fig in figures]
    if (root / "figures" / "figure1_estimators.png").exists():
        images.insert(0, ("Figure 1: the estimators' surrogates Q̂ and gradients Q̂′", "figures/figure1_estimators.png"))
    text = _report_markdown(root, config, runs, summ, tables, images)
    return _write_atomic(root / "report.md", text)


def _report_markdown(root: Path, config: dict[str, Any], runs: list[dict[str, Any]],
                     summ: dict[str, Any], tables: list[Table], images: list[tuple[str, str]]) -> str:
    """``report.md``: config, Points A and B, every table, the figures and the runs' notes."""
    parts = [f"# stequiv reproduction report: `{root.name}`\n",
             f"{len(runs)} pair runs. Paper numbers are the MNIST model's (ImageNet in Table 4 for "
             "scale); Ē and agreement compare net a (the Q̂-net) with net b (its partner).\n",
             "## Configuration\n", _config_markdown(config),
             "## Points A and B (SGD)\n", _points_markdown(summ, runs_slope_spread(runs))]
    for table in tables:
        parts += [f"## {table.title}\n", table.markdown(), f"CSV: [`tables/{table.name}.csv`](tables/{table.name}.csv)\n"]
    parts += ["## Figures\n", *(f"![{caption}]({path})\n\n*{caption}*\n" for caption, path in images)]
    notes = [f"- `{r['run_id']}`: {r['note']}" for r in runs if r.get("note")]
    parts += ["## Notes\n", "\n".join(notes) + "\n" if notes else "No run left a note.\n"]
    return "\n".join(parts)


def _config_markdown(config: dict[str, Any]) -> str:
    if not config:
        return "No `config.json` in the results folder.\n"
    rows = [f"| `{k}` | {_FORMATS['text'](v if isinstance(v, str) else json.dumps(v))} |" for k, v in config.items()]
    return "\n".join(["| Key | Value |", "|---|---|", *rows]) + "\n"


_POINT_TEXT = {"A": "Q̂-net and STE-net train almost exactly the same way",
               "B": "without the re-initialization by M they do not"}


def _points_markdown(summ: dict[str, Any], slope_spread: float | None) -> str:
    lines = []
    for c in point_checks(summ, slope_spread):
        ours = "not run" if c.ours is None else f"{c.ours:.2f}"
        paper = "—" if c.paper is None else f"{c.paper:.2f}"
        lines.append(f"- **Point {c.point}** ({_POINT_TEXT[c.point]}): {c.ratio} = {ours} "
                     f"(paper: {paper}; holds if {c.rule}): **{c.verdict}**")
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, data: str | bytes) -> Path:
    """Write ``data`` to a temporary file next to ``path``, then :func:`os.replace` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp_name, 0o644)  # mkstemp makes it owner-only; a report is meant to be read
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return path
