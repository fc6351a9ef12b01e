r"""Learned step sizes (LSQ) and the STE twin: how far the equivalence holds (docs/design.md).

A Q̂-net whose hidden weights are quantized with a learned Δ (``QuantConfig(learn_step=True)``:
LSQ's gradient and scale, per tensor or per output channel), trained by SGD + momentum or Adam,
against three partners that start from it on the same batches:

* **free**: its STE twin (:func:`~stequiv.qat.to_ste`) learning its own Δ̃ with the STE's LSQ
  gradient — a plain LSQ + STE net;
* **tied**: its STE twin told the Q̂-net's Δ after every step (:class:`~stequiv.qat.LearnedStepTwin`:
  w̃ ← M(M⁻¹(w̃; Δ_old); Δ_new), state rebased) — the best twin the derivation allows;
* **lr-tweak** (the floor): the Q̂-net itself with every learning rate × ``lr_tweak`` (1.01, the
  experiments' default).

Measured after ``steps`` steps: Ē (Eq. 5, per range length; through M for SGD, latent for Adam),
agreement of the quantized codes, the largest relative gap of the step sizes, and the loss gap
|L_partner − L_Q̂| on a held-out batch; at η and η/10 (second order: Ē falls ~100×).

Run: PYTHONPATH=src python examples/learned_step.py
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from stequiv import qat
from stequiv.experiments.config import default_of

__all__ = ["LearnedStepResult", "learned_step_pair"]

ESTIMATOR = {"name": "htge", "t": 3.0}
BITS = 2
LEARNING_RATES = {"sgd": (1e-2, 1e-3), "adam": (1e-3, 1e-4)}
PARTNERS = ("free", "tied", "lr-tweak")
LR_TWEAK = default_of("lr_tweak")


@dataclass(frozen=True)
class LearnedStepResult:
    """One partner after the run: Ē, agreement, step-size gap and loss gap against the Q̂-net."""

    twin: str
    lr: float
    ebar: float
    agreement: float
    delta_gap: float
    loss_gap: float


def _qnet(seed: int, per_channel: bool) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                          nn.Linear(64, 10)).double()
    config = qat.QuantConfig(estimator=ESTIMATOR, bits=BITS, scale="absmax", per_channel=per_channel,
                             learn_step=True)
    return qat.quantize_(model, config, filter_fn=lambda module, name: name in ("0", "2"))


def _optimizer(kind: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    if kind == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return torch.optim.Adam(model.parameters(), lr=lr, eps=1e-12)  # Theorem 5.2: ε → 0


def _partners(qnet: nn.Module, opt: torch.optim.Optimizer, kind: str, lr: float):
    """``{name: (model, optimizer, follower or None)}`` for the three partners."""
    out = {}
    for name in ("free", "tied"):
        twin, twin_opt = qat.to_ste(qnet, opt)
        if name == "free":
            for fq in qat.learned_step_layers(twin).values():
                fq.delta.requires_grad_(True)
        out[name] = (twin, twin_opt, qat.LearnedStepTwin(twin, twin_opt, qnet) if name == "tied" else None)
    tweak = copy.deepcopy(qnet)
    out["lr-tweak"] = (tweak, _optimizer(kind, tweak, lr * LR_TWEAK), None)
    return out


@torch.no_grad()
def _delta_gap(a: nn.Module, b: nn.Module) -> float:
    pairs = zip(qat.learned_step_layers(a).values(), qat.learned_step_layers(b).values(), strict=True)
    return max(float((fb.delta / fa.delta - 1).abs().max()) for fa, fb in pairs)


def learned_step_pair(lr: float, steps: int = 40, seed: int = 0, optimizer: str = "sgd",
                      per_channel: bool = False) -> list[LearnedStepResult]:
    """Train the Q̂-net and its partners ``steps`` steps on one random stream; measure each."""
    qnet = _qnet(seed, per_channel)
    opt = _optimizer(optimizer, qnet, lr)
    nets = {"q": (qnet, opt, None), **_partners(qnet, opt, optimizer, lr)}
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        x = torch.randn(32, 64, generator=g, dtype=torch.float64)
        y = torch.randint(0, 10, (32,), generator=g)
        for net, net_opt, _ in nets.values():
            net_opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            net_opt.step()
        for _, _, follow in nets.values():
            if follow is not None:
                follow.step()
    x = torch.randn(256, 64, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (256,), generator=g)
    with torch.no_grad():
        losses = {name: float(F.cross_entropy(net(x), y)) for name, (net, _, _) in nets.items()}
    out = []
    for name in PARTNERS:
        net = nets[name][0]
        al = qat.alignment(qnet, net, remap=optimizer == "sgd" and name != "lr-tweak")
        out.append(LearnedStepResult(name, lr, al.ebar, al.agreement, _delta_gap(qnet, net),
                                     abs(losses[name] - losses["q"])))
    return out


def main() -> None:
    """Print the table of docs/reproduction.md."""
    torch.set_num_threads(1)
    print("| optimizer | Δ | partner | η | Ē | agreement | max rel. Δ gap | loss gap |\n"
          "|---|---|---|---|---|---|---|---|")
    for kind, rates in LEARNING_RATES.items():
        for per_channel in (False, True):
            for lr in rates:
                for r in learned_step_pair(lr, optimizer=kind, per_channel=per_channel):
                    where = "per channel" if per_channel else "per tensor"
                    print(f"| {kind} | {where} | {r.twin} | {r.lr:g} | {r.ebar:.3g} | "
                          f"{r.agreement:.4f} | {r.delta_gap:.3g} | {r.loss_gap:.2g} |")


if __name__ == "__main__":
    main()
