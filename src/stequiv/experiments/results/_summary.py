"""``summary.json`` (a stable interface) and the computed checks of the paper's Points A and B."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...qat.internal import NEARLY_STE
from ..config import OPTIMIZERS, PROTOCOL
from ._paper import PAPER
from ._runs import find_run

__all__ = [
    "POINT_A_MAX",
    "POINT_B_MIN",
    "SUMMARY_EXPERIMENTS",
    "PointCheck",
    "ebar_percent",
    "point_checks",
    "runs_slope_spread",
    "summary",
    "summary_table",
]

POINT_A_MAX = 1.5  # baseline Ē / lr-tweak Ē: the STE swap is "about as impactful" as a 1 % lr change
POINT_B_MIN = 3.0  # unadjusted Ē / baseline Ē: skipping M must clearly break the alignment
SUMMARY_EXPERIMENTS = tuple(name for name, e in PROTOCOL.items() if e.in_summary)


def ebar_percent(ebar: float) -> str:
    """Ē as a percentage with three significant digits, trailing zeros kept: 0.005 → ``0.500%``."""
    pct = 100 * ebar
    if pct == 0 or not math.isfinite(pct):  # a diverged run's nan must not break the report
        return f"{pct:g}%"
    return f"{pct:.{max(2 - math.floor(math.log10(abs(pct))), 0)}f}%"


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

    Point B cannot be tested (the verdict says why, ``holds`` None) when the estimator is the STE
    to within 1 % over the initial weights (``slope_spread`` ρ = max/min Q̂′ ≤ 1.01, recorded by
    the runs), or when the unadjusted twin's Ē is below the lr-tweak floor: then nothing the twin
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
        untestable = (f"the unadjusted Ē ({100 * ours['unadjusted']['ebar']:.3g}%) is below the "
                      f"lr-tweak floor ({100 * ours['lr-tweak']['ebar']:.3g}%)")
    return (
        PointCheck("A", "baseline Ē / lr-tweak Ē", a, _ebar_ratio(paper, "baseline", "lr-tweak"),
                   f"≤ {POINT_A_MAX:g}", None if a is None else a <= POINT_A_MAX),
        PointCheck("B", "unadjusted Ē / baseline Ē", b, _ebar_ratio(paper, "unadjusted", "baseline"),
                   f"≥ {POINT_B_MIN:g}", None if b is None or untestable else b >= POINT_B_MIN,
                   untestable),
    )


def runs_slope_spread(runs: Iterable[dict[str, Any]]) -> float | None:
    """The smallest ρ recorded by the SGD runs (None if none recorded one).

    ρ = ∞ (Q̂′ = 0 at some initial weight, e.g. HTGE outside the range) is written as JSON null.
    """
    values = [math.inf if r["slope_spread"] is None else float(r["slope_spread"])
              for r in runs if r["optimizer"] == "sgd" and "slope_spread" in r]
    return min(values) if values else None


def _ebar_ratio(rows: dict[str, dict[str, Any]], num: str, den: str) -> float | None:
    if num not in rows or den not in rows or rows[den]["ebar"] <= 0:
        return None
    return rows[num]["ebar"] / rows[den]["ebar"]


def summary_table(summ: dict[str, dict[str, dict[str, Any]]],
                  checks: Iterable[PointCheck] = ()) -> str:
    """The summary of a run as a table for the terminal: Ē, agreement and both nets' validation
    accuracy for each optimizer and experiment, then the Point A/B checks."""
    head = f"{'optimizer':<10}{'experiment':<13}{'Ē':>10}{'agreement':>11}{'val acc Q̂':>11}" \
           f"{'partner':>9}"
    lines = [head, "-" * len(head)]
    for opt, rows in summ.items():
        for exp, row in rows.items():
            qhat, partner = row["val_acc"]
            lines.append(f"{opt:<10}{exp:<13}{ebar_percent(row['ebar']):>10}"
                         f"{100 * row['agreement']:>10.3f}%{100 * qhat:>10.2f}%"
                         f"{100 * partner:>8.2f}%")
    lines += [f"Point {c.point} ({c.ratio} {c.rule}): "
              f"{'—' if c.ours is None else f'{c.ours:.2f}'}, {c.verdict}" for c in checks]
    return "\n".join(lines)
