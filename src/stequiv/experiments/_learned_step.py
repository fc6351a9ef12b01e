r"""Learned step sizes (LSQ) and the STE twin: how far the equivalence holds (docs/design.md).

A Q̂-net whose weights are quantized with a learned Δ per layer (LSQ, Esser et al. 2020: the
quantizer of :mod:`stequiv.qat._activations` with ``range="learned"``, as a weight
parametrization), trained by SGD, against two STE twins that start at w̃ = M(w; Δ), Δ̃ = Δ:

* **free**: the twin learns its own Δ̃ with its own (STE) LSQ gradient — a plain STE net;
* **tied**: the twin's Δ̃ is set to the Q̂-net's Δ after every step and its weights are remapped,
  w̃ ← M(M⁻¹(w̃; Δ̃_old); Δ_new) — the best twin the derivation allows;
* **lr-tweak** (the floor): the Q̂-net itself with every learning rate × 1.01, compared directly.

Ē (as Eq. 5, per range length Δ(u − l)) and agreement after ``steps`` steps, at η and η/10.

Run: PYTHONPATH=src python -m stequiv.experiments._learned_step
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from ..core import UniformQuantizer, alpha, get_estimator, remap, ste_twin, unremap
from ..qat._activations import ActivationConfig, ActivationFakeQuant

__all__ = ["LearnedStepResult", "learned_step_pair"]

ESTIMATOR = {"name": "htge", "t": 3.0}
BITS = 2


@dataclass(frozen=True)
class LearnedStepResult:
    """Ē and agreement of one twin after the run, and the relative gap of the step sizes."""

    twin: str
    lr: float
    ebar: float
    agreement: float
    delta_gap: float


def _qnet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                          nn.Linear(64, 10)).double()
    cfg = ActivationConfig(estimator=ESTIMATOR, bits=BITS, range="learned")
    for name in ("0", "2"):
        layer = model.get_submodule(name)
        fq = ActivationFakeQuant(cfg, name)
        with torch.no_grad():
            fq(layer.weight)  # Δ and the zero point from the initial weight's range
        parametrize.register_parametrization(layer, "weight", fq)
    return model


def _layers(model: nn.Module) -> dict[str, tuple[nn.Parameter, ActivationFakeQuant]]:
    out = {}
    for name in ("0", "2"):
        p = model.get_submodule(name).parametrizations.weight  # type: ignore[union-attr]
        out[name] = (p.original, p[0])
    return out


def _grid(fq: ActivationFakeQuant, delta: float | None = None) -> UniformQuantizer:
    d = float(fq.delta.detach()) if delta is None else delta
    return UniformQuantizer(delta=d, offset=float(fq.zero_point), lower=0, upper=fq.upper)


def _twin(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model)
    est = get_estimator(ESTIMATOR)
    with torch.no_grad():
        for w, fq in _layers(twin).values():
            q = _grid(fq)
            w.copy_(torch.from_numpy(remap(est, q, w.detach().numpy())))
            fq.estimator = ste_twin(est, q)
    return twin


def _optimizer(model: nn.Module, lr: float, weight_factor: float, train_delta: bool) -> torch.optim.SGD:
    latents = {id(w) for w, _ in _layers(model).values()}
    deltas = {id(fq.delta) for _, fq in _layers(model).values()}
    groups = [{"params": [p for p in model.parameters() if id(p) in latents], "lr": lr * weight_factor},
              {"params": [p for p in model.parameters() if id(p) not in latents | deltas], "lr": lr}]
    if train_delta:
        groups.append({"params": [p for p in model.parameters() if id(p) in deltas], "lr": lr})
    return torch.optim.SGD(groups, lr=lr)


@torch.no_grad()
def _follow_delta(twin: nn.Module, qnet: nn.Module) -> None:
    """Tied twin: Δ̃ := Δ, weights remapped w̃ ← M(M⁻¹(w̃; Δ̃_old); Δ_new)."""
    est = get_estimator(ESTIMATOR)
    for (w, fq), (_, fq_q) in zip(_layers(twin).values(), _layers(qnet).values(), strict=True):
        old, new = _grid(fq), _grid(fq_q)
        w.copy_(torch.from_numpy(remap(est, new, unremap(est, old, w.detach().numpy()))))
        fq.delta.copy_(fq_q.delta)


@torch.no_grad()
def _measure(qnet: nn.Module, twin: nn.Module, through_m: bool) -> tuple[float, float, float]:
    est = get_estimator(ESTIMATOR)
    err = agree = n = gap = 0.0
    for (w, fq), (w_t, fq_t) in zip(_layers(qnet).values(), _layers(twin).values(), strict=True):
        q, q_t = _grid(fq), _grid(fq_t)
        mapped = remap(est, q, w.numpy()) if through_m else w.numpy()
        err += float(np.abs(mapped - w_t.numpy()).sum() / (q.delta_array * fq.upper))
        agree += float((q.code(w.numpy()) == q_t.code(w_t.numpy())).sum())
        n += w.numel()
        gap = max(gap, abs(float(fq_t.delta) / float(fq.delta) - 1.0))
    return err / n, agree / n, gap


def learned_step_pair(lr: float, steps: int = 40, seed: int = 0) -> list[LearnedStepResult]:
    """Train the Q̂-net and both twins ``steps`` SGD steps on one random stream; measure each twin."""
    qnet = _qnet(seed)
    a = float(alpha(ESTIMATOR, _grid(_layers(qnet)["0"][1])))
    nets = {"q": (qnet, _optimizer(qnet, lr, 1.0, True))}
    for name in ("free", "tied"):
        twin = _twin(qnet)
        nets[name] = (twin, _optimizer(twin, lr, a, name == "free"))
    tweak = copy.deepcopy(qnet)
    nets["lr-tweak"] = (tweak, _optimizer(tweak, lr * 1.01, 1.0, True))
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        x = torch.randn(32, 64, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (32,), generator=g)
        for net, opt in nets.values():
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
        _follow_delta(nets["tied"][0], qnet)
    return [LearnedStepResult(name, lr, *_measure(qnet, nets[name][0], name != "lr-tweak"))
            for name in ("free", "tied", "lr-tweak")]


def main() -> None:
    """Print the table of docs/reproduction.md."""
    print("| twin | η | Ē | agreement | max relative Δ gap |\n|---|---|---|---|---|")
    for lr in (1e-2, 1e-3):
        for r in learned_step_pair(lr):
            print(f"| {r.twin} | {r.lr:g} | {r.ebar:.3g} | {r.agreement:.4f} | {r.delta_gap:.3g} |")


if __name__ == "__main__":
    main()
