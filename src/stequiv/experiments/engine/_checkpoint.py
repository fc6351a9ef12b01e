"""A group's checkpoint: written atomically with its SHA-256 in ``manifest.json``, read back verified.

A checkpoint is resumed only if its bytes are the ones stequiv wrote (digest and size in the
manifest beside it) and they unpickle with ``torch.load(..., weights_only=True)`` (tensors and
plain containers only: no code runs while loading). Anything else — a changed byte, a truncated,
empty or foreign file, a lost manifest — stops with one :class:`~._runs.IntegrityError` naming the
file and the remedy, before any of it is used.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ..results import IntegrityError, read_verified, write_with_manifest

__all__ = ["load_checkpoint", "save_checkpoint"]


def _remedy(path: Path) -> str:
    return f"delete {path} to restart that group from its first step"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically, then the folder's manifest (listing only it)."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_with_manifest(path.parent, {path.name: buf.getvalue()})


def load_checkpoint(path: Path, map_location: torch.device) -> dict[str, Any]:
    """The verified state saved at ``path`` by :func:`save_checkpoint`."""
    raw = read_verified(path, _remedy(path), required=True)
    try:
        state = torch.load(io.BytesIO(raw), map_location=map_location, weights_only=True)
    # torch.load reports a damaged or foreign file with many types (RuntimeError, EOFError,
    # UnpicklingError, ...): whichever it is, the answer to the user is the same.
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise IntegrityError(f"{path} is not a readable stequiv checkpoint ({reason}); "
                             f"{_remedy(path)}") from err
    if not isinstance(state, dict):
        raise IntegrityError(f"{path} holds a {type(state).__name__}, not a stequiv checkpoint; "
                             f"{_remedy(path)}")
    return state
