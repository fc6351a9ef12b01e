"""The ``stequiv`` command line: estimator tables, α and constants, Figure 1, reproductions."""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import core


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


def _quantizer(bits: int, delta: float | None, offset: float) -> core.UniformQuantizer:
    if bits == 1 and delta is None:
        return core.BinaryQuantizer()
    return core.UniformQuantizer(bits=bits, delta=1.0 if delta is None else delta, offset=offset)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stequiv")
def main() -> None:
    """stequiv: custom gradient estimators are STEs in disguise (arXiv:2405.05171)."""


@main.command("estimators")
@click.option("--bits", default=2, show_default=True, help="Bits of the quantizer used for α.")
@click.option("--delta", type=float, default=None, help="Step Δ (default 1; binary for bits=1).")
@click.option("--offset", default=0.5, show_default=True, help="Zero-point offset z.")
def estimators_cmd(bits: int, delta: float | None, offset: float) -> None:
    """Table of registered estimators: source, properties, α."""
    q = _quantizer(bits, delta, offset)
    header = f"{'name':<16}{'kind':<11}{'pos':<5}{'bnd':<5}{'lip':<5}{'cyc':<5}{'alpha':<12}source"
    click.echo(header)
    click.echo("-" * len(header))
    for name in core.list_estimators():
        est = core.get_estimator(name)
        try:
            a = f"{float(core.alpha(est, q)):.6g}"
        except (core.NoRemapError, ValueError) as err:
            a = "no M" if isinstance(err, core.NoRemapError) else "n/a"
        flags = "".join(f"{'yes' if v else 'no':<5}" for v in est.properties().values())
        click.echo(f"{name:<16}{est.kind:<11}{flags}{a:<12}{est.reference}")


@main.command("alpha", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name")
@click.option("--bits", required=True, type=int, help="Bits b of the quantizer.")
@click.option("--delta", type=float, default=None, help="Step Δ (default 2/(2^b-1), range [-1,1]).")
@click.option("--offset", default=0.5, show_default=True, help="Zero-point offset z.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def alpha_cmd(ctx: click.Context, name: str, bits: int, delta: float | None, offset: float,
              as_json: bool) -> None:
    """α, L₋, L₊, L′ and the Theorem 5.1 coefficient of estimator NAME.

    Estimator parameters follow as options, e.g. `stequiv alpha htge --bits 2 --t 4`.
    """
    try:
        est = core.get_estimator(name, **_estimator_params(ctx.args))
        d = 2.0 / (2**bits - 1) if delta is None else delta
        q = core.BinaryQuantizer() if est.kind == "binary" else _quantizer(bits, d, offset)
        result: dict[str, object] = {"estimator": est.describe(), "quantizer": q.describe()}
        result["alpha"] = float(core.alpha(est, q))
        result.update(core.constants(est, q).as_dict())
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        click.echo(f"{key:<12} {value:.6g}" if isinstance(value, float) else f"{key:<12} {value}")


@main.command("plot-estimators")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(path_type=Path),
              help="Folder for the PNG files.")
@click.option("--name", "names", multiple=True, help="Only these estimators (repeatable).")
def plot_estimators_cmd(out_dir: Path, names: tuple[str, ...]) -> None:
    """Draw the paper's Figure 1 (Q̂ and Q̂′ of each estimator) as PNG."""
    from .plots import plot_estimators

    try:
        paths = plot_estimators(out_dir, list(names) or None)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"wrote {len(paths)} PNG files to {out_dir}")
