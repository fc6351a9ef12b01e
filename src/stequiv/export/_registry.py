"""``export``: one verb, a registry of formats (adding a format is one entry here and its module)."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ._compressed import write_compressed_tensors
from ._files import converted_copy, float_bytes
from ._gguf import write_gguf
from ._onnx import write_onnx
from ._safetensors import save_integer

__all__ = ["ExportResult", "Format", "export", "export_formats"]


@dataclass(frozen=True)
class Format:
    """An export format: its writer ``(converted model, path, example) -> path`` and a summary.

    ``example`` is an input batch for formats that trace the model (None for the others).
    """

    name: str
    write: Callable[[nn.Module, Path, Any], Path]
    summary: str


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote: the path, the format, each weight's bits and the sizes."""

    path: Path
    format: str
    bits: dict[str, int]  # quantized weight name -> bits of its grid
    float_bytes: int  # the weights as floats (quantized ones at their scale's dtype)
    file_bytes: int  # on disk (a folder: all its files)

    def describe(self) -> str:
        """A few lines for people: what was written, how many layers at which bits, the sizes."""
        counts: dict[int, int] = {}
        for b in self.bits.values():
            counts[b] = counts.get(b, 0) + 1
        by_bits = ", ".join(f"{n} at {b} bit{'s' if b > 1 else ''}" for b, n in sorted(counts.items()))
        return (f"{self.format}: {self.path}\n  {len(self.bits)} quantized weights ({by_bits})\n"
                f"  size {self.float_bytes:,} bytes as floats -> {self.file_bytes:,} bytes "
                f"({self.file_bytes / self.float_bytes:.3f}x)")


_FORMATS: dict[str, Format] = {}


def register_format(fmt: Format) -> None:
    """Add a format (its name must be new)."""
    if fmt.name in _FORMATS:
        raise ValueError(f"export format {fmt.name!r} is registered already")
    _FORMATS[fmt.name] = fmt


for _fmt in (
    Format("safetensors", lambda model, path, example: save_integer(model, path),
           "stequiv's integer model: packed codes and Δ (load with load_integer)"),
    Format("onnx", write_onnx,
           "ONNX QDQ: int4/int8/int16 initializers read by DequantizeLinear (needs example)"),
    Format("gguf", write_gguf,
           "GGUF: Q4_0/Q8_0 blocks (train with QuantConfig.for_format('gguf-q4_0'))"),
    Format("compressed-tensors", write_compressed_tensors,
           "Hugging Face folder, pack-quantized Linear weights (from_pretrained loads it)"),
):
    register_format(_fmt)


def export_formats() -> dict[str, str]:
    """``{name: summary}`` of every export format."""
    return {name: fmt.summary for name, fmt in _FORMATS.items()}


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def export(model: nn.Module, path: str | os.PathLike, format: str = "safetensors", *,
           example: Any = None) -> ExportResult:
    """Write a fake-quantized or converted ``model`` to ``path`` in ``format``; see
    :func:`export_formats`. A fake-quantized model is converted on a copy (the argument is left
    as it is). ``example`` is an input batch, for formats that trace the model (ONNX). Every format holds the integer codes and Δ exactly, or the export is refused with
    the format's limit and a fitting :class:`~stequiv.qat.QuantConfig`.
    """
    if format not in _FORMATS:
        close = difflib.get_close_matches(str(format), list(_FORMATS), n=1)
        raise ValueError(f"`format` must be one of {sorted(_FORMATS)}, got {format!r}"
                         + (f"; did you mean {close[0]!r}?" if close else ""))
    converted, layers = converted_copy(model)
    bits = {name: (il.weight.upper - il.weight.lower + 1).bit_length() - 1
            for name, il in layers.items()}
    written = _FORMATS[format].write(converted, Path(path), example)
    return ExportResult(written, format, bits, float_bytes(converted), _size(written))
