"""The report's figures, drawn from the saved run files only: Figure 3, Ē(t), agreement(t), lr sweep.

Each figure is rendered in memory (a bare :class:`matplotlib.figure.Figure`, no pyplot state and no
global backend switch) and returned as PNG bytes; :func:`~._report.write_report` writes them. The
run files are read through :mod:`._runs`.
Subsampling uses a fixed seed, so a rebuild draws the same points.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from ..config import LR_TWEAK, OPTIMIZERS, PROTOCOL, STE
from ._runs import find_run, read_metrics, read_weights
from ._summary import ebar_percent

__all__ = ["NOT_DRAWN", "RenderedFigure", "render_figures"]

MAX_POINTS = 20_000  # Figure 3 scatter: enough to show the shape, small enough to stay a light PNG
_DPI = 100


# Every figure render_figures can draw (file name under figures/) and why it is absent when it is
# not: the report says so, and a rebuild removes an older PNG of it (never a stale figure).
NOT_DRAWN = {
    "figure3_weights.png": "Figure 3: no SGD `baseline` or `unadjusted` run saved a weights.npz",
    "ebar_curves.png": "Ē(t): no run saved a metrics.csv with measurements",
    "agreement_curves.png": "agreement(t): no run saved a metrics.csv with measurements",
    "lr_sweep.png": "the lr sweep: the config ran no `lr_sweep` factors",
}


@dataclass(frozen=True)
class RenderedFigure:
    """A figure ready to write: ``name`` is its file name under ``figures/``."""

    name: str
    caption: str
    png: bytes


def render_figures(runs: Sequence[dict[str, Any]], config: Mapping[str, Any]) -> list[RenderedFigure]:
    """Every figure the runs have data for (a figure whose files are all missing is skipped);
    ``config`` is the folder's config.json (``{}`` if it has none)."""
    figures = [
        _figure3(runs),
        _curves(runs, "ebar", "ebar_curves.png", "Ē(t): normalized weight alignment error during training"),
        _curves(runs, "agreement", "agreement_curves.png", "Quantized weight agreement during training"),
        _sweep(runs, config.get("lr_tweak")),
    ]
    return [f for f in figures if f is not None]


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()

# --------------------------------------------------------------------------------------- Figure 3

_FIG3_PANELS = (("baseline", "(a) default SGD"),
                ("unadjusted", "(b) without re-initializing STE-net weights"))


def _figure3(runs: Sequence[dict[str, Any]]) -> RenderedFigure | None:
    """Figure 3: M(w_Q̂) vs w_STE at the end of training, SGD baseline and unadjusted side by side."""
    panels = [(run, w, title) for exp, title in _FIG3_PANELS
              if (run := find_run(runs, "sgd", exp)) and (w := read_weights(run)) is not None]
    if not panels:
        return None
    fig = Figure(figsize=(5.2 * len(panels), 5.0), layout="constrained")
    for ax, (run, w, title) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        _weights_panel(ax, run, w, title)
    return RenderedFigure("figure3_weights.png", "Figure 3: Q̂-net weights vs STE-net weights at the end "
                          "of training (SGD)", _png(fig))


def _subsample(n: int) -> np.ndarray:
    """At most :data:`MAX_POINTS` sorted indices out of ``n``, the same ones on every rebuild."""
    if n <= MAX_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, MAX_POINTS, replace=False))


def _weights_panel(ax: Axes, run: dict[str, Any], w: dict[str, np.ndarray], title: str) -> None:
    """One scatter, coloured by layer, with the y = x line and the bin boundaries.

    Weights are drawn in units of their layer's step Δ, so that every layer's boundaries fall on
    the same lines and layers with small weights are as visible as the others.
    """
    x, y, layer = w["x"].astype(np.float64), w["y"].astype(np.float64), w["layer"]
    idx = _subsample(len(x))
    drawn: set[float] = set()
    for i, name in enumerate(w["layer_names"]):
        bounds = np.asarray(w.get(f"boundaries_{i}", ()), dtype=np.float64).ravel()
        step = float(np.diff(bounds).min()) if bounds.size > 1 else 1.0
        sel = idx[layer[idx] == i]
        ax.scatter(x[sel] / step, y[sel] / step, s=2, alpha=0.4, color=f"C{i}", label=str(name),
                   rasterized=True, lw=0)
        for b in np.round(bounds / step, 6):
            if b not in drawn:
                drawn.add(b)
                ax.axvline(b, color="0.5", lw=0.6, ls=":")
                ax.axhline(b, color="0.5", lw=0.6, ls=":")
        x[layer == i] /= step
        y[layer == i] /= step
    lo, hi = float(min(x.min(), y.min())), float(max(x.max(), y.max()))
    ax.plot([lo, hi], [lo, hi], color="k", lw=0.8, label="$y = x$")
    ax.set_xlabel((r"$M(w_{\hat{Q}})$: $\hat{Q}$-net, remapped" if run["remap"]
                   else r"$w_{\hat{Q}}$: $\hat{Q}$-net") + r" (units of $\Delta$)")
    ax.set_ylabel(r"$w_{STE}$: STE-net (units of $\Delta$)")
    ax.set_title(f"{title}\n" + rf"$\bar{{E}}$ = {ebar_percent(float(run['ebar']))}", fontsize=9)
    ax.legend(fontsize=7, markerscale=3, loc="upper left")

# ------------------------------------------------------------------------------------------ curves


def _curves(runs: Sequence[dict[str, Any]], key: str, name: str, caption: str) -> RenderedFigure | None:
    """``key`` against the training step, one panel per optimizer; Ē on a log axis."""
    series = [(run, m) for run in runs if (m := read_metrics(run)) is not None and len(m["step"])]
    opts = [opt for opt in OPTIMIZERS if any(run["optimizer"] == opt for run, _ in series)]
    if not opts:
        return None
    fig = Figure(figsize=(6.0 * len(opts), 4.2), layout="constrained")
    for ax, opt in zip(fig.subplots(1, len(opts), squeeze=False)[0], opts, strict=True):
        _curves_panel(ax, [s for s in series if s[0]["optimizer"] == opt], key)
        ax.set_title(opt.upper(), fontsize=10)
    return RenderedFigure(name, caption, _png(fig))


def _curves_panel(ax: Axes, series: list[tuple[dict[str, Any], dict[str, np.ndarray]]], key: str) -> None:
    """The main experiments in fixed colours, the lr-sweep runs as thin grey dashes behind them."""
    log, scale = key == "ebar", (100.0 if key == "ebar" else 1.0)  # Ē in percent, as in the paper
    main, sweep = [], []
    for run, m in sorted(series, key=lambda s: _order(s[0])):
        keep = np.isfinite(m[key]) & (m[key] > 0 if log else True)
        is_sweep = run["experiment"] == "lr-sweep"
        style = {"color": "0.6", "lw": 0.7, "ls": "--", "zorder": 1} if is_sweep else \
            {"color": PROTOCOL[run["experiment"]].color, "lw": 1.8, "zorder": 2}
        label = "lr-sweep runs" if is_sweep else run["experiment"]
        (sweep if is_sweep else main).extend(ax.plot(m["step"][keep], scale * m[key][keep], label=label, **style))
    switches = sorted({int(run.get("switch_step", 0)) for run, _ in series} - {0})
    marks = [ax.axvline(step, color="k", lw=0.8, ls=":", label="switch to the partner")
             for step in switches]
    if log and any(len(line.get_xdata()) for line in main + sweep):  # else a log axis only warns
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(r"$\bar{E}$ (%)" if log else "quantized weight agreement")
    ax.legend(handles=main + sweep[:1] + marks[:1], fontsize=7)  # one grey entry for the sweep


def _order(run: dict[str, Any]) -> tuple[bool, str]:
    """Main experiments in the order of their colours (C0, C1, ...), then the sweep."""
    return run["experiment"] == "lr-sweep", PROTOCOL[run["experiment"]].color

# ---------------------------------------------------------------------------------------- lr sweep


def _sweep(runs: Sequence[dict[str, Any]], lr_tweak: float | None) -> RenderedFigure | None:
    """Final Ē against the lr factor, log-log, one line per optimizer and partner (the lr-tweak
    partner labelled with the configured ``lr_tweak``, if the folder's config gives it)."""
    sweep = [r for r in runs if r["experiment"] == "lr-sweep" and float(r["ebar"]) > 0]
    if not sweep:
        return None
    tweak = "the lr-tweak partner" if lr_tweak is None else PROTOCOL[LR_TWEAK].describe(lr_tweak)
    tweak_label = rf"$\hat{{Q}}$ vs {tweak}"
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for opt in OPTIMIZERS:
        for partner, label in ((STE, r"$\hat{Q}$ vs STE twin"), (LR_TWEAK, tweak_label)):
            pts = sorted((float(r["lr_factor"]), float(r["ebar"])) for r in sweep
                         if r["optimizer"] == opt and r["partner"] == partner)
            if pts:
                xs, ys = zip(*pts, strict=True)
                ax.plot(xs, 100 * np.array(ys), marker="o", label=f"{opt.upper()}: {label}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    factors = sorted({float(r["lr_factor"]) for r in sweep})
    ax.set_xticks(factors, [f"×{f:g}" for f in factors])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(r"learning-rate factor (of the $\hat{Q}$-net's default lr)")
    ax.set_ylabel(r"final $\bar{E}$ (%)")
    ax.legend(fontsize=7)
    return RenderedFigure("lr_sweep.png", "Final Ē against the learning-rate factor (log-log)", _png(fig))
