"""The ``stequiv`` command line: estimator tables, α and constants, Figure 1, reproductions."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import numpy as np

from . import core

_BITS = click.IntRange(min=1)  # the core names the largest it can evaluate


def _estimator_params(args: list[str]) -> dict[str, float | str]:
    """Parse ``--name value`` pairs left over by click into estimator parameters."""
    params: dict[str, float | str] = {}
    it = iter(args)
    for key in it:
        if not key.startswith("--"):
            raise click.UsageError(f"expected an estimator parameter like `--t 4.0`, got {key!r}")
        value = next(it, None)
        if value is None:
            raise click.UsageError(f"estimator parameter {key} needs a value")
        try:
            params[key[2:].replace("-", "_")] = float(value)
        except ValueError:
            params[key[2:].replace("-", "_")] = value
    return params


@contextlib.contextmanager
def _user_errors(*kinds: type[Exception]) -> Iterator[None]:
    """The library's refusals of the user's input as one clean message (exit status 1)."""
    try:
        yield
    except kinds as err:
        if isinstance(err, OSError) and err.filename is not None:
            raise click.ClickException(f"{err.filename}: {err.strerror}") from err
        raise click.ClickException(str(err)) from err


def _writable_folder(ctx: click.Context, param: click.Parameter, path: Path | None) -> Path | None:
    """An output folder that exists and is writable, or whose nearest existing parent is."""
    if path is None:
        return None
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise click.BadParameter(f"{str(existing)!r} is a file; name a folder", ctx, param)
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        raise click.BadParameter(f"cannot write into {str(existing)!r} ({err.strerror}); name a "
                                 "folder you can write to", ctx, param) from None
    return path


_OUT_FOLDER = click.Path(file_okay=False, path_type=Path)


def _quantizer(bits: int, delta: float | None, offset: float) -> core.UniformQuantizer:
    if bits == 1 and delta is None:
        return core.BinaryQuantizer()
    return core.UniformQuantizer(bits=bits, delta=1.0 if delta is None else delta, offset=offset)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stequiv")
def main() -> None:
    """stequiv: custom gradient estimators are STEs in disguise (arXiv:2405.05171)."""


@main.command("estimators")
@click.option("--bits", type=_BITS, default=2, show_default=True,
              help="Bits of the quantizer used for α.")
@click.option("--delta", type=float, default=None, help="Step Δ (default 1; binary for bits=1).")
@click.option("--offset", default=0.5, show_default=True, help="Zero-point offset z.")
def estimators_cmd(bits: int, delta: float | None, offset: float) -> None:
    """Table of registered estimators: source, properties, α."""
    with _user_errors(ValueError, TypeError, OverflowError):
        q = _quantizer(bits, delta, offset)
    header = f"{'name':<16}{'kind':<11}{'pos':<5}{'bnd':<5}{'lip':<5}{'cyc':<5}{'alpha':<12}source"
    click.echo(header)
    click.echo("-" * len(header))
    for name in core.list_estimators():
        est = core.get_estimator(name)
        try:
            with np.errstate(all="ignore"):  # the core raises for a non-finite α: shown as n/a
                a = f"{float(core.alpha(est, q)):.6g}"
        except (core.NoRemapError, ValueError) as err:
            a = "no M" if isinstance(err, core.NoRemapError) else "n/a"
        flags = "".join(f"{'yes' if v else 'no':<5}" for v in est.properties().values())
        click.echo(f"{name:<16}{est.kind:<11}{flags}{a:<12}{est.reference}")


@main.command("alpha", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name")
@click.option("--bits", required=True, type=_BITS, help="Bits b of the quantizer.")
@click.option("--delta", type=float, default=None, help="Step Δ (default 2/(2^b-1), range [-1,1]).")
@click.option("--offset", default=0.5, show_default=True, help="Zero-point offset z.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def alpha_cmd(ctx: click.Context, name: str, bits: int, delta: float | None, offset: float,
              as_json: bool) -> None:
    """α, L₋, L₊, L′ and the Theorem 5.1 coefficient of estimator NAME.

    Estimator parameters follow as options, e.g. `stequiv alpha htge --bits 2 --t 4`.
    """
    # The core refuses a non-finite α or constant; NumPy's warnings on the way would only repeat it.
    with _user_errors(ValueError, TypeError, OverflowError), np.errstate(all="ignore"):
        est = core.get_estimator(name, **_estimator_params(ctx.args))
        d = 2.0 / (2**bits - 1) if delta is None else delta
        q = core.BinaryQuantizer() if est.kind == "binary" else _quantizer(bits, d, offset)
        result: dict[str, object] = {"estimator": est.describe(), "quantizer": q.describe()}
        result["alpha"] = float(core.alpha(est, q))
        result.update(core.constants(est, q).as_dict())
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        click.echo(f"{key:<12} {value:.6g}" if isinstance(value, float) else f"{key:<12} {value}")


@main.command("plot-estimators")
@click.option("-o", "--out", "out_dir", required=True, type=_OUT_FOLDER,
              callback=_writable_folder, help="Folder for the PNG files.")
@click.option("--name", "names", multiple=True, help="Only these estimators (repeatable).")
def plot_estimators_cmd(out_dir: Path, names: tuple[str, ...]) -> None:
    """Draw the paper's Figure 1 (Q̂ and Q̂′ of each estimator) as PNG."""
    from .plots import plot_estimators

    with _user_errors(ValueError, OSError):
        paths = plot_estimators(out_dir, list(names) or None)
    click.echo(f"wrote {len(paths)} PNG files to {out_dir}")


def _resolve_config(preset: str | None, config_file: Path | None, options: dict[str, Any],
                    sets: tuple[str, ...]):
    """defaults < preset < file < options < ``--set``; a mistake names its key and its source."""
    from .experiments import PRESETS, ConfigError, ExperimentConfig
    from .experiments.config import parse_assignment, read_config_file

    layers: list[tuple[str, dict[str, Any]]] = []
    if preset is not None:
        layers.append((f"preset {preset!r}", dict(PRESETS[preset])))
    if config_file is not None:
        with _user_errors(ConfigError):
            layers.append((str(config_file), read_config_file(config_file)))
    layers += [(f"--{k.replace('_', '-')}", {k: v}) for k, v in options.items() if v is not None]
    for item in sets:
        try:
            key, value = parse_assignment(item)
        except ConfigError as err:
            raise click.UsageError(str(err)) from None
        layers.append((f"--set {item}", {key: value}))
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for origin, values in layers:
        merged.update(values)
        origins.update(dict.fromkeys(values, origin))
    try:
        return ExperimentConfig.from_dict(merged)
    except ConfigError as err:
        raise click.ClickException(str(err.with_origins(origins))) from None


@main.command("reproduce")
@click.option("--out", "out_dir", required=True, type=_OUT_FOLDER, callback=_writable_folder,
              help="Results folder (resumed if it holds the same config).")
@click.option("--quick", is_flag=True, help="Preset: the whole table on 5,000 embedded MNIST digits (~2 min on 2 idle cores).")
@click.option("--preset", type=click.Choice(["quick", "full", "resnet", "resnet50", "lm-quick", "lm",
                                             "activations", "activations-quick", "binary-quick"]),
              default=None,
              help="A named preset (full: Fashion-MNIST; resnet: ResNet-20 with the 10% switch; "
                   "resnet50: ImageNet-style --data-dir, ResNet-50, 100 epochs, for GPUs; "
                   "lm, lm-quick: byte-level transformer on Debian's fortunes at 4 and 2 bits, "
                   "into OUT/4-bit and OUT/2-bit unless bits are given; "
                   "activations(-quick): Section 8 with 4-bit activations; binary-quick: 1-bit "
                   "weights, IR-Net's scheduled EDE).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML/JSON file of config values (applied after the preset).")
@click.option("--dataset", help="mnist-5k | mnist | fashion-mnist | imagefolder | fortunes.")
@click.option("--data-dir", help="Folder holding the IDX files, or (imagefolder) train/ and val/.")
@click.option("--download", is_flag=True, default=None, help="Download MNIST (checksums verified).")
@click.option("--model", help="convnet | resnet20 | resnet18 | resnet34 | resnet50 | "
                               "transformer-tiny | transformer-small.")
@click.option("--epochs", type=int)
@click.option("--bits", type=int)
@click.option("--estimator", help="Q̂ of the Q̂-net (any registered estimator).")
@click.option("--device", help="auto | cpu | cuda.")
@click.option("--set", "sets", multiple=True, help="Any config value, KEY=VALUE (repeatable).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def reproduce_cmd(out_dir: Path, quick: bool, preset: str | None, config_file: Path | None,
                  sets: tuple[str, ...], no_progress: bool, **options: object) -> None:
    """Reproduce Section 6: paired Q̂/STE training, Tables 3-5, Figures 1 and 3, report.md.

    Works under `torchrun --nproc-per-node N -m stequiv reproduce ...` (DistributedDataParallel);
    see docs/distributed.md.
    """
    from .experiments import reproduce, reproduce_bits

    if quick and preset not in (None, "quick"):
        raise click.UsageError("--quick and --preset name different presets; give one")
    config = _resolve_config("quick" if quick else preset, config_file, options, sets)
    sweep = _bits_sweep(preset, config_file, options, sets)
    with _user_errors(ValueError, OSError):
        if sweep:
            summary = reproduce_bits(config, out_dir, sweep, progress=not no_progress)
        else:
            summary = reproduce(config, out_dir, progress=not no_progress)
    if summary:
        click.echo(json.dumps(summary, indent=2))
        folders = [out_dir / f"{b}-bit" for b in sweep] if sweep else [out_dir]
        click.echo("report: " + ", ".join(str(folder / "report.md") for folder in folders))


def _bits_sweep(preset: str | None, config_file: Path | None, options: dict[str, Any],
                sets: tuple[str, ...]) -> tuple[int, ...] | None:
    """The preset's bit widths (``PRESET_BITS``), unless ``--bits``, ``--set bits=`` or the
    config file fixes one (checked already by ``_resolve_config``)."""
    from .experiments import PRESET_BITS
    from .experiments.config import parse_assignment, read_config_file

    if preset not in PRESET_BITS:
        return None
    given = (options.get("bits") is not None
             or any(parse_assignment(item)[0] == "bits" for item in sets)
             or (config_file is not None and "bits" in read_config_file(config_file)))
    return None if given else PRESET_BITS[preset]


@main.command("report")
@click.argument("results_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def report_cmd(results_dir: Path) -> None:
    """Rebuild summary.json, tables, figures and report.md from a results folder's saved files."""
    from .experiments.results import write_report

    with _user_errors(ValueError, OSError):
        path = write_report(results_dir)
    click.echo(f"wrote {path}")


from .cli_study import study_cmd  # noqa: E402  (registered last: a separate module)

main.add_command(study_cmd)
