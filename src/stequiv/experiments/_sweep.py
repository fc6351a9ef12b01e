"""One reproduction per bit width (the ``lm`` presets run at 4 and at 2 bits), and their overview.

Each width is a complete results folder ``OUT/<b>-bit`` (config, runs, tables, figures, report);
``OUT/overview.md`` puts the widths side by side: Ē, agreement, and each net's validation loss
with its perplexity :math:`\\exp(\\text{loss})` (per target: per byte for text), then Points A and B.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import ExperimentConfig

__all__ = ["overview", "reproduce_bits"]

_ROWS = (("sgd", "baseline"), ("sgd", "lr-tweak"), ("sgd", "unadjusted"), ("adam", "baseline"),
         ("adam", "lr-tweak"))


def reproduce_bits(config: ExperimentConfig, out_dir: str | Path, bits: Sequence[int],
                   **kwargs: Any) -> dict[str, Any]:
    """:func:`~stequiv.experiments.reproduce` of ``config`` at each of ``bits``, into
    ``out_dir/<b>-bit``, then ``out_dir/overview.md`` (:func:`overview`).

    Returns ``{"<b>-bit": summary}``. ``kwargs`` go to ``reproduce`` (``progress``, ``dist``).
    """
    from . import reproduce  # looked up at call time, so that a patched `reproduce` is used

    if not bits:
        raise ValueError("`bits` must name at least one bit width")
    out = Path(out_dir)
    summaries = {f"{b}-bit": reproduce(ExperimentConfig.from_dict({**config.to_dict(), "bits": b}),
                                       out / f"{b}-bit", **kwargs) for b in bits}
    if any(summaries.values()):  # rank 0 (the others return an empty summary)
        (out / "overview.md").write_text(overview(out, bits), encoding="utf-8")
    return summaries


def _loss(value: float) -> str:
    return f"{value:.4f} ({math.exp(value):.2f})"


def overview(out_dir: str | Path, bits: Sequence[int]) -> str:
    """A Markdown table of every width's runs, and the Point A/B checks of each width."""
    from .results import ebar_percent, find_run, load_runs, point_checks, summary

    lines = ["| bits | optimizer | experiment | Ē | agreement | val loss (ppl) Q̂-net "
             "| val loss (ppl) partner |", "|---|---|---|---|---|---|---|"]
    checks = []
    for b in bits:
        folder = Path(out_dir) / f"{b}-bit"
        runs = load_runs(folder)
        decay = json.loads((folder / "config.json").read_text()).get("weight_decay")
        names = {"sgd": "SGD", "adam": "AdamW" if decay else "Adam"}
        for opt, exp in _ROWS:
            if run := find_run(runs, opt, exp):
                a, p = run["nets"]["a"]["val_loss"], run["nets"]["b"]["val_loss"]
                lines.append(f"| {b} | {names[opt]} | {exp} "
                             f"| {ebar_percent(run['ebar'])} | {100 * run['agreement']:.2f}% "
                             f"| {_loss(a)} | {_loss(p)} |")
        checks += [f"- {b} bits, Point {c.point} ({c.ratio} {c.rule}): "
                   f"{'—' if c.ours is None else f'{c.ours:.2f}'}, {c.verdict}"
                   for c in point_checks(summary(runs))]
    return "\n".join(["# Bit widths side by side", "", *lines, "", *checks, ""])
