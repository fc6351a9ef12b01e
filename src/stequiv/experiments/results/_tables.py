"""Tables 3–5, the ablation and the lr sweep, built from the saved runs: Markdown and CSV.

Ē, agreement and accuracies are fractions in the data (``0.00515`` is 0.515 %); the Markdown
tables print percentages, the CSV files the raw fractions.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import OPTIMIZERS, PROTOCOL, STE
from ._paper import PAPER
from ._runs import NET_KEYS, find_run
from ._summary import SUMMARY_EXPERIMENTS, ebar_percent, point_checks, runs_slope_spread, summary

__all__ = ["FORMATS", "Column", "Table", "build_tables"]

VAL_ACC_TOL = 0.005  # Table 5: |val acc(Q̂) − val acc(STE)| below half a point
_OPT_TAG = {"sgd": "S", "adam": "A"}


FORMATS: dict[str, Callable[[Any], str]] = {
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
            cells = ("—" if v is None else FORMATS[c.kind](v) for c, v in zip(self.columns, row, strict=True))
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
    if any(r["experiment"] in ABLATIONS for r in runs):
        tables.append(_ablation(runs))
    if any(r["experiment"] == "lr-sweep" for r in runs):
        tables.append(_lr_sweep(runs))
    if any(r.get("clip_grad_norm") is not None or r.get("ema_decay") is not None for r in runs):
        tables.append(_habits(runs))
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
            rows.append((label, *(v for k in NET_KEYS for v in (_get(ours[net], k), paper[net][k])), ""))
        diff_ours, diff_paper = _diff(ours), _diff(paper)
        rows.append((f"Diff ({tag})", *(v for k in NET_KEYS for v in (diff_ours[k], diff_paper[k])),
                     _acc_verdict(diff_ours["val_acc"])))
    cols = (Column("net", "Net"),
            *(Column(f"{k}_{who}", f"{k.replace('_', ' ')} ({who})", "pct" if "acc" in k else "loss")
              for k in NET_KEYS for who in ("ours", "paper")),
            Column("verdict", "Verdict"))
    return Table("table5", "Table 5: Q̂-net vs STE-net (baseline runs), ours vs the paper's MNIST model",
                 cols, tuple(rows), f"Diff = Q̂ − STE; the verdict holds if |Δ val acc| < {100 * VAL_ACC_TOL:g} points. "
                 "The paper's diffs are recomputed from its rounded values.")


def _diff(nets: dict[str, dict[str, Any] | None]) -> dict[str, float | None]:
    """Q̂-net minus STE-net, per metric (``None`` where either is missing)."""
    ste, qhat = nets["ste"], nets["qhat"]
    return {k: None if _get(ste, k) is None or _get(qhat, k) is None else qhat[k] - ste[k] for k in NET_KEYS}


def _acc_verdict(diff: float | None) -> str:
    if diff is None:
        return "not run"
    return ("holds" if abs(diff) < VAL_ACC_TOL else "fails") + f" (Δ val acc = {100 * diff:+.2f} pts)"


#: The experiments that keep one of Theorem 5.1's two adjustments (M, α): the ablations.
ABLATIONS = tuple(e.name for e in PROTOCOL.values()
                  if e.selectable and e.partner == STE and e.remap != e.scale_lr)


def _ablation_rows() -> list[tuple[str, str]]:
    """The STE-twin experiments, from both of Theorem 5.1's adjustments (M, α) to neither."""
    rows = [e for e in PROTOCOL.values() if e.partner == STE and e.selectable]
    return [(e.name, e.setup) for e in sorted(rows, key=lambda e: (not e.remap, not e.scale_lr))]


def _ablation(runs: Sequence[dict[str, Any]]) -> Table:
    rows = []
    for opt in (o for o in OPTIMIZERS if any(find_run(runs, o, exp) for exp in ABLATIONS)):
        base = _get(find_run(runs, opt, "baseline"), "ebar")
        for exp, desc in _ablation_rows():
            if run := find_run(runs, opt, exp):
                ratio = run["ebar"] / base if base else None
                rows.append((f"{exp} ({_OPT_TAG[opt]})", desc, run["ebar"], run["agreement"], ratio,
                             run["nets"]["a"]["val_acc"], run["nets"]["b"]["val_acc"]))
    cols = (Column("experiment", "Experiment"), Column("description", "STE-net set-up"),
            Column("ebar", "Ē", "ebar"), Column("agreement", "Agreement", "pct"),
            Column("ebar_over_baseline", "Ē / baseline Ē", "ratio"),
            Column("val_acc_qhat", "val acc Q̂", "pct"), Column("val_acc_ste", "val acc STE", "pct"))
    return Table("ablation", "Ablation: which half of Theorem 5.1 carries the alignment", cols, tuple(rows))


def _habits(runs: Sequence[dict[str, Any]]) -> Table:
    """Ē of every run with the config's clipping and EMA, and Ē between the two EMA copies."""
    rows = []
    for run in runs:
        ebar, ema = run["ebar"], run.get("ebar_ema")
        rows.append((f"{run['run_id']}", run.get("clip_grad_norm"), run.get("ema_decay"), ebar,
                     run["agreement"], ema, run.get("agreement_ema"),
                     ema / ebar if ema is not None and ebar else None))
    cols = (Column("run", "Run"), Column("clip_grad_norm", "clip τ", "num"),
            Column("ema_decay", "EMA d", "num"), Column("ebar", "Ē", "ebar"),
            Column("agreement", "Agreement", "pct"), Column("ebar_ema", "Ē (EMA)", "ebar"),
            Column("agreement_ema", "Agreement (EMA)", "pct"),
            Column("ema_over_ebar", "Ē (EMA) / Ē", "ratio"))
    return Table("habits", "Clipping and weight EMA: Ē of the nets and of their EMA copies", cols,
                 tuple(rows), "Clipped runs scale every STE partner's gradients by the Q̂-net's clip "
                 "coefficient (`sq.qat.clip_grad_norm_pair_`); lr-tweak partners clip by their own "
                 "norm. The EMA copies start at the switch.")


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
