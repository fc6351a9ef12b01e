"""What ``quantize_`` did not do: weights left float, layers given another layout, exact zeros.

A model is quantized for its weights, and a user reads ``quantize_`` as "the model is quantized".
The report says where that is not so, so that nothing is left float silently:

* **left float** — every parameter of two or more dimensions with at least ``min_size`` elements
  that is not quantized, and why (no registered layer kind, e.g. a Mixture-of-Experts layer's 3-D
  expert weights or a ViT's position embedding; a kind quantized only when selected, e.g. LSTM
  weights; or not selected by ``filter_fn`` / ``config``);
* **group fallback** — layers that ``group_size`` does not fit and that got
  ``QuantConfig.group_fallback``'s layout instead;
* **exact zeros** — quantized weights that are exactly 0 on a grid without a zero level (the
  default offset z = ½): Q(0) = ±Δ/2, so padding rows and pruned weights stop being zero.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field

import torch
from torch import nn

from ._layout import kind_of

__all__ = ["QuantizationReport", "quantization_report"]

LOG = logging.getLogger("stequiv")
MIN_SIZE = 1024  # smaller ≥ 2-D weights (a bias table, a tiny head) are not reported as float

_FALLBACKS: weakref.WeakKeyDictionary[nn.Module, dict[str, str]] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class QuantizationReport:
    """The outcome of quantizing a model (see the module docstring)."""

    quantized: list[str]
    left_float: dict[str, str] = field(default_factory=dict)
    group_fallback: dict[str, str] = field(default_factory=dict)
    exact_zeros: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"quantized {len(self.quantized)} weights"]
        lines += [f"left float: {name} ({why})" for name, why in self.left_float.items()]
        lines += [f"group size does not fit: {name} ({what})"
                  for name, what in self.group_fallback.items()]
        lines += [f"exact zeros become ±Δ/2 (grid without a zero level): {name} ({n} weights)"
                   for name, n in self.exact_zeros.items()]
        return "\n".join(lines)


def _why_float(module: nn.Module, param: str) -> str:
    kind = kind_of(module)
    if kind is None:
        return (f"{type(module).__name__}.{param}: not a registered layer kind; quantize it by "
                "hand or use a supported layer")
    if not kind.default:
        return (f"{type(module).__name__}.{param}: matches layer kind {kind.name!r}, which is "
                "quantized only when filter_fn selects it")
    return "not selected by filter_fn or config"


def left_float(model: nn.Module, quantized_latents: set[int],
               min_size: int = MIN_SIZE) -> dict[str, str]:
    """``{parameter name: reason}`` for every ≥ 2-D parameter of ≥ ``min_size`` elements whose
    tensor is not among ``quantized_latents`` (ids)."""
    out = {}
    for module_name, module in model.named_modules():
        if "parametrizations" in module_name.split("."):
            continue
        for param, p in module._parameters.items():
            if p is None or p.ndim < 2 or p.numel() < min_size or id(p) in quantized_latents:
                continue
            out[f"{module_name}.{param}" if module_name else param] = _why_float(module, param)
    return out


def zero_counts(model: nn.Module) -> dict[str, int]:
    """Quantized weights with exact zeros on a grid without a zero level."""
    from ._quantize import latent_weight, quantized_layers

    out = {}
    for name, fq in quantized_layers(model).items():
        if float(fq.offset) % 1.0 == 0.0:  # zero is a level
            continue
        zeros = int((latent_weight(model, name) == 0).sum())
        if zeros:
            out[name] = zeros
    return out


def record_fallbacks(model: nn.Module, fallbacks: dict[str, str]) -> None:
    """Keep what ``quantize_`` did for layers ``group_size`` did not fit, for the report."""
    if fallbacks:
        _FALLBACKS.setdefault(model, {}).update(fallbacks)
    elif model in _FALLBACKS:
        del _FALLBACKS[model]


def quantization_report(model: nn.Module, min_size: int = MIN_SIZE) -> QuantizationReport:
    """The :class:`QuantizationReport` of a quantized ``model`` (``quantize_`` logs it too)."""
    from ._quantize import latent_weight, quantized_layers

    names = list(quantized_layers(model))
    latents = {id(latent_weight(model, n)) for n in names}
    return QuantizationReport(names, left_float(model, latents, min_size),
                              dict(_FALLBACKS.get(model, {})), zero_counts(model))


@torch.no_grad()
def log_report(model: nn.Module) -> QuantizationReport:
    report = quantization_report(model)
    quiet = not (report.left_float or report.group_fallback or report.exact_zeros)
    LOG.log(logging.INFO if quiet else logging.WARNING, "quantize_: %s", report)
    return report
