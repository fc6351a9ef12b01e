r"""Uniform and binary weight quantizers (the paper's Eq. 1, with a zero-point offset).

.. math::  Q(x) = \Delta\,\big(\operatorname{round}(\operatorname{clip}(x\cdot\Delta^{-1} - z,\ l,\ u)) + z\big)

``round`` is round-half-to-even (NumPy's and PyTorch's). All positions are also expressed in the
*grid coordinate* :math:`v = x/\Delta - z`, in which the levels are the integers ``l..u`` and the
decision boundaries (the paper's boundary points) are the half-integers ``l+½ .. u-½``.

* ``offset=0`` is Eq. 1 (mid-tread, a zero level);
* ``offset=0.5`` is the symmetric grid with no zero level used in the paper's experiments:
  levels :math:`\pm\Delta/2, \pm3\Delta/2, \dots` spanning exactly :math:`[-m, m]` with
  :math:`\Delta = 2m/(2^b-1)` (see :meth:`UniformQuantizer.symmetric`).

:class:`BinaryQuantizer` is :math:`Q(x) = s\cdot\operatorname{sign}(x)` with sign(0) = +1, which
is the uniform quantizer with :math:`\Delta = 2s`, ``offset=½``, ``l=-1``, ``u=0``: one boundary
point (0), no finite bin, and therefore :math:`\alpha := 1` as in the paper.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from ._validate import finite_float, integer, positive_finite_array, positive_float

__all__ = ["BinaryQuantizer", "UniformQuantizer", "grid_coordinate"]

MAX_BITS = 52  # levels up to 2^51: v - 1/2 and the split of v into bins stay exact in float64


def as_weights(w: Any) -> np.ndarray:
    """``w`` as a floating array: integers become float64 (never truncated), others are refused."""
    arr = np.asarray(w)
    if arr.dtype.kind in "iu":
        return arr.astype(np.float64)
    if arr.dtype.kind != "f":
        raise ValueError(
            f"weights must be a real floating (or integer) array, got dtype {arr.dtype}; "
            "convert them, e.g. `w.astype(np.float32)`")
    return arr


def grid_coordinate(w: Any, inverse_delta: Any, offset: float) -> Any:
    r"""The grid coordinate :math:`v = w\cdot\Delta^{-1} - z` (levels at integers, boundaries at
    half-integers), for NumPy arrays and torch tensors alike.

    ``inverse_delta`` is 1/Δ computed once in float64 and rounded to ``w``'s dtype (shaped to
    broadcast); multiplying by it, rather than dividing by Δ, is what makes NumPy and torch agree
    bit for bit on which bin a weight is in, also one ulp from a boundary. ``offset`` is a Python
    float: both libraries then subtract it in ``w``'s dtype.
    """
    return w * inverse_delta - offset


@dataclass(frozen=True, eq=False)
class UniformQuantizer:
    """The uniform quantizer of Eq. 1 with zero-point offset ``offset`` (z).

    Args:
        bits: number of bits b; sets ``lower = -2**(b-1)`` and ``upper = 2**(b-1) - 1`` unless
            those are given (Appendix A's symmetric choice).
        delta: the step Δ: a positive scalar, or a 1-D array with one Δ per output channel
            (indexed along ``channel_axis`` of the weights).
        offset: the zero-point offset z (0 = Eq. 1, 0.5 = symmetric grid without a zero level).
        lower: the integer clip limit l of the grid coordinate (l < u).
        upper: the integer clip limit u of the grid coordinate.
        channel_axis: the weight axis that a per-channel Δ runs along.
    """

    bits: int | None = None
    delta: Any = 1.0
    offset: float = 0.0
    # Left out (None), they are resolved from ``bits`` on construction: an int once built.
    lower: int = cast(int, None)
    upper: int = cast(int, None)
    channel_axis: int = 0
    _delta: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.bits is not None:
            bits = integer("bits", self.bits, minimum=1)
            if bits > MAX_BITS:
                raise ValueError(
                    f"`bits` must be <= {MAX_BITS}, got {bits}: the grid coordinate (levels up to "
                    f"2^(bits-1)) must hold half-integers exactly in float64")
            lower = -(2 ** (bits - 1)) if self.lower is None else self.lower
            upper = 2 ** (bits - 1) - 1 if self.upper is None else self.upper
        elif self.lower is None or self.upper is None:
            raise ValueError("give `bits`, or both `lower` and `upper` (integers, lower < upper)")
        else:
            lower, upper = self.lower, self.upper
        lower = integer("lower", lower)
        upper = integer("upper", upper)
        if lower >= upper:
            raise ValueError(f"`lower` must be < `upper`, got lower={lower}, upper={upper}")
        if max(-lower, upper) > 2 ** (MAX_BITS - 1):
            raise ValueError(
                f"`lower` and `upper` must lie within ±2^{MAX_BITS - 1}, got lower={lower}, "
                f"upper={upper}: the grid coordinate must hold half-integers exactly in float64")
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", upper)
        object.__setattr__(self, "offset", finite_float("offset", self.offset))
        object.__setattr__(self, "channel_axis", integer("channel_axis", self.channel_axis))
        object.__setattr__(self, "_delta", positive_finite_array("delta", self.delta))

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def symmetric(cls, bits: int, max_abs: Any, *, channel_axis: int = 0) -> UniformQuantizer:
        r"""Levels spanning exactly :math:`[-m, m]`: :math:`\Delta = 2m/(2^b-1)`, offset ½.

        This is the grid of the paper's experiments, with ``max_abs`` the bound of the weight
        initialisation distribution (a scalar, or one value per output channel).
        """
        bits = integer("bits", bits, minimum=1)
        if bits > MAX_BITS:
            raise ValueError(f"`bits` must be <= {MAX_BITS}, got {bits}")
        m = positive_finite_array("max_abs", max_abs)
        delta = 2.0 * m / (2**bits - 1)
        return cls(bits=bits, delta=delta if delta.ndim else float(delta), offset=0.5,
                   channel_axis=channel_axis)

    # ------------------------------------------------------------------------------- structure
    @property
    def per_channel(self) -> bool:
        """Whether Δ has one value per output channel."""
        return self._delta.ndim == 1

    @property
    def delta_array(self) -> np.ndarray:
        """Δ as a float64 array (0-D, or 1-D per channel)."""
        return self._delta

    @property
    def levels(self) -> np.ndarray:
        """Integer level indices ``l..u`` (grid coordinate); level k sits at (k + z)·Δ."""
        return np.arange(self.lower, self.upper + 1)

    @property
    def boundaries(self) -> np.ndarray:
        """Decision boundaries (boundary points) in the grid coordinate: ``l+½ .. u-½``."""
        return np.arange(self.lower, self.upper) + 0.5

    @property
    def num_finite_bins(self) -> int:
        """Number of finite bins (between two adjacent boundary points): ``u - l - 1``."""
        return self.upper - self.lower - 1

    @property
    def num_bins(self) -> int:
        """All bins, the two outer (half-infinite) ones included: ``u - l + 1``."""
        return self.upper - self.lower + 1

    def boundary_points(self) -> np.ndarray:
        """Boundary points in weight units, shape ``(u-l,)`` or ``(C, u-l)`` per channel."""
        return (self.boundaries + self.offset) * self._delta[..., None]

    def representable_range(self) -> tuple[np.ndarray, np.ndarray]:
        """The range spanned by the levels, ``[Δ(l+z), Δ(u+z)]`` (Appendix A)."""
        return (self.lower + self.offset) * self._delta, (self.upper + self.offset) * self._delta

    def range_length(self) -> np.ndarray:
        """Length of the representable range, ``Δ(u-l)``: Ē is normalised by it."""
        return (self.upper - self.lower) * self._delta

    # ------------------------------------------------------------------------------ evaluation
    def delta_for(self, w: np.ndarray) -> np.ndarray:
        """Δ shaped to broadcast against ``w`` (per-channel Δ runs along ``channel_axis``)."""
        if not self.per_channel:
            return self._delta
        w = np.asarray(w)
        if not -w.ndim <= self.channel_axis < w.ndim:
            raise ValueError(
                f"`channel_axis`={self.channel_axis} is out of range for weights of shape "
                f"{w.shape} (valid: {-w.ndim}..{w.ndim - 1}); give the axis of the output channels")
        axis = self.channel_axis % w.ndim
        if w.shape[axis] != self._delta.size:
            raise ValueError(
                f"per-channel `delta` has {self._delta.size} entries but the weights have shape "
                f"{np.shape(w)} (channel_axis={self.channel_axis}); give one Δ per channel"
            )
        shape = [1] * w.ndim
        shape[axis] = self._delta.size
        return self._delta.reshape(shape)

    def inverse_delta_for(self, w: np.ndarray) -> np.ndarray:
        """1/Δ (computed in float64, then rounded to ``w``'s dtype), shaped like :meth:`delta_for`."""
        w = as_weights(w)
        return (1.0 / self.delta_for(w)).astype(w.dtype, copy=False)

    def to_grid(self, w: np.ndarray) -> np.ndarray:
        """The grid coordinate ``v = w·(1/Δ) - z`` (levels at integers, boundaries at half-integers).

        The reciprocal is taken once in float64 and rounded to the weights' dtype, and then
        multiplied: the torch fake-quantizer does exactly the same operations, so the two agree
        bit for bit on which bin a weight is in, also one ulp from a boundary.
        """
        w = as_weights(w)
        return grid_coordinate(w, self.inverse_delta_for(w), self.offset)

    def from_grid(self, v: np.ndarray, like: np.ndarray) -> np.ndarray:
        """Weights ``(v + z)·Δ`` in the dtype of ``like``."""
        like = as_weights(like)
        dt = like.dtype
        return ((v + dt.type(self.offset)) * self.delta_for(like).astype(dt, copy=False)).astype(
            dt, copy=False
        )

    def code(self, w: np.ndarray) -> np.ndarray:
        """The integer level index ``round(clip(w/Δ - z, l, u))`` of every weight."""
        return np.rint(np.clip(self.to_grid(w), self.lower, self.upper))

    def __call__(self, w: np.ndarray) -> np.ndarray:
        """Q(w), same shape and dtype as ``w`` (integer weights give float64)."""
        w = as_weights(w)
        return self.from_grid(self.code(w), like=w)

    def describe(self) -> str:
        """One line for reports."""
        d = self._delta
        dtext = f"{float(d):.6g}" if d.ndim == 0 else f"per-channel ({d.size})"
        return f"uniform(l={self.lower}, u={self.upper}, offset={self.offset:g}, Δ={dtext})"


@dataclass(frozen=True, eq=False)
class BinaryQuantizer(UniformQuantizer):
    """Q(x) = scale·sign(x), sign(0) = +1: one boundary point (0), no finite bin, α := 1."""

    scale: float = 1.0

    def __init__(self, scale: float = 1.0) -> None:
        scale = positive_float("scale", scale)
        object.__setattr__(self, "scale", scale)
        super().__init__(bits=1, delta=2.0 * scale, offset=0.5, lower=-1, upper=0)

    def describe(self) -> str:
        return f"binary(scale={self.scale:g})"
