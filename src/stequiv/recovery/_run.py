"""``run_recovery``: one preset → a run folder with summary.json, report.md and recovery.png."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch

from ._protocol import PRESETS, RecoveryPreset, run_rows
from ._report import write_report

__all__ = ["run_recovery"]


def resolve(preset: str | RecoveryPreset) -> RecoveryPreset:
    """A preset by name (``recovery-quick``, ``recovery``) or as given."""
    if isinstance(preset, RecoveryPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {sorted(PRESETS)}, got {preset!r}")
    return PRESETS[preset]


def run_recovery(preset: str | RecoveryPreset, out: Path) -> dict[str, Any]:
    """Run the recovery protocol of ``preset`` and write its folder ``out``; returns the summary
    (``summary["recovery"]``: one row per network × bits × optimizer × estimator)."""
    resolved = resolve(preset)
    out = Path(out)
    threads = torch.get_num_threads()
    if resolved.threads is not None:
        torch.set_num_threads(resolved.threads)
    try:
        rows, points = run_rows(resolved, out)
    finally:
        torch.set_num_threads(threads)
    summary = {"preset": resolved.to_dict(), "recovery": rows, "points": points,
               "environment": {"torch": torch.__version__, "python": platform.python_version(),
                               "threads": resolved.threads or threads}}
    command = f"stequiv recovery --preset {resolved.name} --out {out}"
    return write_report(out, summary, command)
