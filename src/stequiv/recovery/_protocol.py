r"""The recovery protocol: how much of the accuracy lost to PTQ does QAT fine-tuning win back?

Per network, bit width b and optimizer, on one grid (:func:`~._networks.layer_configs`: absmax Δ
per group of 32 inputs, else per channel):

- *float*: the pretrained network's metric;
- *PTQ*: the metric of its weights rounded to nearest on the grid (no training);
- *QAT*: the metric after fine-tuning with fake quantization, once with the STE and once with each
  custom estimator, every custom run beside its STE twin in lockstep (:class:`stequiv.qat.Pair`:
  same batches, optimizer and cosine schedule; the twin's metric is reported as ``twin_qat``);

.. math:: \text{recovery} = \frac{\text{QAT} - \text{PTQ}}{\text{float} - \text{PTQ}}

(torchtune's definition; 1 = all of the loss recovered, < 0 = worse than PTQ). It is ``None``
where PTQ lost less than the network's ``min_gap`` (nothing to recover, the ratio would be noise).
Each custom row carries the twin's Ē and quantized-weight agreement at the end of fine-tuning.

**Points A and B** in fine-tuning (for ``points_estimator``): beside its pair train the Q̂-net
itself with lr × 1.01 (its Ē against the Q̂-net is the floor that training noise sets) and, under
SGD, the unadjusted STE net (to_ste without M and α). Point A holds when Ē(twin)/Ē(lr-tweak) is
at most ~1.5 (the twin is as close as training noise allows), Point B when
Ē(unadjusted)/Ē(twin) is at least ~3 (the adjustments matter). Beside them, the twin trained
alone with its *own* clip factor (``ebar_own_clip``): the pair's twin shares the Q̂-net's.

**Weight EMA** (``ema_decay``): every pair keeps an EMA of both nets' weights; each row reports
Ē and agreement between the two EMA copies (``ebar_ema``, ``agreement_ema``).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..qat import Pair, alignment, quantize_, to_ste
from ._networks import NETWORKS, Network, layer_configs, select

__all__ = ["PRESETS", "RecoveryPreset", "recovery_ratio", "run_rows"]

log = logging.getLogger("stequiv")
OPTIMIZERS = ("sgd", "adamw")
SGD_MOMENTUM = 0.9
ADAMW_DECAY = 0.01
LR_TWEAK = 1.01  # Point A's floor: the Q̂-net itself with lr × 1.01 (the paper's protocol)
MIN_GAP = {"crepe-tiny": 0.02, "char-lstm": 0.02, "transformer": 0.02}  # RPA; bits per char/byte


@dataclass(frozen=True)
class RecoveryPreset:
    """What one recovery run covers.

    ``steps``, ``batch_size`` and ``eval_size`` (tones for crepe, characters for the char-LSTM) are
    given per network. ``clip_grad_norm``: the global-norm clip of every run (a Pair's twin uses
    the Q̂-net's clip factor, which keeps it exact). ``threads``: torch's intra-op threads while
    the run lasts (1 is fastest on a small shared machine; None leaves torch's setting).
    """

    name: str
    networks: tuple[str, ...]
    bits: tuple[int, ...]
    optimizers: tuple[str, ...]
    estimators: tuple[str, ...]  # custom estimators; the STE always runs too
    steps: Mapping[str, int] = field(default_factory=dict)
    batch_size: Mapping[str, int] = field(default_factory=dict)
    eval_size: Mapping[str, int] = field(default_factory=dict)
    clip_grad_norm: float | None = 1.0
    threads: int | None = 1
    points_estimator: str | None = "htge"  # also trains the Point A/B partners beside its pair
    ema_decay: float | None = 0.9  # a weight EMA in every pair: its Ē is reported too
    seed: int = 0

    def __post_init__(self) -> None:
        for net in self.networks:
            if net not in NETWORKS:
                raise ValueError(f"`networks`: unknown network {net!r}; known: {sorted(NETWORKS)}")
            for key in ("steps", "batch_size", "eval_size"):
                value = getattr(self, key).get(net)
                if not (isinstance(value, int) and value >= 1):
                    raise ValueError(f"`{key}` must give network {net!r} an int >= 1, got {value!r}")
        for opt in self.optimizers:
            if opt not in OPTIMIZERS:
                raise ValueError(f"`optimizers`: unknown optimizer {opt!r}; known: {OPTIMIZERS}")
        if "ste" in self.estimators:
            raise ValueError("`estimators` lists the custom estimators; the STE always runs")
        if self.points_estimator is not None and self.points_estimator not in self.estimators:
            raise ValueError(f"`points_estimator` {self.points_estimator!r} is not one of "
                             f"`estimators` {self.estimators}; name one of them or None")
        if not self.bits or min(self.bits) < 1:
            raise ValueError(f"`bits` must be a non-empty list of widths >= 1, got {self.bits}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("steps", "batch_size", "eval_size"):
            out[key] = dict(getattr(self, key))
        return out


CUSTOM = ("htge", "dsq", "qn")
PRESETS: dict[str, RecoveryPreset] = {
    "recovery-quick": RecoveryPreset(
        "recovery-quick", tuple(NETWORKS), (4, 2), OPTIMIZERS, CUSTOM,
        steps={"crepe-tiny": 40, "char-lstm": 80, "transformer": 60},
        batch_size={"crepe-tiny": 8, "char-lstm": 32, "transformer": 16},
        eval_size={"crepe-tiny": 256, "char-lstm": 400, "transformer": 64}),
    "recovery": RecoveryPreset(
        "recovery", tuple(NETWORKS), (8, 4, 3, 2), OPTIMIZERS, CUSTOM,
        steps={"crepe-tiny": 300, "char-lstm": 600, "transformer": 400},
        batch_size={"crepe-tiny": 16, "char-lstm": 64, "transformer": 32},
        eval_size={"crepe-tiny": 1024, "char-lstm": 3000, "transformer": 512}),
}


def recovery_ratio(float_metric: float, ptq: float, qat: float, higher_is_better: bool,
                   min_gap: float) -> float | None:
    """(QAT − PTQ)/(float − PTQ), or None where PTQ lost less than ``min_gap``."""
    gap = (float_metric - ptq) if higher_is_better else (ptq - float_metric)
    if not gap >= min_gap:
        return None
    return (qat - ptq) / (float_metric - ptq)


def _optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=SGD_MOMENTUM)
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=ADAMW_DECAY)


def _quantized(base: nn.Module, estimator: str, bits: int) -> nn.Module:
    model = copy.deepcopy(base)
    return quantize_(model, layer_configs(model, estimator, bits), filter_fn=select)


def _setup(net: Network, base: nn.Module, estimator: str, bits: int, opt_name: str,
           preset: RecoveryPreset) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    model = _quantized(base, estimator, bits)
    opt = _optimizer(opt_name, model, net.lr[opt_name])
    return model, opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=preset.steps[net.name])


def _batches(net: Network, preset: RecoveryPreset) -> Any:
    return net.batches(preset.steps[net.name], preset.batch_size[net.name], preset.seed)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, batch: Any,
                net: Network, clip: float | None) -> None:
    opt.zero_grad(set_to_none=True)
    loss = net.loss(model, batch)
    if not math.isfinite(loss.item()):
        raise FloatingPointError(f"{net.name}: a fine-tuning loss is {loss.item()}")
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    sched.step()


def _fine_tune_ste(net: Network, base: nn.Module, bits: int, opt_name: str,
                   preset: RecoveryPreset) -> nn.Module:
    """The STE run: one net (the STE's twin is itself), trained as a Pair's Q̂-net is."""
    model, opt, sched = _setup(net, base, "ste", bits, opt_name, preset)
    for batch in _batches(net, preset):
        _train_step(model, opt, sched, batch, net, preset.clip_grad_norm)
    return model


@dataclass
class _Run:
    """A pair and, for Points A and B, the partners that measure the floor and the ablation."""

    pair: Pair
    partners: dict[str, tuple[nn.Module, torch.optim.Optimizer, Any]]

    def points(self) -> dict[str, float | None]:
        """Ē against the Q̂-net of: the twin; the lr-tweaked Q̂-net (the training-noise floor:
        Point A); the unadjusted STE net (SGD: neither M nor α, Point B); the twin trained alone,
        clipped by its own gradient norm (what a user of the STE net alone gets)."""
        q = self.pair.model
        remap = {"lr-tweak": False, "unadjusted": False, "own-clip": self.pair.kind == "sgd"}
        ebar = {k: alignment(q, m, remap=remap[k]).ebar for k, (m, _, _) in self.partners.items()}
        twin = self.pair.alignment().ebar
        tweak, plain = ebar["lr-tweak"], ebar.get("unadjusted")
        return {"ebar_twin": twin, "ebar_lr_tweak": tweak, "ebar_unadjusted": plain,
                "ebar_own_clip": ebar["own-clip"],
                "point_a": twin / tweak if tweak > 0 else None,
                "point_b": None if plain is None or twin == 0 else plain / twin}


def _fine_tune_pair(net: Network, base: nn.Module, estimator: str, bits: int, opt_name: str,
                    preset: RecoveryPreset, points: bool) -> _Run:
    model, opt, sched = _setup(net, base, estimator, bits, opt_name, preset)
    partners = {}
    if points:
        tweak = copy.deepcopy(model)
        tweak_opt = _optimizer(opt_name, tweak, net.lr[opt_name] * LR_TWEAK)
        partners["lr-tweak"] = (tweak, tweak_opt, torch.optim.lr_scheduler.CosineAnnealingLR(
            tweak_opt, T_max=preset.steps[net.name]))
        if opt_name == "sgd":  # under Adam the unadjusted STE net is the twin itself
            plain = to_ste(model, opt, sched, remap_weights=False, scale_lr=False)
            partners["unadjusted"] = (plain.model, plain.optimizer, plain.scheduler)
        own = to_ste(model, opt, sched)
        partners["own-clip"] = (own.model, own.optimizer, own.scheduler)
    run = _Run(Pair(model, opt, sched, clip_grad_norm=preset.clip_grad_norm,
                    ema_decay=preset.ema_decay), partners)
    for batch in _batches(net, preset):
        run.pair.step(batch, net.loss)
        for m, o, s in partners.values():
            _train_step(m, o, s, batch, net, preset.clip_grad_norm)
    return run


def _row(net: Network, bits: int, opt: str, estimator: str, float_metric: float, ptq: float,
         qat: float, twin: float | None, ebar: float | None, agreement: float | None) -> dict:
    def ratio(value: float | None) -> float | None:
        return None if value is None else recovery_ratio(float_metric, ptq, value,
                                                         net.higher_is_better, MIN_GAP[net.name])
    return {"network": net.name, "metric": net.metric, "bits": bits, "optimizer": opt,
            "estimator": estimator, "float": float_metric, "ptq": ptq, "qat": qat,
            "recovery": ratio(qat), "twin_qat": twin, "twin_recovery": ratio(twin),
            "higher_is_better": net.higher_is_better, "ebar": ebar, "agreement": agreement}


def run_rows(preset: RecoveryPreset, cache: Path | None = None
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every recovery row of ``preset`` (see the module docs), in network, bits, optimizer order,
    and the Points A/B rows of ``preset.points_estimator``. ``cache``: where a network pretrained
    here (the transformer) keeps its float checkpoint."""
    rows: list[dict[str, Any]] = []
    points: list[dict[str, Any]] = []
    for name in preset.networks:
        net = NETWORKS[name]
        size = preset.eval_size[name]
        base = net.build(cache)
        float_metric = net.evaluate(base, size)
        log.info("%s: float %s %.4f", name, net.metric, float_metric)
        for bits in preset.bits:
            ptq = net.evaluate(_quantized(base, "ste", bits), size)
            for opt in preset.optimizers:
                qat = net.evaluate(_fine_tune_ste(net, base, bits, opt, preset), size)
                rows.append(_row(net, bits, opt, "ste", float_metric, ptq, qat, None, None, None)
                            | {"ebar_ema": None, "agreement_ema": None})
                for est in preset.estimators:
                    run = _fine_tune_pair(net, base, est, bits, opt, preset,
                                          points=est == preset.points_estimator)
                    pair, align = run.pair, run.pair.alignment()
                    ema = None if preset.ema_decay is None else run.pair.alignment(ema=True)
                    rows.append(_row(net, bits, opt, est, float_metric, ptq,
                                     net.evaluate(pair.model, size), net.evaluate(pair.twin, size),
                                     align.ebar, align.agreement))
                    rows[-1] |= {"ebar_ema": ema and ema.ebar, "agreement_ema": ema and ema.agreement}
                    if run.partners:
                        points.append({"network": name, "bits": bits, "optimizer": opt,
                                       "estimator": est, **run.points()})
                log.info("%s %d-bit %s: ptq %.4f, %s", name, bits, opt, ptq,
                         ", ".join(f"{r['estimator']} {r['qat']:.4f}" for r in rows[-4:]))
    return rows, points
