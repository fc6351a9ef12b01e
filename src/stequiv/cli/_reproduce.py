"""``stequiv reproduce``: every pair of Section 6 on real data, then tables, figures and report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ._common import OUT_FOLDER, RegistryChoice, assignments, user_errors, writable_folder

__all__ = ["reproduce_cmd"]


def _preset_names() -> list[str]:
    from ..experiments import PRESETS

    return list(PRESETS)


def _resolve(preset: str | None, config_file: Path | None, options: dict[str, Any],
             sets: tuple[str, ...]):
    """defaults < preset < file < options < ``--set`` (the config's one resolver)."""
    from ..experiments import PRESETS, ConfigError, ExperimentConfig
    from ..experiments.config import resolve

    try:
        return resolve(ExperimentConfig.from_dict, PRESETS, preset, config_file, options, sets)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None


def _bits_sweep(resolved: Any) -> tuple[int, ...] | None:
    """The preset's bit widths (``PRESET_BITS``), unless the user gave ``bits``."""
    from ..experiments import PRESET_BITS

    if resolved.preset not in PRESET_BITS or resolved.given("bits"):
        return None
    return PRESET_BITS[resolved.preset]


def _print_summary(folder: Path, summary: dict[str, Any]) -> None:
    from ..experiments.results import load_runs, point_checks, runs_slope_spread, summary_table

    checks = point_checks(summary, runs_slope_spread(load_runs(folder)))
    click.echo(summary_table(summary, checks))
    click.echo(f"report: {folder / 'report.md'} (numbers: {folder / 'summary.json'})")


def _stop_with_plan(config: Any) -> None:
    """Print what the class-default run would train and how long it takes, and stop."""
    from .. import experiments

    with user_errors(ValueError, OSError):
        plan = experiments.plan(config)
    click.echo(plan.text())
    click.echo("not started: no preset, config file or `epochs` was given, so this is the "
               f"default schedule ({config.epochs} epochs). Start it with --yes, or choose a "
               "preset (--quick: the whole table on 5,000 MNIST digits in minutes).", err=True)
    sys.exit(1)


@click.command("reproduce")
@click.option("--out", "out_dir", required=True, type=OUT_FOLDER, callback=writable_folder,
              help="Results folder (resumed if it holds the same config).")
@click.option("--quick", is_flag=True,
              help="Preset 'quick': the whole table on 5,000 embedded MNIST digits.")
@click.option("--preset", type=RegistryChoice(_preset_names), default=None,
              help="A named preset of config values (the config reference lists each one's "
                   "values); `--plan` shows what it trains and how long.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML/JSON file of config values (applied after the preset).")
@click.option("--dataset", help="Dataset: a name of stequiv.data.list_datasets(), 'fortunes' (text) "
                                "or 'imagefolder' (with --data-dir).")
@click.option("--data-dir", help="Folder holding the IDX files, or (imagefolder) train/ and val/.")
@click.option("--download", is_flag=True, default=None, help="Download MNIST (checksums verified).")
@click.option("--model", help="Model: a name of stequiv.models.list_models().")
@click.option("--epochs", type=int, help="Training epochs of every net (the config's `epochs`).")
@click.option("--bits", type=int, help="Bits of the weight grid (the config's `bits`).")
@click.option("--estimator", help="Q̂ of the Q̂-net (any registered estimator).")
@click.option("--device", help="auto | cpu | cuda.")
@click.option("--set", "sets", multiple=True, callback=assignments, help="Any config value, KEY=VALUE (repeatable).")
@click.option("--plan", "plan_only", is_flag=True,
              help="Print the groups, nets and steps and the estimated time (measured on a few "
                   "steps here); train nothing.")
@click.option("--yes", is_flag=True,
              help="Start a run that uses the default schedule (no preset, config file or "
                   "`epochs` given) instead of printing its plan.")
@click.option("--no-progress", is_flag=True, help="No progress bar or group lines.")
def reproduce_cmd(out_dir: Path, quick: bool, preset: str | None, config_file: Path | None,
                  sets: tuple[str, ...], plan_only: bool, yes: bool, no_progress: bool,
                  **options: object) -> None:
    """Reproduce Section 6: paired Q̂/STE training, Tables 3-5, Figures 1 and 3, report.md.

    Works under `torchrun --nproc-per-node N -m stequiv reproduce ...` (DistributedDataParallel).
    """
    from .. import experiments

    if quick and preset not in (None, "quick"):
        raise click.UsageError("--quick and --preset name different presets; give one")
    resolved = _resolve("quick" if quick else preset, config_file, options, sets)
    config = resolved.config
    if plan_only:
        with user_errors(ValueError, OSError):
            click.echo(experiments.plan(config).text())
        return
    if resolved.preset is None and not resolved.given("epochs") and not yes:
        _stop_with_plan(config)
    sweep = _bits_sweep(resolved)
    with user_errors(ValueError, OSError):
        if sweep:
            summaries = experiments.reproduce_bits(config, out_dir, sweep, progress=not no_progress)
        else:
            summaries = {"": experiments.reproduce(config, out_dir, progress=not no_progress)}
    for sub, summary in summaries.items():
        if summary:  # rank 0 (the other ranks return an empty summary)
            if sub:
                click.echo(f"\n{sub}:")
            _print_summary(out_dir / sub if sub else out_dir, summary)
    experiments.end_worker_process()  # under torchrun: exit without gloo's teardown
