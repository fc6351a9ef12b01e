"""``stequiv estimators``: the table of registered estimators."""

from __future__ import annotations

import click
import numpy as np

from .. import core
from ._common import BITS, user_errors

__all__ = ["estimators_cmd", "quantizer"]


def quantizer(bits: int, delta: float | None, offset: float) -> core.UniformQuantizer:
    """The uniform grid of ``bits`` bits (step ``delta``, default 1), or the binary one (1 bit)."""
    if bits == 1 and delta is None:
        return core.BinaryQuantizer()
    return core.UniformQuantizer(bits=bits, delta=1.0 if delta is None else delta, offset=offset)


@click.command("estimators")
@click.option("--bits", type=BITS, default=2, show_default=True,
              help="Bits of the quantizer used for α.")
@click.option("--delta", type=float, default=None, help="Step Δ (default 1; binary for bits=1).")
@click.option("--offset", default=0.5, show_default=True, help="Zero-point offset z.")
def estimators_cmd(bits: int, delta: float | None, offset: float) -> None:
    """Table of registered estimators: source, properties, α."""
    with user_errors(ValueError, TypeError, OverflowError):
        q = quantizer(bits, delta, offset)
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
