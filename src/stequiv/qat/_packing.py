r"""Pack small unsigned integers into bytes: 8, 4, 2 or 1 bit per code, little end first.

A code u ∈ [0, 2^w) of width w ∈ {1, 2, 4, 8} is stored in byte ``i // (8/w)`` at bit
``(i mod 8/w)·w``: two 4-bit codes per byte (the first in the low nibble), four 2-bit codes, eight
1-bit codes. The last byte is padded with zero bits. :func:`unpack` inverts :func:`pack` exactly.
"""

from __future__ import annotations

import torch

__all__ = ["WIDTHS", "pack", "unpack", "width_for"]

WIDTHS = (1, 2, 4, 8)


def width_for(levels: int) -> int:
    """The smallest storage width w ∈ {1, 2, 4, 8} with 2^w ≥ ``levels``.

    Raises:
        ValueError: more than 256 levels (over 8 bits).
    """
    for w in WIDTHS:
        if levels <= 2**w:
            return w
    raise ValueError(f"a grid of {levels} levels needs more than 8 bits per code; integer layers "
                     "pack at most 8 bits (256 levels): quantize with bits <= 8")


def pack(codes: torch.Tensor, width: int) -> torch.Tensor:
    """``codes`` (any integer tensor with values in [0, 2^width)) flattened into uint8 bytes."""
    per = 8 // width
    flat = codes.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % per
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    parts = flat.reshape(-1, per)
    out = parts[:, 0].clone()
    for j in range(1, per):
        out |= parts[:, j] << (j * width)
    return out


def unpack(packed: torch.Tensor, width: int, count: int) -> torch.Tensor:
    """The first ``count`` codes of ``packed`` (uint8) as an int32 tensor (inverse of :func:`pack`)."""
    mask = (1 << width) - 1
    shifts = torch.arange(0, 8, width, dtype=torch.int32, device=packed.device)
    parts = (packed.to(torch.int32).unsqueeze(1) >> shifts) & mask
    return parts.reshape(-1)[:count]
