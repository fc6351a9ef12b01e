r"""Which weights a layer has, and how one Δ per tensor, per output channel or per group lies on them.

**Layer kinds.** A small registry: each kind names its quantizable parameters and the axis of each
that runs over *output channels*; every other axis is a reduction (input) axis. Examples:
``nn.Linear`` / ``nn.ConvNd`` / ``nn.Embedding`` store ``(out, in, …)`` (axis 0),
``nn.ConvTransposeNd`` stores ``(in, out/groups, …)`` (axis 1), Hugging Face's ``Conv1D`` stores
``(in, out)`` (axis 1).

**Layouts.** With output axis :math:`a` of size C and reduction size :math:`K = N/C`, the weight
is read as *rows* — the output axis moved first and the rest flattened in memory order:
per tensor one row of N; per channel C rows of K; per group of G, :math:`R = C\,K/G` rows of G
(the G consecutive input elements of one output channel). There is one Δ per row, so the core's
per-channel quantizer (``channel_axis=0``) applies to the rows unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["KINDS", "LayerKind", "Layout", "kind_of", "make_layout"]


@dataclass(frozen=True)
class LayerKind:
    """A family of modules: its quantizable parameters and each one's output-channel axis."""

    name: str
    matches: Callable[[nn.Module], bool]
    params: Callable[[nn.Module], tuple[str, ...]]
    out_axis: int
    default: bool = True  # quantized by the default filter


def _weight(module: nn.Module) -> tuple[str, ...]:
    return ("weight",)


def _mha(module: nn.Module) -> tuple[str, ...]:
    names = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
    return tuple(n for n in names if isinstance(getattr(module, n, None), torch.Tensor))


def _rnn(module: nn.Module) -> tuple[str, ...]:
    return tuple(n for n in module._flat_weights_names if n.startswith("weight_"))  # type: ignore[union-attr]


def _is_hf_conv1d(module: nn.Module) -> bool:
    cls = type(module)
    return cls.__name__ == "Conv1D" and cls.__module__.startswith("transformers")


def _of(*types: type[nn.Module]) -> Callable[[nn.Module], bool]:
    return lambda m: isinstance(m, types)


KINDS: tuple[LayerKind, ...] = (
    LayerKind("Linear", _of(nn.Linear), _weight, 0),
    LayerKind("Conv1d/2d/3d", _of(nn.Conv1d, nn.Conv2d, nn.Conv3d), _weight, 0),
    LayerKind("ConvTranspose1d/2d/3d",
              _of(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), _weight, 1),
    LayerKind("Embedding", _of(nn.Embedding), _weight, 0),
    LayerKind("MultiheadAttention", _of(nn.MultiheadAttention), _mha, 0),
    LayerKind("transformers Conv1D", _is_hf_conv1d, _weight, 1),
    LayerKind("RNN/LSTM/GRU", _of(nn.RNNBase), _rnn, 0, default=False),
)


def kind_of(module: nn.Module) -> LayerKind | None:
    """The registered kind of ``module`` (the first that matches), or None."""
    return next((k for k in KINDS if k.matches(module)), None)


def supported_kinds() -> str:
    """The registered kinds, for error messages."""
    return ", ".join(k.name + ("" if k.default else " (when selected)") for k in KINDS)


@dataclass(frozen=True)
class Layout:
    """Where each Δ sits on a weight of ``shape`` (see the module docstring).

    ``axis`` is the output-channel axis (None: one Δ for the tensor); ``group_size`` G splits each
    output channel's K reduction elements into K/G groups.
    """

    shape: tuple[int, ...]
    axis: int | None = None
    group_size: int | None = None

    @property
    def num_rows(self) -> int:
        """R, the number of Δ (1 per tensor)."""
        if self.axis is None:
            return 1
        channels = self.shape[self.axis]
        if self.group_size is None:
            return channels
        return math.prod(self.shape) // self.group_size

    def rows(self, w: torch.Tensor) -> torch.Tensor:
        """``w`` as ``(R, N/R)``: output axis first, reduction axes flattened (a view for axis 0)."""
        if self.axis is None:
            return w.reshape(1, -1)
        return w.movedim(self.axis, 0).reshape(self.num_rows, -1)

    def unrows(self, r: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`rows`."""
        if self.axis is None:
            return r.reshape(self.shape)
        moved = (self.shape[self.axis], *self.shape[:self.axis], *self.shape[self.axis + 1:])
        return r.reshape(moved).movedim(0, self.axis)

    def view(self, w: torch.Tensor) -> torch.Tensor:
        """The shape the forward computes in: the weight itself, or its rows when grouped."""
        return w if self.group_size is None else self.rows(w)

    def unview(self, v: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`view`."""
        return v if self.group_size is None else self.unrows(v)

    def delta_shape(self) -> tuple[int, ...]:
        """Δ's shape, broadcasting against :meth:`view` of the weight."""
        if self.axis is None:
            return ()
        if self.group_size is not None:
            return (self.num_rows, 1)
        return tuple(n if i == self.axis else 1 for i, n in enumerate(self.shape))

    def to_dict(self) -> dict:
        """JSON-ready (recorded in checkpoints)."""
        return {"shape": list(self.shape), "axis": self.axis, "group_size": self.group_size}


def make_layout(shape: tuple[int, ...], axis: int | None, group_size: int | None,
                where: str) -> Layout:
    """A checked :class:`Layout`; errors name ``where`` (the layer and parameter) and the fix."""
    if axis is None:
        if group_size is not None:
            raise ValueError(f"{where}: `group_size` needs an output-channel axis")
        return Layout(tuple(shape))
    if not -len(shape) <= axis < len(shape) or len(shape) < 2:
        raise ValueError(f"{where}: `axis`={axis} is out of range for a weight of shape "
                         f"{tuple(shape)}; give an axis in [0, {len(shape) - 1}] (of a 2-D or "
                         "larger weight) or use per-tensor Δ")
    axis %= len(shape)
    if group_size is not None:
        reduction = math.prod(shape) // shape[axis]
        if group_size < 1 or reduction % group_size:
            divisors = [g for g in (8, 16, 32, 64, 128, 256) if reduction % g == 0]
            raise ValueError(f"{where}: `group_size`={group_size} does not divide the {reduction} "
                             f"input elements per output channel of shape {tuple(shape)}; give a "
                             f"divisor of {reduction} (e.g. {divisors or [reduction]}), quantize "
                             "this layer per channel, or set group_fallback='per-channel' to do "
                             "so for every layer it does not fit")
    return Layout(tuple(shape), axis, group_size)
