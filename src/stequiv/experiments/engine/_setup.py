"""Building the pieces of a pair: the Q̂-net, its optimizer and schedule (its partners: :mod:`._partners`)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ... import qat
from ...models import build_model
from ...qat import internal as _optim
from ...qat.internal import DEFAULT_LAYERS
from ..config import ExperimentConfig
from ..parallel import convert_sync_batchnorm

__all__ = ["build_qnet", "clone_with_lr", "estimator_schedule", "make_optimizer", "warmup_cosine"]


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
    # the first conv and the classifier stay float by the protocol's choice, not by accident
    qat.quantize_(model, qcfg, filter_fn=_filter(config, model), activations=acts, log=False)
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


def clone_with_lr(model: nn.Module, opt: torch.optim.Optimizer, sched, factor: float):
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


def estimator_schedule(config: ExperimentConfig, total_steps: int) -> qat.EstimatorSchedule | None:
    """The run's estimator schedule (``config.schedule``), or None for a fixed estimator."""
    if config.schedule is None:
        return None
    return qat.EstimatorSchedule.ir_net(total_steps, min(config.schedule_stages, total_steps),
                                        *config.schedule_t)
