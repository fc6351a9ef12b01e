"""``stequiv report``: rebuild a results folder's summary, tables, figures and report."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import user_errors

__all__ = ["report_cmd"]


@click.command("report")
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def report_cmd(results_dir: Path) -> None:
    """Rebuild summary.json, tables, figures and report.md from a results folder's saved files."""
    from ..experiments.results import write_report

    with user_errors(ValueError, OSError):
        path = write_report(results_dir)
    click.echo(f"wrote {path}")
