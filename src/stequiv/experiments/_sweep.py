"""One reproduction per bit width: the ``lm`` presets run at 4 and at 2 bits."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._config import ExperimentConfig

__all__ = ["reproduce_bits"]


def reproduce_bits(config: ExperimentConfig, out_dir: str | Path, bits: Sequence[int],
                   **kwargs: Any) -> dict[str, Any]:
    """:func:`~stequiv.experiments.reproduce` of ``config`` at each of ``bits``, into
    ``out_dir/<b>-bit`` (each a complete results folder: config, runs, tables, figures, report).

    Returns ``{"<b>-bit": summary}``. ``kwargs`` go to ``reproduce`` (``progress``, ``dist``).
    """
    from . import reproduce  # looked up at call time, so that a patched `reproduce` is used

    if not bits:
        raise ValueError("`bits` must name at least one bit width")
    return {f"{b}-bit": reproduce(ExperimentConfig.from_dict({**config.to_dict(), "bits": b}),
                                  Path(out_dir) / f"{b}-bit", **kwargs) for b in bits}
