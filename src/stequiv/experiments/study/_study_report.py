r"""study.csv, bound_check.json, figures and report.md of a study folder, from its saved rows.

Definitions used in the report:

* **Point A holds at η** for a (dataset, estimator, bits, optimizer) series when
  :math:`\bar E_{twin} \le \bar E_{tweak}`: the Q̂-net and its twin are as close as the Q̂-net and
  its 1 % lr-tweak partner (Section 6's reading of "train in almost exactly the same way").
* **η\*** (breakdown) is the smallest η of the series at which Point A fails; a series where it
  never fails is *censored* (η\* > the largest η tried). NaN (diverged) counts as failing.
* **slope**: the least-squares slope of log Ē against log η over the series' finite, positive
  values. Over a fixed number of steps T, Eq. 6's convexity term adds O(η²) per step, so the
  twin's Ē grows like T·η² (slope 2) where that term dominates (the gradient-error term, driven
  by earlier misalignment, can add more); the lr-tweak partner's nets drift apart by about
  0.01·η per step (slope 1). Their ratio then grows like η, and crosses 1 near
  η ≈ 0.01/(coefficient·L₊·|∇f|) (per-step terms compared): Appendix H's coefficient predicts
  η* ∝ 1/coefficient.
* **The optimizer table**: per series, the twin rule and its order as ``to_ste`` states them
  (:func:`~._optimizers.study_rule`), the slope of log Ē_twin against log η over the cells below
  η* (all cells of a censored series), and a verdict from that slope: the rule's order when the
  slope is at least 1.5 (an exact or second-order twin drifts by O(η²) per step: slope 2), *first
  order* for slopes in [0.5, 1.5) (Ē ∝ η: a relative error that does not fall with η), *fails*
  below 0.5 (Ē does not fall with η) or when Point A fails at every η tried (no cell below η*),
  "—" with one cell below η*. ``slope_all``: the slope over every cell of the series.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..results import atomic_write, read_verified
from ._optimizers import study_rule
from ._search import implied_cells
from ._study_config import StudyConfig

__all__ = ["breakdowns", "optimizer_table", "point_a_holds", "read_cell", "read_rows", "slope_verdict",
           "write_study_csv", "write_study_outputs"]

COLUMNS = ("estimator", "params", "bits", "optimizer", "twin_rule", "order", "lr", "model",
           "dataset", "ebar_twin",
           "ebar_tweak", "agreement_twin", "agreement_tweak", "coefficient", "steps",
           "train_loss_q", "train_loss_twin", "train_loss_tweak", "val_loss_q", "val_loss_twin",
           "val_loss_tweak", "val_acc_q", "val_acc_twin", "val_acc_tweak", "seconds")


def read_rows(out: Path, config: StudyConfig) -> list[dict[str, Any]]:
    """The finished cells' rows, in grid order, each verified against ``cells/manifest.json``
    (a changed or unlisted cell is an :class:`~stequiv.experiments.results.IntegrityError`
    naming it; it is never used)."""
    rows = []
    for cell in config.cells():
        path = out / "cells" / f"{cell.cell_id}.json"
        if path.exists():
            rows.append(read_cell(path))
    return rows


def read_cell(path: Path) -> dict[str, Any]:
    """One finished cell's row, verified against ``cells/manifest.json``; a file that is not a
    row is refused by name."""
    remedy = (f"delete {path} and run `stequiv study` with this config into {path.parent.parent} "
              "to train that cell again")
    raw = read_verified(path, remedy, required=True)
    try:
        row = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = f"is not readable JSON ({err})"
    else:
        missing = [c for c in COLUMNS if c != "seconds" and c not in row] if isinstance(
            row, dict) else list(COLUMNS)
        if not missing:
            return row
        problem = f"lacks the column(s) {missing[:5]}{' …' if len(missing) > 5 else ''}"
    raise ValueError(f"the cell file {path} {problem}: it was damaged after stequiv wrote it; "
                     "delete it and run the study again to retrain that cell")


def write_study_csv(out: Path, config: StudyConfig) -> Path:
    """study.csv of the rows so far (atomically)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in read_rows(out, config):
        writer.writerow(row)
    atomic_write(out / "study.csv", buf.getvalue())
    return out / "study.csv"


def _series(rows: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["model"], r["dataset"], r["estimator"], r["bits"], r["optimizer"])].append(r)
    return {k: sorted(v, key=lambda r: r["lr"]) for k, v in groups.items()}


def point_a_holds(r: Mapping[str, Any]) -> bool:
    """Ē_twin ≤ Ē_tweak in a cell's row (NaN: fails)."""
    return bool(r["ebar_twin"] <= r["ebar_tweak"])  # NaN compares False: fails


def _slope(rows: list[dict[str, Any]], key: str) -> float:
    pts = [(math.log(r["lr"]), math.log(r[key])) for r in rows
           if isinstance(r[key], float) and math.isfinite(r[key]) and r[key] > 0]
    if len(pts) < 2:
        return math.nan
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def _below_breakdown(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cells of a series (sorted by η) below its η* (all of them when it is censored)."""
    failing = [r["lr"] for r in series if not point_a_holds(r)]
    return [r for r in series if not failing or r["lr"] < failing[0]]


def slope_verdict(slope: float, order: str, cells: int = 2) -> str:
    """The order a measured slope of log Ē against log η over ``cells`` cells below η* shows
    (module docstring)."""
    if cells == 0:
        return "fails"
    if not math.isfinite(slope):
        return "—"
    if slope >= 1.5:
        return order if order in ("exact", "second order") else "second order"
    return "first order" if slope >= 0.5 else "fails"


def optimizer_table(rows: list[dict[str, Any]], config: StudyConfig) -> list[dict[str, Any]]:
    """One entry per series: optimizer → twin rule → order → measured slope → verdict."""
    out = []
    for (model, dataset, est, bits, opt), series in _series(rows).items():
        rule = study_rule(opt, config.hyper)
        below = _below_breakdown(series)
        slope = _slope(below, "ebar_twin")
        out.append({"optimizer": opt, "twin_rule": rule.rule, "order": rule.order, "slope": slope,
                    "verdict": slope_verdict(slope, rule.order, len(below)), "cells": len(below),
                    "slope_all": _slope(series, "ebar_twin"),
                    "model": model, "dataset": dataset, "estimator": est, "bits": bits})
    return out


def breakdowns(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per series: η*, whether censored, the coefficient, slopes (module docstring)."""
    out = []
    for (model, dataset, est, bits, opt), series in _series(rows).items():
        failing = [r["lr"] for r in series if not point_a_holds(r)]
        held = [r for r in series if point_a_holds(r)]
        out.append({"model": model, "dataset": dataset, "estimator": est, "bits": bits, "optimizer": opt,
                    "eta_star": failing[0] if failing else None,
                    "max_lr": series[-1]["lr"], "coefficient": series[0]["coefficient"],
                    "held_below_eta_star": all(point_a_holds(r) for r in series
                                               if not failing or r["lr"] < failing[0]),
                    "slope_twin": _slope(series, "ebar_twin"),
                    "slope_tweak": _slope(series, "ebar_tweak"),
                    "slope_twin_where_A_holds": _slope(held, "ebar_twin"),
                    "agreement_twin_at_min_lr": series[0]["agreement_twin"],
                    "points": len(series)})
    return out


def _figures(out: Path, rows: list[dict[str, Any]], table: list[dict[str, Any]],
             optimizers: list[dict[str, Any]]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    series = _series(rows)
    panels = sorted({(k[2], k[3]) for k in series})
    cols = min(4, len(panels)) or 1
    nrows = math.ceil(len(panels) / cols) or 1
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3.2 * nrows), squeeze=False)
    for ax, (est, bits) in zip(axes.flat, panels, strict=False):
        for (model, dataset, e, b, opt), s in series.items():
            if (e, b) == (est, bits):
                ratio = [r["ebar_twin"] / r["ebar_tweak"] if r["ebar_tweak"] else math.nan for r in s]
                ax.loglog([r["lr"] for r in s], ratio, "o-", label=f"{opt} {model} {dataset}")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set(title=f"{est} {bits}-bit", xlabel="η", ylabel="Ē_twin / Ē_tweak")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(fig_dir / "ebar_ratio_vs_lr.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4))
    for n, opt in enumerate(dict.fromkeys(t["optimizer"] for t in table)):
        marker = "osDvph*<>X"[n % 10]
        pts = [(t["coefficient"], t["eta_star"] or t["max_lr"], t["eta_star"] is None)
               for t in table if t["optimizer"] == opt and math.isfinite(t["coefficient"])
               and t["coefficient"] > 0]
        for censored in (False, True):
            sel = [(c, e) for c, e, cen in pts if cen == censored]
            if sel:
                c, e = zip(*sel, strict=True)
                ax.scatter(c, e, marker="^" if censored else marker, color=f"C{n % 10}",
                           facecolors="none" if censored else None, label=f"{opt}{' (η* > max η)' if censored else ''}")
    ax.set(xscale="log", yscale="log", xlabel="Appendix H coefficient L′L₊/(2L₋²) (Δ = 1)",
           ylabel="breakdown η*")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(fig_dir / "eta_star_vs_coefficient.png", dpi=110)
    plt.close(fig)
    _optimizer_figure(plt, fig_dir / "ebar_vs_lr_by_optimizer.png", series, optimizers)
    return ["figures/ebar_ratio_vs_lr.png", "figures/eta_star_vs_coefficient.png",
            "figures/ebar_vs_lr_by_optimizer.png"]


def _optimizer_figure(plt: Any, path: Path, series: dict[tuple, list[dict[str, Any]]],
                      optimizers: list[dict[str, Any]]) -> None:
    """Ē_twin against η, one panel per (model, dataset, estimator, bits), one line per optimizer
    with its slope below η* in the legend (hollow markers: cells at or above η*)."""
    slopes = {(t["model"], t["dataset"], t["estimator"], t["bits"], t["optimizer"]): t["slope"]
              for t in optimizers}
    panels = sorted({k[:4] for k in series}, key=str)
    cols = min(2, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(8 * cols, 5 * nrows), squeeze=False)
    colors = plt.get_cmap("tab20").colors
    for ax, panel in zip(axes.flat, panels, strict=False):
        for n, (key, s) in enumerate((k, v) for k, v in series.items() if k[:4] == panel):
            below = {id(r) for r in _below_breakdown(s)}
            color = colors[n % len(colors)]
            slope = f"{slopes[key]:.2f}" if math.isfinite(slopes[key]) else "— (Point A fails at every η)"
            ax.loglog([r["lr"] for r in s], [r["ebar_twin"] for r in s], "-", color=color,
                      label=f"{key[4]} (slope {slope})")
            out = [r for r in s if id(r) not in below]
            ax.loglog([r["lr"] for r in s if id(r) in below],
                      [r["ebar_twin"] for r in s if id(r) in below], "o", color=color)
            ax.loglog([r["lr"] for r in out], [r["ebar_twin"] for r in out], "o", color=color,
                      mfc="none")
        model, dataset, est, bits = panel
        ax.set(title=f"{est} {bits}-bit, {model}, {dataset}", xlabel="η", ylabel="Ē (Q̂-net, twin)")
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.3g}"
    return str(x)


BREAKDOWN_COLUMNS = ("model", "dataset", "estimator", "bits", "optimizer", "coefficient", "eta_star",
                     "max_lr", "points", "slope_twin", "slope_tweak", "slope_twin_where_A_holds",
                     "agreement_twin_at_min_lr")


def coefficient_correlation(table: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per optimizer, Spearman's rank correlation of η* with Appendix H's coefficient over the
    series whose coefficient is > 0 (a censored η* ranks above every η tried). Appendix H predicts
    η* ∝ 1/coefficient: a correlation near −1."""
    from scipy.stats import spearmanr

    out: dict[str, dict[str, float]] = {}
    for opt in dict.fromkeys(t["optimizer"] for t in table):
        pts = [(t["coefficient"], t["eta_star"] if t["eta_star"] is not None else math.inf)
               for t in table if t["optimizer"] == opt and t["coefficient"] > 0]
        if len(pts) >= 3 and len({c for c, _ in pts}) > 1 and len({e for _, e in pts}) > 1:
            rho = float(spearmanr(*zip(*pts, strict=True)).statistic)
            out[opt] = {"series": len(pts), "spearman": rho}
    return out


def breakdowns_markdown(table: list[dict[str, Any]]) -> str:
    """The per-series table (η*, coefficient, slopes) as Markdown (``breakdowns.md``), and the
    rank correlation of η* with the coefficient per optimizer."""
    lines = ["| " + " | ".join(BREAKDOWN_COLUMNS) + " |", "|" + "---|" * len(BREAKDOWN_COLUMNS)]
    lines += ["| " + " | ".join(_fmt(t[c]) for c in BREAKDOWN_COLUMNS) + " |" for t in table]
    corr = coefficient_correlation(table)
    if corr:
        parts = [f"{opt} {c['spearman']:+.2f} over {c['series']} series" for opt, c in corr.items()]
        lines += ["", "Rank correlation (Spearman) of η* with the coefficient, series with a "
                  "coefficient > 0 (a censored η* ranks above every η tried): " + "; ".join(parts)
                  + "."]
    return "\n".join(lines) + "\n"


def optimizers_markdown(optimizers: list[dict[str, Any]]) -> str:
    """The optimizer table as Markdown (``optimizers.md`` of the study folder)."""
    cols = ("optimizer", "twin_rule", "order", "slope", "verdict", "cells", "slope_all", "estimator",
            "bits", "model", "dataset")
    lines = ["| " + " | ".join(c.replace("_", " ") for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(t[c]).replace("|", "\\|") for c in cols) + " |"
              for t in optimizers]
    return "\n".join(lines) + "\n"


def _search_note(config: StudyConfig, implied: int) -> list[str]:
    """What the adaptive η search left out, for report.md (nothing for a dense grid)."""
    if config.search == "grid":
        return []
    return [f"Adaptive η search (`search: bisect`): each series trained the ends of its η ladder, "
            f"then bisected it for η*; {implied} cells of the grid were left out as implied "
            "(Point A assumed to hold below η* and to fail above it; a series whose trained cells "
            "break that shows `held_below_eta_star` false in summary.json).", ""]


def _report(config: StudyConfig, rows: list[dict[str, Any]], table: list[dict[str, Any]],
            optimizers: list[dict[str, Any]], bound: dict[str, Any], figures: list[str],
            implied: int = 0) -> str:
    lines = [f"# stequiv study: {len(rows)} of {len(config.cells())} cells", "",
             f"{', '.join(config.models)}; {config.steps} steps of batch {config.batch_size}, "
             f"lr-tweak × {config.lr_tweak}; "
             "Point A holds at η when Ē_twin ≤ Ē_tweak; η* is the smallest η where it fails "
             "(— : it held at every η tried).", "", *_search_note(config, implied),
             breakdowns_markdown(table).rstrip("\n")]
    lines += ["", "Per optimizer: the twin rule of `to_ste`, its order, the slope of log Ē_twin "
              "against log η below η*, and the order that slope shows (optimizers.md).", "",
              optimizers_markdown(optimizers).rstrip("\n")]
    lines += ["", f"Theorem check (bound_check.json): {bound['checks']} checks, "
              f"{bound['violations']} violations, smallest tightness {bound['tightness_min']:.3g}.",
              ""]
    lines += [f"![{f}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def _implied(out: Path, config: StudyConfig) -> list[tuple[Any, bool]]:
    """The cells a finished bisection left out, with their implied answer (grid: none)."""
    if config.search == "grid":
        return []

    def row(cell: Any) -> dict[str, Any] | None:
        path = out / "cells" / f"{cell.cell_id}.json"
        return read_cell(path) if path.exists() else None
    return implied_cells(config.cells(), row, point_a_holds)


def write_study_outputs(out: Path, config: StudyConfig, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """study.csv, bound_check.json (computed once), figures, report.md; returns the summary."""
    from ...theory import bound_check

    write_study_csv(out, config)
    bound_path = out / "bound_check.json"
    if not bound_path.exists():
        atomic_write(bound_path, json.dumps(bound_check(), indent=2))
    bound = json.loads(bound_path.read_text())
    table = breakdowns(rows)
    optimizers = optimizer_table(rows, config)
    figures = _figures(out, rows, table, optimizers) if rows else []
    atomic_write(out / "optimizers.md", optimizers_markdown(optimizers))
    atomic_write(out / "breakdowns.md", breakdowns_markdown(table))
    implied = len(_implied(out, config))
    atomic_write(out / "report.md", _report(config, rows, table, optimizers, bound, figures, implied))
    summary = {"cells": len(rows), "of": len(config.cells()), "implied": implied, "breakdowns": table,
               "coefficient_correlation": coefficient_correlation(table),
               "optimizers": optimizers,
               "bound_check": {k: bound[k] for k in ("checks", "violations", "tightness_min")}}
    atomic_write(out / "summary.json", json.dumps(summary, indent=2))
    return summary
