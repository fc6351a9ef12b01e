"""The ``stequiv study`` command (registered by :mod:`stequiv.cli`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

__all__ = ["study_cmd"]


def _resolve(preset: str, config_file: Path | None, sets: tuple[str, ...]):
    """defaults < preset < file < ``--set``; a mistake is a clean error naming the key."""
    from .experiments.config import ConfigError, parse_assignment, read_config_file
    from .experiments.study import STUDY_PRESETS, StudyConfig

    merged: dict[str, Any] = dict(STUDY_PRESETS[preset])
    try:
        if config_file is not None:
            merged.update(read_config_file(config_file))
        for item in sets:
            key, value = parse_assignment(item)
            merged[key] = value
        return StudyConfig.from_dict(merged)
    except (ConfigError, ValueError, TypeError) as err:
        raise click.ClickException(str(err)) from None


@click.command("study")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Study folder (resumed if it holds the same config).")
@click.option("--quick", is_flag=True, help="Preset: 64 cells on MNIST-5k (≤ 10 min on 2 cores).")
@click.option("--preset", type=click.Choice(["quick", "full"]), default=None,
              help="A named preset (full: ConvNet and ResNet-20, MNIST-5k and Fashion-MNIST, 7 "
                   "estimator entries, bits 1/2/4/8, 800 cells).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML/JSON file of study config values (applied after the preset).")
@click.option("--set", "sets", multiple=True, help="Any study config value, KEY=VALUE (repeatable).")
@click.option("--max-minutes", type=float, default=None,
              help="Refuse (before training) a grid that would take longer, measured on this machine.")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Worker processes training batches of cells at once (the rows do not depend on it).")
@click.option("--report-only", is_flag=True,
              help="Write study.csv, figures and report.md of the cells finished so far; train nothing.")
@click.option("--no-progress", is_flag=True, help="No progress lines.")
def study_cmd(out_dir: Path, quick: bool, preset: str | None, config_file: Path | None,
              sets: tuple[str, ...], max_minutes: float | None, workers: int,
              report_only: bool, no_progress: bool) -> None:
    """Alignment against learning rate: a grid of Q̂/STE/lr-tweak cells, study.csv, figures, report.md."""
    from .experiments.study import report_study, run_study

    if quick and preset not in (None, "quick"):
        raise click.UsageError("--quick and --preset name different presets; give one")
    config = _resolve("quick" if quick else (preset or "full"), config_file, sets)
    try:
        summary = report_study(config, out_dir) if report_only else run_study(
            config, out_dir, max_minutes=max_minutes, progress=not no_progress, workers=workers)
    except (ValueError, OSError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(json.dumps({k: summary[k] for k in ("cells", "of", "bound_check")}, indent=2))
    click.echo(f"report: {out_dir / 'report.md'}")
