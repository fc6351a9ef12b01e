"""``stequiv study``: alignment against learning rate over a grid of cells."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import OUT_FOLDER, RegistryChoice, assignments, user_errors, writable_folder

__all__ = ["study_cmd"]


def _preset_names() -> list[str]:
    from ..experiments.study import STUDY_PRESETS

    return list(STUDY_PRESETS)


def _resolve(preset: str, config_file: Path | None, sets: tuple[str, ...]):
    """defaults < preset < file < ``--set`` (the config's one resolver)."""
    from ..experiments.config import ConfigError, resolve
    from ..experiments.study import STUDY_PRESETS, StudyConfig

    try:
        return resolve(StudyConfig.from_dict, STUDY_PRESETS, preset, config_file, None, sets).config
    except ConfigError as err:
        raise click.ClickException(str(err)) from None


@click.command("study")
@click.option("--out", "out_dir", required=True, type=OUT_FOLDER, callback=writable_folder,
              help="Study folder (resumed if it holds the same config).")
@click.option("--quick", is_flag=True, help="Preset 'quick': 64 cells on MNIST-5k.")
@click.option("--preset", type=RegistryChoice(_preset_names), default=None,
              help="A named preset of study config values (default: full, the whole grid: "
                   "ConvNet and ResNet-20, MNIST-5k and Fashion-MNIST, 800 cells).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML/JSON file of study config values (applied after the preset).")
@click.option("--set", "sets", multiple=True, callback=assignments, help="Any study config value, KEY=VALUE (repeatable).")
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
    from ..experiments.study import report_study, run_study

    if quick and preset not in (None, "quick"):
        raise click.UsageError("--quick and --preset name different presets; give one")
    config = _resolve("quick" if quick else (preset or "full"), config_file, sets)
    with user_errors(ValueError, OSError):
        summary = report_study(config, out_dir) if report_only else run_study(
            config, out_dir, max_minutes=max_minutes, progress=not no_progress, workers=workers)
    bound = summary["bound_check"]
    click.echo(f"{summary['cells']} of {summary['of']} cells; theorem check: {bound['checks']} "
               f"checks, {bound['violations']} violations, tightness ≥ {bound['tightness_min']:.3g}")
    click.echo(f"report: {out_dir / 'report.md'} (rows: {out_dir / 'study.csv'})")
