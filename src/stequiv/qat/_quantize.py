"""``quantize_`` / ``dequantize_``: put weight fake-quantization on the weights of any model.

A quantized weight is named by its layer (``"features.0"``) when it is the layer's ``weight``, else
by layer and parameter (``"attn.in_proj_weight"``, ``"lstm.weight_hh_l0"``). Both verbs check every
layer before they change any: a call that fails leaves the model as it was.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ._activations import ActivationConfig, quantize_activations_
from ._config import QuantConfig
from ._fake_quant import WeightFakeQuant
from ._hf_guard import guard, unguard
from ._layout import LayerKind, kind_of, supported_kinds
from ._lsq import LearnedStepFakeQuant
from ._report import left_float, log_report, record_fallbacks
from ._rnn import make_copyable

__all__ = ["default_filter", "dequantize_", "latent_weight", "quantize_", "quantized_layers",
           "raw_readers"]

# The layer kinds of the paper's experiments (experiments/_setup.py quantizes exactly these).
DEFAULT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
ConfigSpec = QuantConfig | Mapping[str, QuantConfig | None] | Callable[[str, nn.Module], QuantConfig | None]


def default_filter(module: nn.Module, name: str) -> bool:
    """Linear, ConvNd, ConvTransposeNd, Embedding, MultiheadAttention and transformers' Conv1D."""
    kind = kind_of(module)
    return kind is not None and kind.default


def target_name(module_name: str, param: str) -> str:
    """How a quantized weight is named: the layer for ``weight``, else ``layer.param``."""
    if param == "weight":
        return module_name
    return f"{module_name}.{param}" if module_name else param


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's modules, without the internals of parametrizations."""
    return [(n, m) for n, m in model.named_modules()
            if "parametrizations" not in n.split(".") and not isinstance(m, WeightFakeQuant)]


@dataclass(frozen=True)
class _Plan:
    name: str
    module: nn.Module
    param: str
    fq: WeightFakeQuant


def _check_mapping(model: nn.Module, config: Mapping[str, QuantConfig | None]) -> None:
    known = set()
    for name, module in _layers(model):
        kind = kind_of(module)
        if kind is not None:
            known |= {name} | {target_name(name, p) for p in kind.params(module)}
    for key in config:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=3)
            raise ValueError(f"`config` names layer {key!r}, which the model does not have"
                             + (f"; did you mean {close}?" if close else
                                f"; quantizable layers: {sorted(known)[:20]}"))


def _check_applied(config: Mapping[str, QuantConfig | None], plans: list[_Plan]) -> None:
    applied = {plan.name for plan in plans} | {target_layer(plan) for plan in plans}
    skipped = [k for k, cfg in config.items() if cfg is not None and k not in applied]
    if skipped:
        raise ValueError(f"`config` gives layers {skipped} a QuantConfig but `filter_fn` does not "
                         "select them; select them in filter_fn (RNN/LSTM/GRU are not selected "
                         "by default) or drop them from `config`")


def target_layer(plan: _Plan) -> str:
    """The layer name of a plan's weight (its name without the parameter)."""
    return plan.name if plan.param == "weight" else plan.name.rpartition(".")[0]


def _config_for(config: ConfigSpec, name: str, layer: str, module: nn.Module) -> QuantConfig | None:
    if isinstance(config, QuantConfig):
        return config
    if isinstance(config, Mapping):
        return config[name] if name in config else config.get(layer)
    return config(name, module)


def _plan_weight(name: str, module: nn.Module, param: str, kind: LayerKind,
                 cfg: QuantConfig) -> WeightFakeQuant:
    weight = getattr(module, param)
    where = f"layer {name!r} ({type(module).__name__}.{param})"
    if not torch.is_floating_point(weight):
        raise ValueError(f"{where} is {weight.dtype}, not floating point; leave it out of "
                         "`filter_fn`/`config`")
    if parametrize.is_parametrized(module, param):
        raise ValueError(f"layer {name!r} is already quantized; call dequantize_ first")
    if weight.ndim <= kind.out_axis:
        raise ValueError(f"{where} has shape {tuple(weight.shape)}, but its layer kind "
                         f"{kind.name!r} reads output channels on axis {kind.out_axis}")
    layout = cfg.layout_for(tuple(weight.shape), kind.out_axis, where, kind.batch_axes)
    if layout.axis is not None and getattr(module, "groups", 1) > 1 and kind.out_axis == 1:
        raise ValueError(f"{where}: a grouped transposed convolution stores out/groups channels "
                         "on axis 1, so per-channel Δ would be shared across groups; quantize it "
                         "per tensor")
    matrices = math.prod(weight.shape[:kind.batch_axes])
    fan_in = weight.numel() // (matrices * weight.shape[kind.out_axis])
    q = cfg.quantizer_for(weight, layout, fan_in, where)
    if cfg.learn_step:
        return LearnedStepFakeQuant(cfg.est, q, layout, where=where, dtype=weight.dtype).to(weight.device)
    return WeightFakeQuant(cfg.est, q, weight.shape, layout=layout).to(weight.device)


def _select(model: nn.Module, config: ConfigSpec,
            filter_fn: Callable[[nn.Module, str], bool]) -> list[_Plan]:
    plans: list[_Plan] = []
    shared: dict[int, tuple[_Plan, QuantConfig]] = {}
    for layer, module in _layers(model):
        if not filter_fn(module, layer):
            continue
        kind = kind_of(module)
        if kind is None:
            if any(True for _ in module.parameters(recurse=False)):
                raise ValueError(f"`filter_fn` selects layer {layer!r} of kind "
                                 f"{type(module).__name__}, which stequiv cannot quantize; "
                                 f"supported kinds: {supported_kinds()}")
            continue
        for param in kind.params(module):
            name = target_name(layer, param)
            cfg = _config_for(config, name, layer, module)
            if cfg is None:
                continue
            weight = getattr(module, param)
            if id(weight) in shared:  # a tied weight: quantized once, read by both layers
                first, first_cfg = shared[id(weight)]
                if first_cfg != cfg:
                    raise ValueError(f"layers {first.name!r} and {name!r} share one weight but are "
                                     "given different configs; give both the same QuantConfig")
                plans.append(_Plan(name, module, param, first.fq))
                continue
            plan = _Plan(name, module, param, _plan_weight(name, module, param, kind, cfg))
            shared[id(weight)] = (plan, cfg)
            plans.append(plan)
    return plans


def _fallbacks(config: ConfigSpec, plans: list[_Plan]) -> dict[str, str]:
    """The layers whose layout is not the grouped one their config asked for."""
    out = {}
    for plan in plans:
        layout = plan.fq.layout
        module = plan.module
        cfg = _config_for(config, plan.name, target_layer(plan), module)
        if cfg is not None and cfg.group_size is not None and layout.group_size is None:
            out[plan.name] = (f"group_size {cfg.group_size} does not divide its input size; "
                              f"{cfg.group_fallback}")
    return out


def _check_arguments(model: Any, config: Any, filter_fn: Any, activations: Any) -> None:
    """TypeErrors naming the argument, its value and the fix, before anything is changed."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(config, QuantConfig | Mapping) and not callable(config):
        raise TypeError(f"`config` must be a QuantConfig, a {{name: QuantConfig | None}} mapping or a "
                        f"function (name, module) -> QuantConfig | None, got {config!r}; e.g. "
                        "sq.QuantConfig(estimator='htge', bits=2)")
    if filter_fn is not None and not callable(filter_fn):
        raise TypeError(f"`filter_fn` must be a function (module, name) -> bool or None, got "
                        f"{filter_fn!r}")
    if activations is not None and not isinstance(activations, ActivationConfig):
        raise TypeError(f"`activations` must be a sq.ActivationConfig or None, got {activations!r}")


def quantize_(model: nn.Module, config: ConfigSpec,
              filter_fn: Callable[[nn.Module, str], bool] | None = None, *,
              activations: ActivationConfig | None = None, strict: bool = False,
              log: bool = True) -> nn.Module:
    """Fake-quantize, in place, the weights of ``model``'s layers; returns ``model``.

    Args:
        model: any module.
        config: one :class:`QuantConfig` for every layer, a ``{name: QuantConfig | None}`` mapping
            (a layer name covers all of its weights; ``"layer.param"`` one of them), or a function
            ``(name, module) -> QuantConfig | None`` (None leaves a weight float).
        filter_fn: ``(module, name) -> bool`` choosing the layers (default: :func:`default_filter`;
            RNN/LSTM/GRU weights only when selected here).
        activations: if given, the inputs of the same layers are fake-quantized too
            (:func:`~stequiv.qat.quantize_activations_`).

        strict: refuse the call if a weight of two or more dimensions (of at least 1,024
            elements) would stay float (see :func:`~stequiv.qat.quantization_report`).
        log: log the report (logger ``"stequiv"``: a warning when a weight is left float or
            exact zeros move); ``False`` where layers are left float on purpose.

    A weight shared by several layers (tied embedding and head) is quantized once: every
    selected layer reads the same Q(w). What was left float, layers that ``group_size`` did not
    fit, and exact zeros on a grid without a zero level are logged (logger ``"stequiv"``) and
    returned by :func:`~stequiv.qat.quantization_report`.

    Raises:
        ValueError: no layer was selected, a layer is already quantized, a mapping names an unknown
            layer, a selected layer is of an unsupported kind, or a config does not fit its weight.
            Nothing is changed then.
    """
    _check_arguments(model, config, filter_fn, activations)
    if isinstance(config, Mapping):
        _check_mapping(model, config)
    plans = _select(model, config, filter_fn or default_filter)
    if isinstance(config, Mapping):
        _check_applied(config, plans)
    if not plans:
        raise ValueError(
            "quantize_ selected no layer: the model has no layer matching `filter_fn` and "
            f"`config` (supported kinds: {supported_kinds()}); pass a filter_fn that selects the "
            "layers to quantize"
        )
    for flag, value in (("strict", strict), ("log", log)):
        if not isinstance(value, bool):
            raise TypeError(f"`{flag}` must be True or False, got {value!r}")
    if strict:
        already = {id(latent_weight(model, n)) for n in quantized_layers(model)}
        floating = left_float(model, already | {id(getattr(p.module, p.param)) for p in plans})
        if floating:
            raise ValueError(f"quantize_(strict=True): {len(floating)} weights would stay float: "
                             + "; ".join(f"{k} ({v})" for k, v in list(floating.items())[:10])
                             + ". Select them (filter_fn, config), or pass strict=False")
    for plan in plans:
        parametrize.register_parametrization(plan.module, plan.param, plan.fq, unsafe=True)
        make_copyable(plan.module)
    record_fallbacks(model, _fallbacks(config, plans))
    if log:
        log_report(model)
    guard(model)
    if activations is not None:
        chosen = {id(plan.module) for plan in plans}
        quantize_activations_(model, activations, lambda module, name: id(module) in chosen)
    return model


def _quantized(model: nn.Module) -> dict[str, tuple[nn.Module, str, WeightFakeQuant]]:
    out = {}
    for layer, module in _layers(model):
        if not parametrize.is_parametrized(module):
            continue
        for param, chain in module.parametrizations.items():  # type: ignore[union-attr]
            for p in chain:
                if isinstance(p, WeightFakeQuant):
                    out[target_name(layer, param)] = (module, param, p)
    return out


def quantized_layers(model: nn.Module) -> dict[str, WeightFakeQuant]:
    """``{name: its WeightFakeQuant}`` for every quantized weight, in module order.

    Tied weights appear under each layer that reads them, with the same WeightFakeQuant.
    """
    return {name: fq for name, (_, _, fq) in _quantized(model).items()}


def raw_readers(model: nn.Module) -> dict[int, list[str]]:
    """``{id(parameter): [names that read it unquantized]}``, tied weights included."""
    out: dict[int, list[str]] = {}
    for layer, module in _layers(model):
        for param, p in module._parameters.items():
            if p is not None:
                out.setdefault(id(p), []).append(target_name(layer, param))
    return out


def latent_weight(model: nn.Module, name: str) -> nn.Parameter:
    """The latent (float) weight parameter of quantized weight ``name``."""
    found = _quantized(model).get(name)
    if found is None:
        close = difflib.get_close_matches(name, list(quantized_layers(model)), n=3)
        raise ValueError(f"{name!r} is not a quantized weight of the model"
                         + (f"; did you mean {close}?" if close else ""))
    module, param, _ = found
    return getattr(module.parametrizations, param).original


def dequantize_(model: nn.Module, *, weights: str = "latent") -> nn.Module:
    """Remove fake-quantization in place: keep the ``"latent"`` or the ``"quantized"`` weights."""
    if weights not in ("latent", "quantized"):
        raise ValueError(f"`weights` must be 'latent' or 'quantized', got {weights!r}")
    found = _quantized(model)
    if not found:
        raise ValueError("dequantize_: the model has no quantized layer")
    other = [n for n, (m, p, _) in found.items() if len(getattr(m.parametrizations, p)) != 1]
    if other:
        raise ValueError(f"dequantize_: weights {other} carry other parametrizations besides "
                         "stequiv's; remove those first")
    with torch.no_grad():
        for module, param, _ in found.values():
            parametrize.remove_parametrizations(module, param,
                                                leave_parametrized=weights == "quantized")
    unguard(model)
    return model
