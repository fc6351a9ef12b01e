"""Typed, validated configuration of weight fake-quantization for one layer or a whole model."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..core import Estimator, UniformQuantizer, get_estimator
from ..core._validate import boolean, finite_float, integer, positive_float, reject_unknown_keys
from ._layout import Layout, make_layout

__all__ = ["QuantConfig"]

_SCALES = ("init-bound", "absmax")
_FALLBACKS = ("error", "per-channel", "per-tensor")
_DELTA_DTYPES = (None, "float16")
# Export formats' own grids (the stequiv.export formats hold these exactly):
FORMAT_GRIDS: dict[str, dict[str, Any]] = {
    # GGUF: blocks of 32 weights, one float16 scale d; Q4_0 w = d·(q − 8), q = 0..15 (levels
    # −8..7 on the offset-0 grid); Q8_0 w = d·q, q an int8 (levels −128..127)
    "gguf-q4_0": {"bits": 4, "offset": 0.0, "group_size": 32, "delta_dtype": "float16"},
    "gguf-q8_0": {"bits": 8, "offset": 0.0, "group_size": 32, "delta_dtype": "float16"},
    # compressed-tensors' symmetric int weights (w = s·q, s in the model's dtype)
    "compressed-tensors-w4-group128": {"bits": 4, "offset": 0.0, "group_size": 128},
    "compressed-tensors-w8-channel": {"bits": 8, "offset": 0.0, "per_channel": True},
    # ONNX DequantizeLinear: int4 codes per output channel (any offset-0 or offset-½ grid fits)
    "onnx-int4": {"bits": 4, "offset": 0.0, "per_channel": True},
    "onnx-int8": {"bits": 8, "offset": 0.0, "per_channel": True},
}


@dataclass(frozen=True)
class QuantConfig:
    """How to fake-quantize a layer's weight.

    Args:
        estimator: a registered name, a ``{"name": ..., **params}`` dict, or an Estimator.
        bits: quantizer bits b (≥ 1).
        offset: zero-point offset z (0.5: symmetric grid without a zero level, the paper's).
        scale: how the range bound m (levels span ``[-m, m]``, Δ = 2m/(2^b − 1)) is chosen:
            ``"init-bound"`` = the He-uniform bound √(6/fan_in) (the paper's choice),
            ``"absmax"`` = max |W| of the weight at quantization time, or a positive number.
        per_channel: one Δ per output channel instead of one per tensor.
        group_size: one Δ per group of G consecutive input elements of each output channel
            (implies per channel); G must divide the layer's input size.
        axis: the output-channel axis, overriding the layer kind's (see :mod:`._layout`).
        estimator_params: extra estimator parameters, merged into ``estimator``.
        learn_step: every Δ of the layer (per tensor, channel or group) becomes a parameter
            trained LSQ-style, starting from ``scale`` (:mod:`._lsq`; its STE twin follows the
            Q̂-net's Δ: :class:`~stequiv.qat.LearnedStepTwin`). Needs a bin-unit estimator.
        group_fallback: what a layer whose input size ``group_size`` does not divide gets
            (a ResNet stem's 147, a depthwise 3×3's 9, T5's relative bias): ``"error"`` (the call
            is refused), ``"per-channel"`` or ``"per-tensor"``; :func:`~stequiv.qat.quantization_report`
            names those layers.
        delta_dtype: ``"float16"`` rounds every Δ to the nearest float16 when it is set, for
            formats that store a float16 scale (GGUF); None keeps Δ in float64.

    With ``scale="absmax"``, an all-zero channel or group (an embedding's padding row, a pruned
    channel) gets the smallest non-zero bound m of its tensor; only an all-zero tensor is refused.
    :meth:`for_format` gives the config that trains on an export format's own grid.
    """

    estimator: str | Mapping[str, Any] | Estimator = "ste"
    bits: int = 2
    offset: float = 0.5
    scale: str | float = "absmax"
    per_channel: bool = False
    group_size: int | None = None
    axis: int | None = None
    estimator_params: Mapping[str, Any] = field(default_factory=dict)
    learn_step: bool = False
    group_fallback: str = "error"
    delta_dtype: str | None = None

    def __post_init__(self) -> None:
        if self.delta_dtype not in _DELTA_DTYPES:
            raise ValueError(f"`delta_dtype` must be one of {_DELTA_DTYPES}, got "
                             f"{self.delta_dtype!r}")
        integer("bits", self.bits, minimum=1)
        if not isinstance(self.learn_step, bool):
            raise TypeError(f"`learn_step` must be True or False, got {self.learn_step!r}")
        finite_float("offset", self.offset)
        boolean("per_channel", self.per_channel)
        if isinstance(self.scale, str):
            if self.scale not in _SCALES:
                raise ValueError(f"`scale` must be one of {_SCALES} or a positive number, "
                                 f"got {self.scale!r}")
        else:
            positive_float("scale", self.scale)
        if self.group_size is not None:
            integer("group_size", self.group_size, minimum=1)
        if self.group_fallback not in _FALLBACKS:
            raise ValueError(f"`group_fallback` must be one of {_FALLBACKS}, got "
                             f"{self.group_fallback!r}")
        if self.axis is not None:
            integer("axis", self.axis)
            if not (self.per_channel or self.group_size is not None):
                raise ValueError(f"`axis`={self.axis} places a per-channel Δ, but the config is "
                                 "per tensor; set per_channel=True or group_size, or drop `axis`")
        object.__setattr__(self, "estimator",
                           get_estimator(self.estimator, **dict(self.estimator_params)))
        object.__setattr__(self, "estimator_params", {})
        if self.learn_step and self.est.units == "weight":
            raise ValueError(f"`learn_step=True` needs an estimator in bin units, but "
                             f"{self.est.describe()} is binary: it acts on w itself, whose "
                             "boundary (0) does not move with Δ. Use a bin-unit estimator or "
                             "learn_step=False")

    @property
    def est(self) -> Estimator:
        """The resolved estimator."""
        assert isinstance(self.estimator, Estimator)
        return self.estimator

    def layout_for(self, shape: tuple[int, ...], kind_axis: int, where: str,
                   batch: int = 0) -> Layout:
        """Where Δ lies on a weight of ``shape`` whose layer kind has output axis ``kind_axis``
        (after ``batch`` leading batch axes, e.g. experts)."""
        grouped = self.group_size is not None
        axis = (kind_axis if self.axis is None else self.axis) if self.per_channel or grouped else None
        if grouped and self.group_fallback != "error" and not self.group_fits(shape, axis, batch):
            if self.group_fallback == "per-tensor":
                return make_layout(tuple(shape), None, None, where)
            return make_layout(tuple(shape), axis, None, where, batch)
        return make_layout(tuple(shape), axis, self.group_size, where, batch if axis is not None else 0)

    def group_fits(self, shape: tuple[int, ...], axis: int | None, batch: int = 0) -> bool:
        """Whether ``group_size`` divides the input elements per output channel on ``axis``."""
        if self.group_size is None or axis is None or not -len(shape) <= axis < len(shape):
            return True
        return (math.prod(shape) // (math.prod(shape[:batch]) * shape[axis])) % self.group_size == 0

    def range_bound(self, weight: torch.Tensor, layout: Layout, fan_in: int,
                    where: str = "the weight") -> torch.Tensor:
        """m per tensor (0-D) or per row of ``layout`` (1-D: channel or group), float64 on the CPU.

        ``fan_in`` is the number of input elements per output channel (for ``"init-bound"``).
        """
        per_row = layout.axis is not None
        if self.scale == "absmax":
            rows = layout.rows(weight.detach().to("cpu", torch.float64))
            m = rows.abs().amax(dim=1) if per_row else rows.abs().max()
            if not bool(torch.any(m > 0)):
                raise ValueError(f"{where}: `scale='absmax'` needs a non-zero entry, but the "
                                 "weight is all zero; initialise the layer first, give a number, "
                                 "or use scale='init-bound'")
            # an all-zero row (a padding row, a pruned channel): the smallest bound of the others
            return torch.where(m > 0, m, m[m > 0].min()) if per_row else m
        if self.scale == "init-bound":
            m = torch.tensor(math.sqrt(6.0 / fan_in), dtype=torch.float64)
        else:
            m = torch.tensor(float(self.scale), dtype=torch.float64)
        return m.expand(layout.num_rows).clone() if per_row else m

    def quantizer_for(self, weight: torch.Tensor, layout: Layout, fan_in: int,
                      where: str = "the weight") -> UniformQuantizer:
        """The core quantizer of this config for the rows of ``weight`` (see :mod:`._layout`)."""
        m = self.range_bound(weight, layout, fan_in, where).numpy()
        q = UniformQuantizer.symmetric(self.bits, m) if self.offset == 0.5 else UniformQuantizer(
            bits=self.bits, delta=2.0 * m / (2**self.bits - 1), offset=self.offset)
        if self.delta_dtype is None:
            return q
        delta = q.delta_array.astype(np.float16).astype(np.float64)
        if not bool(np.all(np.isfinite(delta) & (delta > 0))):
            raise ValueError(f"{where}: Δ = {q.delta_array.min():g}..{q.delta_array.max():g} "
                             "is not a positive finite float16 (`delta_dtype='float16'`); "
                             "give a scale whose Δ lies in [6e-8, 65504]")
        return UniformQuantizer(bits=self.bits, delta=delta if delta.ndim else float(delta),
                                offset=self.offset)

    @classmethod
    def for_format(cls, name: str, **overrides: Any) -> QuantConfig:
        """The config that trains on export format ``name``'s grid (:data:`FORMAT_GRIDS`), so the
        export holds the trained weights exactly; ``overrides`` set the other fields (estimator,
        scale, learn_step, ...).

        >>> QuantConfig.for_format("gguf-q4_0", estimator="htge").group_size
        32
        """
        if name not in FORMAT_GRIDS:
            close = difflib.get_close_matches(str(name), list(FORMAT_GRIDS), n=1)
            raise ValueError(f"unknown format grid {name!r}; known: {sorted(FORMAT_GRIDS)}"
                             + (f"; did you mean {close[0]!r}?" if close else ""))
        clash = sorted(set(overrides) & set(FORMAT_GRIDS[name]))
        if clash:
            raise ValueError(f"format {name!r} fixes {clash}; leave them out of the overrides "
                             "(or build the QuantConfig yourself)")
        return cls(**FORMAT_GRIDS[name], **overrides)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; :meth:`from_dict` inverts it."""
        out = dataclasses.asdict(self)
        out["estimator"] = self.est.to_dict()
        out.pop("estimator_params")
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        reject_unknown_keys("QuantConfig", data, {f.name for f in dataclasses.fields(cls)})
        return cls(**data)
