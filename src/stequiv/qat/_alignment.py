r"""Alignment metrics of Section 6.2: weight alignment error Ē and quantized-weight agreement.

Eq. 5: :math:`E = |M(w_{\hat Q}) - w_{STE}|` (SGD form, ``remap=True``) or
:math:`E = |w_{\hat Q} - w_{STE}|` (Adam form, ``remap=False``); the paper uses, for each pair, the
form that gives :math:`E^{(0)} = 0`. Each E is divided by the length of its layer's representable
range Δ(u − l) and averaged over all quantized weights: Ē (a fraction; the paper prints percent).
Agreement is the fraction of quantized weights with the same level in both models.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..core._remap import remap
from ._quantize import latent_weight, quantized_layers

__all__ = ["Alignment", "AlignmentTracker", "alignment"]


@dataclass(frozen=True)
class LayerAlignment:
    """Ē, agreement and weight count of one layer."""

    ebar: float
    agreement: float
    count: int


@dataclass(frozen=True)
class Alignment:
    """Ē and agreement over the whole model, and per layer."""

    ebar: float
    agreement: float
    count: int
    layers: dict[str, LayerAlignment] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """JSON-ready."""
        return {"ebar": self.ebar, "agreement": self.agreement, "count": self.count,
                "layers": {k: vars(v) for k, v in self.layers.items()}}


def _remapped(model: nn.Module, name: str, w: torch.Tensor) -> torch.Tensor:
    fq = quantized_layers(model)[name]
    out = remap(fq.estimator, fq.quantizer(), w.detach().to("cpu").numpy())
    return torch.from_numpy(out).to(w.device)


@torch.no_grad()
def alignment(model_a: nn.Module, model_b: nn.Module, *, remap: bool = True) -> Alignment:
    """Ē and quantized-weight agreement between two models with the same quantized layers.

    ``remap=True`` compares :math:`M_a(w_a)` with :math:`w_b` (SGD form: ``model_a`` is the Q̂-net,
    ``model_b`` its STE twin); ``remap=False`` compares latent weights directly (Adam form).
    Accepts DistributedDataParallel-wrapped models.
    """
    a = getattr(model_a, "module", model_a)
    b = getattr(model_b, "module", model_b)
    layers_a, layers_b = quantized_layers(a), quantized_layers(b)
    if not layers_a:
        raise ValueError("alignment: model_a has no quantized layer")
    if list(layers_a) != list(layers_b):
        raise ValueError(f"alignment: the models' quantized layers differ: {list(layers_a)} vs "
                         f"{list(layers_b)}")
    per_layer, total_e, total_agree, total_n = {}, 0.0, 0, 0
    for name, fq_a in layers_a.items():
        wa, wb = latent_weight(a, name), latent_weight(b, name)
        if wa.shape != wb.shape:
            raise ValueError(f"alignment: layer {name!r} has shape {tuple(wa.shape)} vs {tuple(wb.shape)}")
        fq_b = layers_b[name]
        xa = _remapped(a, name, wa) if remap else wa
        e = ((xa - wb).abs() / fq_a.range_length().to(wa.dtype)).double().sum().item()
        agree = int((fq_a.code(wa) == fq_b.code(wb)).sum().item())
        n = wa.numel()
        per_layer[name] = LayerAlignment(e / n, agree / n, n)
        total_e, total_agree, total_n = total_e + e, total_agree + agree, total_n + n
    return Alignment(total_e / total_n, total_agree / total_n, total_n, per_layer)


class AlignmentTracker:
    """Records :func:`alignment` every ``every`` steps while two models train side by side."""

    def __init__(self, model_a: nn.Module, model_b: nn.Module, *, remap: bool = True, every: int = 1):
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
