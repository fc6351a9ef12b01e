"""The recovery run folder: ``summary.json`` (rows), ``report.md`` (table) and ``recovery.png``.

Every file is written atomically (temporary file, fsync, rename); ``summary.json`` carries the
sha256 of the other two, so a reader can check that the table and figure belong to the rows.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from .._atomic import write_atomic

__all__ = ["read_summary", "write_report"]

SUMMARY, REPORT, FIGURE = "summary.json", "report.md", "recovery.png"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of the rows."""
    head = ("| network | bits | optimizer | estimator | float | PTQ | QAT | recovery | STE twin QAT "
            "| twin recovery | Ē | agreement | Ē of EMAs |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k), 2 if k.startswith("ebar") else 3) for k in (
            "network", "bits", "optimizer", "estimator", "float", "ptq", "qat", "recovery",
            "twin_qat", "twin_recovery", "ebar", "agreement", "ebar_ema")) + " |")
    return "\n".join(lines)


def points_table(points: list[dict[str, Any]]) -> str:
    """The Markdown table of the Points A/B rows."""
    keys = ("network", "bits", "optimizer", "estimator", "ebar_twin", "ebar_lr_tweak",
            "ebar_unadjusted", "point_a", "point_b", "ebar_own_clip")
    lines = ["| network | bits | optimizer | estimator | Ē twin | Ē lr × 1.01 | Ē unadjusted "
             "| A: twin / lr-tweak | B: unadjusted / twin | Ē twin, own clip |",
             "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(_fmt(p[k]) for k in keys) + " |" for p in points]
    return "\n".join(lines)


def _figure(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    panels = sorted({(r["network"], r["optimizer"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    for ax, (net, opt) in zip(axes[0], panels, strict=True):
        mine = [r for r in rows if (r["network"], r["optimizer"]) == (net, opt)]
        for est in dict.fromkeys(r["estimator"] for r in mine):
            pts = sorted((r["bits"], r["recovery"]) for r in mine
                         if r["estimator"] == est and r["recovery"] is not None)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=est)
        ax.axhline(1.0, color="grey", lw=0.5)
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set(title=f"{net}, {opt}", xlabel="bits", ylabel="recovery")
        ax.set_xticks(sorted({r["bits"] for r in mine}))
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, dpi=110, metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        plt.close(fig)


def write_report(out: Path, summary: dict[str, Any], command: str) -> dict[str, Any]:
    """Write the figure, the report and ``summary.json`` (last, with their sha256) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    rows = summary["recovery"]
    _figure(rows, out / FIGURE)
    missing = [r for r in rows if r["recovery"] is None]
    text = "\n".join([
        f"# Recovery: {summary['preset']['name']}", "",
        f"Made by `{command}`.", "",
        "recovery = (QAT − PTQ)/(float − PTQ); – where PTQ lost less than the network's minimum "
        f"gap ({len(missing)} of {len(rows)} rows). Custom estimators ran beside their STE twin "
        "(same batches, optimizer, schedule): `STE twin QAT` is the twin's metric, Ē and "
        "agreement compare the pair's weights at the end.", "",
        table(rows), "", f"![recovery against bits]({FIGURE})", "",
        "## Points A and B in fine-tuning", "",
        "Point A: the twin's Ē over the floor of training noise (the Q̂-net with lr × 1.01); "
        "holds at ≤ 1.5. Point B (SGD): the unadjusted STE net's Ē over the twin's; holds at ≥ 3. "
        "Last column: the twin trained alone, clipped by its own gradient norm instead of the "
        "Q̂-net's clip factor.",
        "", points_table(summary.get("points", [])), ""])
    write_atomic(out / REPORT, text.encode())
    summary = dict(summary, files={name: hashlib.sha256((out / name).read_bytes()).hexdigest()
                                   for name in (REPORT, FIGURE)})
    write_atomic(out / SUMMARY, (json.dumps(summary, indent=1, allow_nan=False) + "\n").encode())
    return summary


def read_summary(out: Path) -> dict[str, Any]:
    """``summary.json`` of a run folder, the report and figure checked against its sha256."""
    summary = json.loads((out / SUMMARY).read_text())
    for name, digest in summary["files"].items():
        if hashlib.sha256((out / name).read_bytes()).hexdigest() != digest:
            raise ValueError(f"{out / name} does not match the sha256 recorded in {SUMMARY}; "
                             "rerun `stequiv recovery`")
    return summary
