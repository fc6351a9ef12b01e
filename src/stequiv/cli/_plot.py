"""``stequiv plot-estimators``: the paper's Figure 1 as PNG files."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import OUT_FOLDER, user_errors, writable_folder

__all__ = ["plot_estimators_cmd"]


@click.command("plot-estimators")
@click.option("-o", "--out", "out_dir", required=True, type=OUT_FOLDER,
              callback=writable_folder, help="Folder for the PNG files.")
@click.option("--name", "names", multiple=True,
              help="Only these estimators (repeatable; default: every one `stequiv estimators` lists).")
def plot_estimators_cmd(out_dir: Path, names: tuple[str, ...]) -> None:
    """Draw the paper's Figure 1 (Q̂ and Q̂′ of each estimator) as PNG."""
    from ..plots import plot_estimators

    with user_errors(ValueError, OSError):
        paths = plot_estimators(out_dir, list(names) or None)
    click.echo(f"wrote {len(paths)} PNG files to {out_dir}")
