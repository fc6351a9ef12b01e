"""``to_ste`` / ``from_ste``: convert a Q̂-model and its optimizer into the STE twin, and back.

Tables 1 and 2 of the paper, per quantized layer (its own Δ and estimator):

====================  ==========================  ========================
                      SGD-like                    Adam-like
====================  ==========================  ========================
estimator             STE (PWL, Appendix G)       STE (PWL, Appendix G)
latent weights        M(w)                        w
learning rate         α·η (quantized weights)     η
optimizer state       see :mod:`._optim`          see :mod:`._optim`
====================  ==========================  ========================

Nothing is modified in place and nothing half-converted is returned: every check runs before the
deep copy is touched. Activation quantizers (:mod:`._activations`) are copied unchanged: the
theorem is about weights, and an activation estimator has no twin (Section 8); a log line says so.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..core import Estimator, NoRemapError, UniformQuantizer, get_estimator, ste_twin
from ..core._remap import plan_for, remap, unremap
from . import _optim
from ._activations import activation_quantizers
from ._fake_quant import WeightFakeQuant
from ._lsq import LearnedStepFakeQuant
from ._maps import weight_map
from ._quantize import latent_weight, quantized_layers, raw_readers

__all__ = ["Conversion", "from_ste", "to_ste"]

Scheduler = torch.optim.lr_scheduler.LRScheduler
log = logging.getLogger("stequiv")


@dataclass(frozen=True)
class _LayerPlan:
    """How one quantized layer converts: the new estimator, weight map, lr factor, state scale."""

    name: str
    target: Estimator
    lr_factor: float
    weights: Callable[[torch.Tensor], torch.Tensor]
    state_scale: Callable[[torch.Tensor], torch.Tensor]


def _identity(w: torch.Tensor) -> torch.Tensor:
    return w


def slope_points(est: Estimator, fq: WeightFakeQuant, w: torch.Tensor) -> torch.Tensor:
    """Where ``est``'s Q̂′ is evaluated for weights w: w (weight units) or its grid coordinate, in
    the weights' dtype (float64 for half precision, whose range 1/Q̂′ can exceed)."""
    x = w.detach() if est.units == "weight" else fq.grid(w)
    return x if x.dtype in (torch.float32, torch.float64) else x.double()


def reciprocal_slope_at(est: Estimator, q: UniformQuantizer, x: torch.Tensor,
                        where_zero: float) -> torch.Tensor:
    """s = 1/Q̂′(x) where Q̂′ > 0, else ``where_zero``, at points x from :func:`slope_points`."""
    g = est.gradient(x, q.lower, q.upper, q.offset)
    positive = g > 0
    return torch.where(positive, 1.0 / torch.where(positive, g, 1.0), where_zero)


def _reciprocal_slope(est: Estimator, fq: WeightFakeQuant, q: UniformQuantizer,
                      where_zero: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """s(w) = 1/Q̂′(w) where Q̂′ > 0, else ``where_zero`` (the twin's PWL is zero there too).

    SGD's state scale M′/α is this with ``where_zero = 1/α`` (M′ = α/Q̂′, and 1 where M is
    continued by translation); Adam's is this with 1. Evaluated in torch, on the weights' device.
    """
    return lambda w: reciprocal_slope_at(est, q, slope_points(est, fq, w), where_zero)


def _plan_layer(name: str, fq: WeightFakeQuant, kind: str, estimator: Estimator,
                reverse: bool) -> _LayerPlan:
    q = fq.quantizer()
    try:
        twin = ste_twin(estimator, q, kind)  # type: ignore[arg-type]
        a = plan_for(estimator, q).alpha
    except NoRemapError as err:
        hint = ("Appendix G: only estimators that vanish *outside* the range have a (PWL) twin"
                if kind == "sgd" else "Theorem 5.2 also needs Q̂′ >= L- > 0")
        raise ValueError(f"layer {name!r}: {err}. {hint}") from err
    if kind == "sgd":
        sgd_scale = _reciprocal_slope(estimator, fq, q, 1.0 / a)
        forward = weight_map(remap, estimator, fq)
        backward = weight_map(unremap, estimator, fq)
        if reverse:
            return _LayerPlan(name, estimator, 1.0 / a, backward,
                              lambda w_ste: 1.0 / sgd_scale(backward(w_ste)))
        return _LayerPlan(name, twin, a, forward, sgd_scale)
    adam = _reciprocal_slope(estimator, fq, q, 1.0)
    if reverse:
        return _LayerPlan(name, estimator, 1.0, _identity, lambda w: 1.0 / adam(w))
    return _LayerPlan(name, twin, 1.0, _identity, adam)


@dataclass(frozen=True)
class Conversion:
    """What :func:`to_ste` / :func:`from_ste` return: the new model, optimizer and scheduler.

    ``optimizer`` is None when none was given, ``scheduler`` likewise. As a sequence (unpacking,
    ``len``, indexing) it is ``(model, optimizer)``, or ``(model, optimizer, scheduler)`` when a
    scheduler was converted: the tuples that ``to_ste`` returned before it had a name.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    scheduler: Scheduler | None = None

    def _parts(self) -> tuple:
        parts = (self.model, self.optimizer, self.scheduler)
        return parts if self.scheduler is not None else parts[:2]

    def __iter__(self) -> Iterator:
        return iter(self._parts())

    def __len__(self) -> int:
        return len(self._parts())

    def __getitem__(self, index: int | slice) -> Any:
        """``result[0]`` is the model, ``result[1]`` the optimizer, as the tuple it replaces."""
        return self._parts()[index]


def _check_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer | None,
                     scheduler: Scheduler | None, kind: str | None, latents: set[int],
                     approximate: bool) -> str:
    if optimizer is None:
        if kind not in ("sgd", "adam"):
            raise ValueError("without an optimizer, give `optimizer_kind='sgd'` or 'adam'")
        if scheduler is not None:
            raise ValueError("`scheduler` must drive the `optimizer` passed alongside it")
        return kind
    if scheduler is not None and scheduler.optimizer is not optimizer:
        raise ValueError("`scheduler` must drive the `optimizer` passed alongside it")
    model_params = {id(p) for p in model.parameters()}
    foreign = [p for g in optimizer.param_groups for p in g["params"] if id(p) not in model_params]
    if foreign:
        raise ValueError(f"the optimizer holds {len(foreign)} parameter(s) that are not the "
                         "model's; pass the optimizer that trains this model")
    return _optim.resolve(optimizer, latents, approximate).kind


@torch.no_grad()
def _check_raw_readers(model: nn.Module, plans: dict[str, _LayerPlan],
                       latents: dict[str, nn.Parameter]) -> None:
    """Refuse when a layer reads, unquantized, a tied weight whose values the conversion changes."""
    readers = raw_readers(model)
    for name, plan in plans.items():
        p = latents[name]
        if readers.get(id(p)) and plan.weights is not _identity and not torch.equal(plan.weights(p), p):
            reader = readers[id(p)][0]
            raise ValueError(
                f"layer {reader!r} reads the weight of quantized layer {name!r} unquantized (a "
                f"tied weight); the conversion changes that weight (M(w) ≠ w), so {reader!r} "
                f"would compute another function in the new model. Quantize {reader!r} too (the "
                "tied weight is then quantized once and both read Q(w)), untie the weights, or "
                "use an Adam-like optimizer (no remap)")


def _convert(model: nn.Module, optimizer: torch.optim.Optimizer | None,
             scheduler: Scheduler | None, kind: str | None,
             estimators: Callable[[str, WeightFakeQuant], Estimator], reverse: bool,
             remap_weights: bool = True, scale_lr: bool = True,
             approximate: bool = False) -> Conversion:
    layers = quantized_layers(model)
    if not layers:
        raise ValueError("the model has no quantized layer: call stequiv.quantize_(model, config) first")
    latents = {name: latent_weight(model, name) for name in layers}
    kind = _check_optimizer(model, optimizer, scheduler, kind, {id(p) for p in latents.values()},
                            approximate)
    plans = {name: _plan_layer(name, fq, kind, estimators(name, fq), reverse)
             for name, fq in layers.items()}
    by_latent = {id(latents[n]): plans[n] for n in layers}
    if remap_weights:
        _check_raw_readers(model, plans, latents)

    twin_model = copy.deepcopy(model)
    kept = activation_quantizers(twin_model)
    if kept:
        log.info("the twin keeps the activation quantizers of %s unchanged (the equivalence is "
                 "about weights; activation estimators have no twin)", ", ".join(kept))
    twin_params = dict(twin_model.named_parameters())
    param_map = {id(p): twin_params[n] for n, p in model.named_parameters()}
    twin_layers = quantized_layers(twin_model)
    done: set[int] = set()  # a tied weight converts once
    with torch.no_grad():
        for name, plan in plans.items():
            twin_layers[name].estimator = plan.target
            # the record alignment reads (a Q̂-net made back by from_ste is not a twin)
            twin_layers[name].weights_remapped = (
                None if reverse else remap_weights and plan.weights is not _identity)
            p = latents[name]
            if remap_weights and plan.weights is not _identity and id(p) not in done:
                done.add(id(p))
                param_map[id(p)].copy_(plan.weights(p))
    _freeze_learned_steps(twin_layers, frozen=not reverse)
    if optimizer is None:
        return Conversion(twin_model, None)
    exact = remap_weights and scale_lr
    twin_opt, origin = _optim.rebuild(
        optimizer, param_map,
        lambda p: by_latent[id(p)].lr_factor if scale_lr and id(p) in by_latent else 1.0)
    _optim.map_state(optimizer, twin_opt, param_map,
                     lambda p: by_latent[id(p)].state_scale(p) if exact and id(p) in by_latent else None)
    twin_sched = None if scheduler is None else _optim.rebuild_scheduler(scheduler, twin_opt, origin)
    return Conversion(twin_model, twin_opt, twin_sched)


def _freeze_learned_steps(layers: dict[str, WeightFakeQuant], frozen: bool) -> None:
    """The twin's learned Δ follows the Q̂-net's (:class:`~stequiv.qat.LearnedStepTwin`): frozen,
    so that its optimizer skips it; the Q̂-net of :func:`from_ste` learns its Δ again."""
    learned = {n: fq for n, fq in layers.items() if isinstance(fq, LearnedStepFakeQuant)}
    for fq in learned.values():
        fq.delta.requires_grad_(not frozen)
    if learned and frozen:
        log.info("the twin's learned Δ of %s is frozen: drive it with LearnedStepTwin(twin, "
                 "twin_optimizer, qnet).step() after every step", ", ".join(learned))


def to_ste(model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
           scheduler: Scheduler | None = None, *, optimizer_kind: str | None = None,
           remap_weights: bool = True, scale_lr: bool = True,
           approximate: bool = False) -> Conversion:
    """The STE twin of a Q̂-model, as a :class:`Conversion` (unpacks as ``twin, twin_opt``).

    Works at the start of training or in the middle of it (optimizer state is mapped, see
    :mod:`stequiv.qat._optim`). Without an optimizer give ``optimizer_kind`` ('sgd' or 'adam').
    With a scheduler the result unpacks as ``twin, twin_opt, twin_sched``.

    ``remap_weights=False`` / ``scale_lr=False`` drop M or α (SGD only): the ablations of the
    paper's Point B ("unadjusted" drops both). The optimizer state is then copied unscaled.

    Activation quantizers are kept exactly as they are (same estimator, range and state): only
    weights have a twin. A log line on the ``stequiv`` logger names them.

    A learned Δ (``QuantConfig(learn_step=True)``) is copied and frozen in the twin: the twin must
    follow the Q̂-net's Δ, through :class:`~stequiv.qat.LearnedStepTwin` (docs/design.md).

    The optimizer's family decides the twin (docs/optimizers.md): SGD, the Adam family, RMSprop,
    Adagrad, Lion and schedule-free AdamW convert; Muon, Adafactor, Shampoo/SOAP, coupled weight
    decay and RAdam's unrectified first steps have no twin and are refused with the reason and
    the measured drift, unless ``approximate=True`` (the nearest twin, with a warning). Gradient
    clipping and weight EMA happen outside the optimizer and are not seen here.
    """
    return _convert(model, optimizer, scheduler, optimizer_kind, lambda name, fq: fq.estimator,
                    reverse=False, remap_weights=remap_weights, scale_lr=scale_lr,
                    approximate=approximate)


def from_ste(model: nn.Module, estimator: str | dict | Estimator,
             optimizer: torch.optim.Optimizer | None = None, scheduler: Scheduler | None = None,
             *, optimizer_kind: str | None = None, approximate: bool = False) -> Conversion:
    """The Q̂-model that an STE model mirrors (weights M⁻¹, learning rates /α, state mapped back).

    ``estimator`` is the Q̂ to use on every quantized layer (the inverse of :func:`to_ste`);
    ``approximate`` as there.
    """
    est = get_estimator(estimator)
    return _convert(model, optimizer, scheduler, optimizer_kind, lambda name, fq: est, reverse=True,
                    approximate=approximate)
