"""Building the pieces of a pair: the Q̂-net, its optimizer and schedule, and its partner."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ... import qat
from ...core import get_estimator, ste_twin
from ...models import build_model
from ...qat import internal as _optim
from ...qat.internal import DEFAULT_LAYERS
from ..config import ACTIVATION_SWAP, LR_TWEAK, PROTOCOL, ExperimentConfig, PairSpec
from ..parallel import convert_sync_batchnorm

__all__ = ["build_partner", "build_qnet", "describe_partner", "estimator_schedule", "follower",
           "make_optimizer"]


def _filter(config: ExperimentConfig, model: nn.Module):
    first = getattr(model, "first_conv", None)
    classifier = getattr(model, "classifier", None)

    def keep(module: nn.Module, name: str) -> bool:
        if not isinstance(module, DEFAULT_LAYERS):
            return False
        if name == classifier:
            return config.quantize_classifier
        if name == first:
            return config.quantize_first_conv
        return True

    return keep


def build_qnet(config: ExperimentConfig, in_channels: int, num_classes: int,
               device: torch.device) -> nn.Module:
    """The Q̂-net: He-uniform init (seeded), weights quantized on a grid spanning the init bound
    (or each row's max |w|: ``config.scale``), per tensor or per group of ``config.group_size``."""
    model = build_model(config.model, num_classes=num_classes, in_channels=in_channels,
                        generator=torch.Generator().manual_seed(config.seed))
    qcfg = qat.QuantConfig(estimator=config.estimator_spec(), bits=config.bits, offset=0.5,
                           scale=config.scale, group_size=config.group_size)
    acts = None if config.activation_bits is None else qat.ActivationConfig(
        estimator=config.activation_estimator, bits=config.activation_bits, range="running")
    qat.quantize_(model, qcfg, filter_fn=_filter(config, model), activations=acts)
    if config.sync_batchnorm:
        model = convert_sync_batchnorm(model, device)
    return model.to(device)


def warmup_cosine(total_steps: int, warmup_fraction: float):
    """Linear warm-up over the first ``warmup_fraction`` of steps, then cosine decay to zero."""
    warm = max(1, round(total_steps * warmup_fraction)) if warmup_fraction > 0 else 0

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def make_optimizer(config: ExperimentConfig, kind: str, model: nn.Module, lr_factor: float,
                   total_steps: int):
    """SGD + momentum or Adam (AdamW where ``config.weight_decay`` > 0: decoupled decay, which
    acts on identical weights in both nets of a pair) and the warm-up + cosine schedule."""
    if kind == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr_sgd * lr_factor, momentum=config.momentum)
    elif config.weight_decay:
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr_adam * lr_factor,
                                betas=tuple(config.betas), weight_decay=config.weight_decay)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=config.lr_adam * lr_factor,
                               betas=tuple(config.betas))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(total_steps, config.warmup_fraction))
    return opt, sched


def _clone_with_lr(model: nn.Module, opt: torch.optim.Optimizer, sched, factor: float):
    """A copy of model, optimizer (state included) and schedule, every learning rate × factor.

    (A plain deepcopy of an optimizer is not enough: the scheduler's step wrapper it carries
    would keep stepping the original.)
    """
    b = copy.deepcopy(model)
    params_b = dict(b.named_parameters())
    param_map = {id(p): params_b[n] for n, p in model.named_parameters()}
    opt_b, origin = _optim.rebuild(opt, param_map, lambda p: factor)
    _optim.map_state(opt, opt_b, param_map, lambda p: None)
    return b, opt_b, _optim.rebuild_scheduler(sched, opt_b, origin)


def build_partner(config: ExperimentConfig, spec: PairSpec, model: nn.Module,
                  opt: torch.optim.Optimizer, sched):
    """The partner of the Q̂-net, from its current weights and optimizer state: ``(model,
    optimizer, scheduler)``.

    The Q̂-net itself with lr × ``config.lr_tweak``, or its STE twin with the experiment's
    adjustments (weights through M, lr × α; see :mod:`._protocol`).
    """
    if spec.partner == LR_TWEAK:
        return _clone_with_lr(model, opt, sched, config.lr_tweak)
    if spec.partner == ACTIVATION_SWAP:  # Section 8: the same net, another activation estimator
        net, net_opt, net_sched = _clone_with_lr(model, opt, sched, 1.0)
        for aq in qat.activation_quantizers(net).values():
            aq.estimator = get_estimator(config.activation_swap_to)
        return net, net_opt, net_sched
    row = PROTOCOL[spec.experiment]
    return qat.to_ste(model, opt, sched, remap_weights=row.remap, scale_lr=row.scale_lr)


def estimator_schedule(config: ExperimentConfig, total_steps: int) -> qat.EstimatorSchedule | None:
    """The run's estimator schedule (``config.schedule``), or None for a fixed estimator."""
    if config.schedule is None:
        return None
    return qat.EstimatorSchedule.ir_net(total_steps, min(config.schedule_stages, total_steps),
                                        *config.schedule_t)


def follower(schedule: qat.EstimatorSchedule | None, spec: PairSpec | None, net: nn.Module,
             opt: torch.optim.Optimizer, sched, step: int):
    """What keeps ``net`` on the schedule: the Q̂-net (``spec`` None) and its Q̂ copies (lr-tweak,
    activation-swap) follow the estimator, the STE twins (baseline, lr-sweep) follow as twins;
    the ablations (unadjusted, m-only, alpha-only), which drop the adjustments, do not follow."""
    if schedule is None:
        return None
    if spec is None or spec.partner in (LR_TWEAK, ACTIVATION_SWAP):
        return qat.ScheduledEstimator(net, schedule, step=step)
    if spec.experiment in ("baseline", "lr-sweep"):
        return qat.ScheduledTwin(net, opt, schedule, scheduler=sched, step=step)
    return None


def describe_partner(config: ExperimentConfig, spec: PairSpec, model: nn.Module) -> str:
    """A label for net b: the configured lr-tweak, or the STE twin's estimator."""
    if spec.partner == LR_TWEAK:
        return PROTOCOL[LR_TWEAK].describe(config.lr_tweak)
    if spec.partner == ACTIVATION_SWAP:
        return PROTOCOL[ACTIVATION_SWAP].describe(config.lr_tweak)
    layer = next(iter(qat.quantized_layers(model).values()))
    twin = ste_twin(layer.estimator, layer.quantizer(), spec.optimizer)  # type: ignore[arg-type]
    return f"{twin.describe()} twin ({spec.experiment})"
