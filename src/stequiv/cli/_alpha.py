"""``stequiv alpha``: α and the constants of one estimator, its parameters given as options."""

from __future__ import annotations

import json

import click
import numpy as np

from .. import core
from ._common import BITS, user_errors
from ._estimators import quantizer

__all__ = ["alpha_cmd", "estimator_params"]


def _value(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def estimator_params(args: list[str]) -> dict[str, float | str]:
    """Estimator parameters from the options click left over: ``--t 4``, ``--t=4`` (numbers
    where they parse as one, else text; ``--some-name`` is the parameter ``some_name``)."""
    params: dict[str, float | str] = {}
    it = iter(args)
    for item in it:
        if not item.startswith("--") or item == "--":
            raise click.UsageError(f"expected an estimator parameter like `--t 4.0` or `--t=4.0`, "
                                   f"got {item!r}")
        key, sep, value = item[2:].partition("=")
        if not sep:
            given = next(it, None)
            if given is None:
                raise click.UsageError(f"estimator parameter --{key} needs a value (`--{key} 4.0` "
                                       f"or `--{key}=4.0`)")
            value = given
        name = key.replace("-", "_")
        if name in params:
            raise click.UsageError(f"estimator parameter --{key} is given twice; give it once")
        params[name] = _value(value)
    return params


@click.command("alpha", context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name")
@click.option("--bits", required=True, type=BITS, help="Bits b of the quantizer.")
@click.option("--delta", type=float, default=None, help="Step Δ (default 2/(2^b-1), range [-1,1]).")
@click.option("--offset", default=0.5, show_default=True, help="Zero-point offset z.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def alpha_cmd(ctx: click.Context, name: str, bits: int, delta: float | None, offset: float,
              as_json: bool) -> None:
    """α, L₋, L₊, L′ and the Theorem 5.1 coefficient of estimator NAME.

    Estimator parameters follow as options, e.g. `stequiv alpha htge --bits 2 --t 4` or `--t=4`.
    """
    # The core refuses a non-finite α or constant; NumPy's warnings on the way would only repeat it.
    with user_errors(ValueError, TypeError, OverflowError), np.errstate(all="ignore"):
        est = core.get_estimator(name, **estimator_params(ctx.args))
        if est.kind == "binary" and (bits != 1 or delta is not None):
            raise click.UsageError(
                f"{est.describe()} is a binary estimator: it runs on the 1-bit sign quantizer "
                f"(BinaryQuantizer, no Δ), not on {bits} bits"
                + ("" if delta is None else f" with --delta {delta:g}")
                + "; give --bits 1 (and no --delta), or a multi-bit estimator")
        d = 2.0 / (2**bits - 1) if delta is None else delta
        q = core.BinaryQuantizer() if est.kind == "binary" else quantizer(bits, d, offset)
        result: dict[str, object] = {"estimator": est.describe(), "quantizer": q.describe()}
        result["alpha"] = float(core.alpha(est, q))
        result.update(core.constants(est, q).as_dict())
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        click.echo(f"{key:<12} {value:.6g}" if isinstance(value, float) else f"{key:<12} {value}")
