"""``stequiv export``: a ``stequiv.save`` checkpoint of a stequiv model, exported to a format."""

from __future__ import annotations

from pathlib import Path

import click
import torch

from ..models import LM_SIZES, build_model, list_models
from ..qat import load
from ._registry import export, export_formats

__all__ = ["export_command"]


def _example(model_name: str, shape: str | None) -> torch.Tensor | None:
    """The ONNX example batch: zeros of ``shape`` (token ids for the language models)."""
    if shape is None:
        return None
    try:
        dims = tuple(int(d) for d in shape.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated sizes like 1,1,28,28, got {shape!r}",
                                 param_hint="--input-shape") from None
    lm = model_name in LM_SIZES
    return torch.zeros(dims, dtype=torch.long) if lm else torch.zeros(dims)


@click.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("output", type=click.Path(path_type=Path))
@click.option("--model", "model_name", required=True, type=click.Choice(list_models()),
              help="The network the checkpoint holds (stequiv.models.build_model name).")
@click.option("--format", "fmt", type=click.Choice(sorted(export_formats())),
              default="safetensors", show_default=True, help="The export format.")
@click.option("--num-classes", type=int, default=None,
              help="Output classes (default 10; the language models' vocabulary: 256).")
@click.option("--in-channels", type=int, default=1, show_default=True, help="Input channels.")
@click.option("--input-shape", default=None,
              help="ONNX only: the traced batch's shape, e.g. 1,1,28,28 (language models: 1,64).")
def export_command(checkpoint: Path, output: Path, model_name: str, fmt: str,
                   num_classes: int | None, in_channels: int, input_shape: str | None) -> None:
    """Export the quantized network in CHECKPOINT (written by stequiv.save) to OUTPUT.

    The network is rebuilt by name, quantized as the checkpoint records, converted to integer
    codes and written; the command prints the layers, their bits and the size before and after.
    """
    classes = num_classes if num_classes is not None else (256 if model_name in LM_SIZES else 10)
    example = _example(model_name, input_shape)
    try:
        model = build_model(model_name, num_classes=classes, in_channels=in_channels)
        load(checkpoint, model)
        result = export(model, output, format=fmt, example=example)
    except (ValueError, RuntimeError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(result.describe())
    for name, bits in result.bits.items():
        click.echo(f"  {name}: {bits} bit{'s' if bits > 1 else ''}")
