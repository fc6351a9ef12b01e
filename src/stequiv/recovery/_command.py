"""``recovery_command``: the click command ``stequiv recovery --preset NAME --out DIR``."""

from __future__ import annotations

from pathlib import Path

import click

from ._protocol import PRESETS
from ._run import run_recovery

__all__ = ["recovery_command"]


@click.command("recovery")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default="recovery-quick",
              show_default=True, help="recovery-quick: bits 4 and 2, short fine-tuning; "
                                      "recovery: bits 8, 4, 3 and 2, longer fine-tuning.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: summary.json, report.md, recovery.png.")
def recovery_command(preset: str, out: Path) -> None:
    """From pretrained networks: float, PTQ and QAT (STE and custom estimators beside their STE
    twins), and recovery = (QAT − PTQ)/(float − PTQ)."""
    summary = run_recovery(preset, out)
    done = [r for r in summary["recovery"] if r["recovery"] is not None]
    click.echo(f"{len(summary['recovery'])} rows ({len(done)} with a gap to recover) in {out}")
