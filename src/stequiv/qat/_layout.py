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

**Batch axes.** A Mixture-of-Experts layer stores E experts' weights in one tensor,
``(E, out, in)`` (transformers' ``*Experts`` modules; GPT-OSS: ``(E, in, out)``). Its kind declares
``batch_axes=1``: the leading axes index independent matrices, so each expert gets its own Δ per
channel or group — C is then E·out, and the rows are ``(E·out, K)`` (the output axis moved right
after the batch axes).

**The registry.** :func:`register_layer_kind` adds a kind (checked before the built-in ones), so a
model whose layers stequiv does not know can be quantized, converted, saved and loaded like any
other (the kind must be registered in the process that loads it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["KINDS", "LayerKind", "Layout", "kind_of", "make_layout", "register_layer_kind",
           "registered_kinds", "unregister_layer_kind"]


@dataclass(frozen=True)
class LayerKind:
    """A family of modules: its quantizable parameters and each one's output-channel axis.

    Args:
        name: shown in messages and reports.
        matches: ``module -> bool``.
        params: ``module -> names`` of its quantizable parameters.
        out_axis: the axis that runs over output channels (every other non-batch axis is an input
            axis).
        default: quantized by the default filter (else only when ``filter_fn`` selects it).
        batch_axes: how many leading axes index independent matrices (1 for ``(experts, out,
            in)``); each gets its own Δ.
    """

    name: str
    matches: Callable[[nn.Module], bool]
    params: Callable[[nn.Module], tuple[str, ...]]
    out_axis: int
    default: bool = True
    batch_axes: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.batch_axes, int) or not 0 <= self.batch_axes <= self.out_axis:
            raise ValueError(f"LayerKind {self.name!r}: `batch_axes`={self.batch_axes!r} must be "
                             f"an int in [0, out_axis={self.out_axis}] (the batch axes lead)")


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


def _three_d(module: nn.Module) -> tuple[str, ...]:
    """The module's own 3-D floating-point parameters (expert weights)."""
    return tuple(n for n, p in module._parameters.items()
                 if p is not None and p.ndim == 3 and torch.is_floating_point(p))


def _hf_experts(*names: str) -> Callable[[nn.Module], bool]:
    def matches(module: nn.Module) -> bool:
        cls = type(module)
        base = cls.__name__.removeprefix("Parametrized")
        return (cls.__module__.startswith("transformers") and base.endswith("Experts")
                and (base in names if names else base not in _EXPERTS_IN_OUT)) and bool(_three_d(module))

    return matches


_EXPERTS_IN_OUT = ("GptOssExperts",)  # (E, in, out); the others store (E, out, in)


KINDS: tuple[LayerKind, ...] = (
    LayerKind("Linear", _of(nn.Linear), _weight, 0),
    LayerKind("Conv1d/2d/3d", _of(nn.Conv1d, nn.Conv2d, nn.Conv3d), _weight, 0),
    LayerKind("ConvTranspose1d/2d/3d",
              _of(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), _weight, 1),
    LayerKind("Embedding", _of(nn.Embedding), _weight, 0),
    LayerKind("MultiheadAttention", _of(nn.MultiheadAttention), _mha, 0),
    LayerKind("transformers Conv1D", _is_hf_conv1d, _weight, 1),
    LayerKind("RNN/LSTM/GRU", _of(nn.RNNBase), _rnn, 0, default=False),
    LayerKind("transformers MoE experts (E, out, in)", _hf_experts(), _three_d, 1, batch_axes=1),
    LayerKind("transformers MoE experts (E, in, out)", _hf_experts(*_EXPERTS_IN_OUT), _three_d, 2,
              batch_axes=1),
    LayerKind("3-D expert weights (E, out, in)", lambda m: bool(_three_d(m)), _three_d, 1,
              default=False, batch_axes=1),
)
_REGISTERED: list[LayerKind] = []


def register_layer_kind(kind: LayerKind) -> LayerKind:
    """Add ``kind`` to the registry, ahead of the built-in kinds; returns it.

    >>> import torch
    >>> from torch import nn
    >>> class Experts(nn.Module):  # E experts' (out, in) matrices in one tensor
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.w = nn.Parameter(torch.randn(4, 8, 16))
    >>> kind = register_layer_kind(LayerKind("my experts", lambda m: isinstance(m, Experts),
    ...                                      lambda m: ("w",), out_axis=1, batch_axes=1))
    """
    if not isinstance(kind, LayerKind):
        raise TypeError(f"`kind` must be a stequiv LayerKind, got {kind!r}")
    if any(k.name == kind.name for k in (*_REGISTERED, *KINDS)):
        raise ValueError(f"a layer kind named {kind.name!r} is already registered; give another name")
    _REGISTERED.insert(0, kind)
    return kind


def unregister_layer_kind(name: str) -> LayerKind:
    """Remove the user kind called ``name`` (built-in kinds stay); returns it."""
    for kind in _REGISTERED:
        if kind.name == name:
            _REGISTERED.remove(kind)
            return kind
    raise ValueError(f"no user layer kind is named {name!r}; registered: "
                     f"{[k.name for k in _REGISTERED]}")


def registered_kinds() -> tuple[LayerKind, ...]:
    """Every kind, in the order :func:`kind_of` tries them (user kinds first)."""
    return (*_REGISTERED, *KINDS)


def kind_of(module: nn.Module) -> LayerKind | None:
    """The registered kind of ``module`` (the first that matches), or None."""
    return next((k for k in registered_kinds() if k.matches(module)), None)


def supported_kinds() -> str:
    """The registered kinds, for error messages."""
    return ", ".join(k.name + ("" if k.default else " (when selected)") for k in registered_kinds())


@dataclass(frozen=True)
class Layout:
    """Where each Δ sits on a weight of ``shape`` (see the module docstring).

    ``axis`` is the output-channel axis (None: one Δ for the tensor); ``group_size`` G splits each
    output channel's K reduction elements into K/G groups.
    """

    shape: tuple[int, ...]
    axis: int | None = None
    group_size: int | None = None
    batch: int = 0

    @property
    def rowwise(self) -> bool:
        """Whether the forward computes on :meth:`rows` (grouped, or with batch axes)."""
        return self.axis is not None and (self.group_size is not None or self.batch > 0)

    @property
    def num_rows(self) -> int:
        """R, the number of Δ (1 per tensor)."""
        if self.axis is None:
            return 1
        if self.group_size is None:
            return math.prod(self.shape[:self.batch]) * self.shape[self.axis]
        return math.prod(self.shape) // self.group_size

    def _moved(self) -> tuple[int, ...]:
        assert self.axis is not None
        b, a = self.batch, self.axis
        return (*self.shape[:b], self.shape[a], *self.shape[b:a], *self.shape[a + 1:])

    def rows(self, w: torch.Tensor) -> torch.Tensor:
        """``w`` as ``(R, N/R)``: batch and output axes first, reduction axes flattened (a view
        when the output axis already follows the batch axes)."""
        if self.axis is None:
            return w.reshape(1, -1)
        return w.movedim(self.axis, self.batch).reshape(self.num_rows, -1)

    def unrows(self, r: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`rows`."""
        if self.axis is None:
            return r.reshape(self.shape)
        return r.reshape(self._moved()).movedim(self.batch, self.axis)

    def view(self, w: torch.Tensor) -> torch.Tensor:
        """The shape the forward computes in: the weight itself, or its rows (:attr:`rowwise`)."""
        return self.rows(w) if self.rowwise else w

    def unview(self, v: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`view`."""
        return self.unrows(v) if self.rowwise else v

    def delta_shape(self) -> tuple[int, ...]:
        """Δ's shape, broadcasting against :meth:`view` of the weight."""
        if self.axis is None:
            return ()
        if self.rowwise:
            return (self.num_rows, 1)
        return tuple(n if i == self.axis else 1 for i, n in enumerate(self.shape))

    def to_dict(self) -> dict:
        """JSON-ready (recorded in checkpoints; ``batch`` only when there are batch axes)."""
        out = {"shape": list(self.shape), "axis": self.axis, "group_size": self.group_size}
        return {**out, "batch": self.batch} if self.batch else out


def make_layout(shape: tuple[int, ...], axis: int | None, group_size: int | None,
                where: str, batch: int = 0) -> Layout:
    """A checked :class:`Layout`; errors name ``where`` (the layer and parameter) and the fix."""
    if axis is None:
        if group_size is not None:
            raise ValueError(f"{where}: `group_size` needs an output-channel axis")
        return Layout(tuple(shape))
    if batch and not batch <= axis % max(len(shape), 1) < len(shape):
        raise ValueError(f"{where}: `axis`={axis} must come after the {batch} batch (expert) "
                         f"axes of a weight of shape {tuple(shape)}")
    if not -len(shape) <= axis < len(shape) or len(shape) < 2:
        raise ValueError(f"{where}: `axis`={axis} is out of range for a weight of shape "
                         f"{tuple(shape)}; give an axis in [0, {len(shape) - 1}] (of a 2-D or "
                         "larger weight) or use per-tensor Δ")
    axis %= len(shape)
    if group_size is not None:
        reduction = math.prod(shape) // (math.prod(shape[:batch]) * shape[axis])
        if group_size < 1 or reduction % group_size:
            divisors = [g for g in (8, 16, 32, 64, 128, 256) if reduction % g == 0]
            raise ValueError(f"{where}: `group_size`={group_size} does not divide the {reduction} "
                             f"input elements per output channel of shape {tuple(shape)}; give a "
                             f"divisor of {reduction} (e.g. {divisors or [reduction]}), quantize "
                             "this layer per channel, or set group_fallback='per-channel' to do "
                             "so for every layer it does not fit")
    return Layout(tuple(shape), axis, group_size, batch)
