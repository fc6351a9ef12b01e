"""``quantize_`` / ``dequantize_``: put weight fake-quantization on the layers of any model."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from ._activations import ActivationConfig, quantize_activations_
from ._config import QuantConfig
from ._fake_quant import WeightFakeQuant

__all__ = ["default_filter", "dequantize_", "quantize_", "quantized_layers"]

DEFAULT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
ConfigSpec = QuantConfig | Mapping[str, QuantConfig | None] | Callable[[str, nn.Module], QuantConfig | None]


def default_filter(module: nn.Module, name: str) -> bool:
    """Linear and Conv1d/2d/3d layers."""
    return isinstance(module, DEFAULT_LAYERS)


def _config_for(config: ConfigSpec, name: str, module: nn.Module) -> QuantConfig | None:
    if isinstance(config, QuantConfig):
        return config
    if isinstance(config, Mapping):
        return config.get(name)
    return config(name, module)


def quantize_(model: nn.Module, config: ConfigSpec,
              filter_fn: Callable[[nn.Module, str], bool] | None = None, *,
              activations: ActivationConfig | None = None) -> nn.Module:
    """Fake-quantize, in place, the weights of ``model``'s layers; returns ``model``.

    Args:
        model: any module.
        config: one :class:`QuantConfig` for every layer, a ``{layer_name: QuantConfig | None}``
            mapping, or a function ``(name, module) -> QuantConfig | None`` (None leaves a layer float).
        filter_fn: ``(module, name) -> bool`` choosing the layers (default: Linear and Conv1d/2d/3d).
        activations: if given, the inputs of the same layers are fake-quantized too
            (:func:`~stequiv.qat.quantize_activations_`).

    Raises:
        ValueError: no layer was selected, or a layer is already quantized.
    """
    filter_fn = filter_fn or default_filter
    chosen: list[tuple[str, nn.Module, QuantConfig]] = []
    for name, module in model.named_modules():
        if not hasattr(module, "weight") or not isinstance(getattr(module, "weight", None), torch.Tensor):
            continue
        if not filter_fn(module, name):
            continue
        cfg = _config_for(config, name, module)
        if cfg is None:
            continue
        if parametrize.is_parametrized(module, "weight"):
            raise ValueError(f"layer {name!r} is already quantized; call dequantize_ first")
        chosen.append((name, module, cfg))
    if not chosen:
        raise ValueError(
            "quantize_ selected no layer: the model has no Linear/Conv layer matching `filter_fn` "
            "and `config`; pass a filter_fn that selects the layers to quantize"
        )
    for _, module, cfg in chosen:
        weight = module.weight
        fq = WeightFakeQuant(cfg.est, cfg.quantizer_for(weight), weight.shape).to(weight.device)
        parametrize.register_parametrization(module, "weight", fq, unsafe=True)
    if activations is not None:
        names = {name for name, _, _ in chosen}
        quantize_activations_(model, activations, lambda m, n: n in names)
    return model


def quantized_layers(model: nn.Module) -> dict[str, WeightFakeQuant]:
    """``{layer_name: its WeightFakeQuant}`` for every quantized layer, in module order."""
    out = {}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            for p in module.parametrizations.weight:  # type: ignore[union-attr]
                if isinstance(p, WeightFakeQuant):
                    out[name] = p
    return out


def latent_weight(model: nn.Module, name: str) -> nn.Parameter:
    """The latent (float) weight parameter of quantized layer ``name``."""
    module = model.get_submodule(name)
    return module.parametrizations.weight.original  # type: ignore[union-attr,return-value]


def dequantize_(model: nn.Module, *, weights: str = "latent") -> nn.Module:
    """Remove fake-quantization in place: keep the ``"latent"`` or the ``"quantized"`` weights."""
    if weights not in ("latent", "quantized"):
        raise ValueError(f"`weights` must be 'latent' or 'quantized', got {weights!r}")
    layers = quantized_layers(model)
    if not layers:
        raise ValueError("dequantize_: the model has no quantized layer")
    for name in layers:
        module = model.get_submodule(name)
        with torch.no_grad():
            parametrize.remove_parametrizations(module, "weight",
                                                leave_parametrized=weights == "quantized")
    return model
