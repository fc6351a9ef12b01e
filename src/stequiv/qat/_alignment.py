r"""Alignment metrics of Section 6.2: weight alignment error Ē and quantized-weight agreement.

Eq. 5: :math:`E = |M(w_{\hat Q}) - w_{STE}|` (SGD form, ``remap=True``) or
:math:`E = |w_{\hat Q} - w_{STE}|` (Adam form, ``remap=False``); the paper uses, for each pair, the
form that gives :math:`E^{(0)} = 0` (here: the form :func:`~stequiv.to_ste` recorded on the
twin). Each E is divided by the length of its layer's representable range Δ(u − l) and averaged
over all quantized weights: Ē (a fraction; the paper prints percent).
Agreement is the fraction of quantized weights with the same level in both models.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..core._remap import remap as core_remap
from ._maps import weight_map
from ._quantize import latent_weight, quantized_layers, raw_readers

__all__ = ["Alignment", "AlignmentTracker", "alignment"]


@dataclass(frozen=True)
class LayerAlignment:
    """Ē, agreement and weight count of one layer."""

    ebar: float
    agreement: float
    count: int


@dataclass(frozen=True)
class Alignment:
    """Ē and agreement over the whole model, and per layer.

    ``output_difference``: max |f_a(x) − f_b(x)| over the probe batch, when one was given.
    """

    ebar: float
    agreement: float
    count: int
    layers: dict[str, LayerAlignment] = field(default_factory=dict)
    output_difference: float | None = None

    def as_dict(self) -> dict:
        """JSON-ready."""
        return {"ebar": self.ebar, "agreement": self.agreement, "count": self.count,
                "layers": {k: vars(v) for k, v in self.layers.items()},
                "output_difference": self.output_difference}


def _check_readers(model: nn.Module, latents: Mapping[str, torch.Tensor]) -> None:
    readers = raw_readers(model)
    for name, p in latents.items():
        if readers.get(id(p)):
            raise ValueError(
                f"alignment: layer {readers[id(p)][0]!r} reads the weight of quantized layer "
                f"{name!r} unquantized (a tied weight); under remap=True Ē compares M(w) with the "
                "twin's weight but that layer reads w itself, so equal Ē would not mean equal "
                "functions. Quantize that layer too, or untie the weights")


def _output(out: Any) -> torch.Tensor:
    """The tensor a model returned: itself, ``.logits``, or the first tensor of a tuple/dict."""
    if isinstance(out, torch.Tensor):
        return out
    for candidate in (getattr(out, "logits", None),
                      *(out.values() if isinstance(out, dict) else ()),
                      *(out if isinstance(out, tuple | list) else ())):
        if isinstance(candidate, torch.Tensor):
            return candidate
    raise ValueError(f"alignment: cannot find the output tensor in a {type(out).__name__}; give a "
                     "model that returns a tensor, a tuple, a dict or an object with `.logits`")


def _output_difference(a: nn.Module, b: nn.Module, probe: Any) -> float:
    """max |a(probe) − b(probe)| in eval mode (dropout off), the modes restored afterwards."""
    modes = [(m, m.training) for m in (*a.modules(), *b.modules())]
    a.eval()
    b.eval()
    try:
        args = probe if isinstance(probe, tuple) else (probe,)
        kwargs = probe if isinstance(probe, dict) else {}
        out_a = _output(a(**kwargs) if kwargs else a(*args))
        out_b = _output(b(**kwargs) if kwargs else b(*args))
    finally:
        for m, training in modes:
            m.train(training)
    return float((out_a.double() - out_b.double()).abs().max())


_GRID_FIELDS = ("lower", "upper", "offset", "shape", "axis", "group_size")


def _check_same_grids(layers_a: dict[str, Any], layers_b: dict[str, Any]) -> None:
    """Refuse two models whose layers quantize on different grids (bits, offset, axis, groups):
    their agreement and Ē would compare levels of different quantizers. Estimators may differ
    (a Q̂-net and its STE twin), and so may Δ (a learned step moves)."""
    for name, fq_a in layers_a.items():
        ra, rb = fq_a.get_extra_state(), layers_b[name].get_extra_state()
        for key in _GRID_FIELDS:
            if ra.get(key) != rb.get(key):
                raise ValueError(
                    f"alignment: layer {name!r} is quantized with {key}={ra.get(key)!r} in model_a "
                    f"but {key}={rb.get(key)!r} in model_b; alignment compares a model with its "
                    "twin (stequiv.to_ste), which keeps every layer's grid")


def _recorded_remap(layers_a: dict[str, Any], layers_b: dict[str, Any]) -> bool | None:
    """Whether ``to_ste`` made model_b's weights through M (the layers' ``weights_remapped``), when
    model_b is a twin and model_a is not (the Q̂-net it mirrors); None otherwise: no record, two
    twins (e.g. a twin and a copy of it), or a twin passed first."""
    recorded_a = {fq.weights_remapped for fq in layers_a.values()} - {None}
    recorded_b = {fq.weights_remapped for fq in layers_b.values()} - {None}
    return recorded_b.pop() if not recorded_a and len(recorded_b) == 1 else None


def _form(flag: bool) -> str:
    return "M(w) (SGD-like)" if flag else "w unchanged (Adam-like, or remap_weights=False)"


def _resolve_remap(remap: bool | None, recorded: bool | None) -> bool:
    """The explicit ``remap`` if given (it must agree with the record), else the record."""
    if remap is None:
        if recorded is None:
            raise ValueError(
                "alignment: `remap` is known only for a Q̂-net and its stequiv.to_ste twin, in that "
                "order (the twin records whether its weights started at M(w) or w; a checkpoint "
                "does not keep the record); give `remap=True` (the second model started at M(w) of "
                "the first: SGD-like) or `remap=False` (at w: Adam-like, or remap_weights=False)")
        return recorded
    if recorded is not None and remap != recorded:
        raise ValueError(
            f"alignment: `remap={remap}` compares with {_form(remap)}, but to_ste made the twin "
            f"with weights {_form(recorded)}; Ē would not be 0 for an exact twin. Drop `remap` "
            f"(the twin's record is used) or pass `remap={recorded}`")
    return remap


@torch.no_grad()
def alignment(model_a: nn.Module, model_b: nn.Module, *, remap: bool | None = None,
              probe: Any = None) -> Alignment:
    """Ē and quantized-weight agreement between two models with the same quantized layers.

    ``remap=True`` compares :math:`M_a(w_a)` with :math:`w_b` (SGD form: ``model_a`` is the Q̂-net,
    ``model_b`` its STE twin); ``remap=False`` compares latent weights directly (Adam form).
    ``remap=None`` (the default) takes the form the conversion used: :func:`~stequiv.to_ste`
    records on the twin whether its weights are M(w) (SGD-like) or w (Adam-like, or
    ``remap_weights=False``), so that Ē of an exact twin is 0. The record is read when
    ``model_b`` is a twin and ``model_a`` is not; otherwise (no twin, two twins, a twin loaded
    from a checkpoint, which does not keep the record) ``remap`` must be given. An explicit
    ``remap`` that contradicts the record is refused.
    ``probe``: an input batch (a tensor, a tuple of positional or a dict of keyword arguments);
    both models are run on it in eval mode and the largest output difference is reported too.
    Accepts DistributedDataParallel-wrapped models. A tied weight is counted once.
    """
    a = getattr(model_a, "module", model_a)
    b = getattr(model_b, "module", model_b)
    layers_a, layers_b = quantized_layers(a), quantized_layers(b)
    if not layers_a:
        raise ValueError("alignment: model_a has no quantized layer")
    if list(layers_a) != list(layers_b):
        raise ValueError(f"alignment: the models' quantized layers differ: {list(layers_a)} vs "
                         f"{list(layers_b)}")
    _check_same_grids(layers_a, layers_b)
    remap = _resolve_remap(remap, _recorded_remap(layers_a, layers_b))
    latents = {name: latent_weight(a, name) for name in layers_a}
    if remap:
        _check_readers(a, latents)
    per_layer, total_e, total_agree, total_n, seen = {}, 0.0, 0, 0, set()
    for name, fq_a in layers_a.items():
        wa, wb = latents[name], latent_weight(b, name)
        if wa.shape != wb.shape:
            raise ValueError(f"alignment: layer {name!r} has shape {tuple(wa.shape)} vs {tuple(wb.shape)}")
        xa = weight_map(core_remap, fq_a.estimator, fq_a)(wa) if remap else wa
        diff = fq_a.layout.view((xa - wb).abs())
        e = (diff / fq_a.range_length().to(wa.dtype)).double().sum().item()
        agree = int((fq_a.code(wa) == layers_b[name].code(wb)).sum().item())
        n = wa.numel()
        per_layer[name] = LayerAlignment(e / n, agree / n, n)
        if id(wa) not in seen:
            seen.add(id(wa))
            total_e, total_agree, total_n = total_e + e, total_agree + agree, total_n + n
    out_diff = None if probe is None else _output_difference(a, b, probe)
    return Alignment(total_e / total_n, total_agree / total_n, total_n, per_layer, out_diff)


class AlignmentTracker:
    """Records :func:`alignment` every ``every`` steps while two models train side by side."""

    def __init__(self, model_a: nn.Module, model_b: nn.Module, *, remap: bool | None = None,
                 every: int = 1):
        if every < 1:
            raise ValueError(f"`every` must be >= 1, got {every}")
        self.model_a, self.model_b, self.remap, self.every = model_a, model_b, remap, every
        self.history: list[dict] = []

    def update(self, step: int) -> Alignment | None:
        """Measure at ``step`` if it is a multiple of ``every``; returns the measurement or None."""
        if step % self.every:
            return None
        result = alignment(self.model_a, self.model_b, remap=self.remap)
        self.history.append({"step": step, "ebar": result.ebar, "agreement": result.agreement})
        return result
