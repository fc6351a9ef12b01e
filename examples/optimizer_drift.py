r"""How far each optimizer's STE twin drifts from its Q̂-net: Ē against η, per optimizer.

A 2-bit HTGE (t = 3) MLP (784→64→10, no biases, float64) and its twin (``sq.to_ste``; the nearest
twin, ``approximate=True``, where there is none) train in lockstep on the same batches of the
5,000 real MNIST digits (``mnist-5k``) for ``STEPS`` steps, at four learning rates spanning 100×.
After the run: Ē (``sq.alignment``; M-form for SGD twins) and the twin's weight movement (Ē
between its start and end, same units). The log-log slope of Ē against η is the order of the
drift: 2 = the twin agrees to first order (the error is the O(η²) remainder), 1 = it drifts at
first order (a relative error that does not fall with η).

Training-loop habits: global-norm clipping (τ = ``CLIP``) with the Q̂-net's clip coefficient
applied to the twin, or the twin clipping by its own norm; value clipping (each net its own);
a weight EMA (decay 0.9) compared between the two EMA copies.

Run: ``PYTHONPATH=src python examples/optimizer_drift.py`` (about 5 minutes on one core); writes
``docs/results/optimizers.csv``, then the table and ``docs/results/optimizers.png`` from it
(``--report-only``: only those, from the CSV).
"""

from __future__ import annotations

import copy
import csv
import importlib
import math
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

import stequiv as sq
from stequiv.data import load_split
from stequiv.qat import optimizer_rule

STEPS, BATCH, CLIP, EMA = 60, 128, 0.05, 0.9
SCALES = (0.1, 10 ** (-5 / 3), 10 ** (-7 / 3), 0.001)  # times each case's lr: 100×
OUT = Path(__file__).resolve().parent.parent / "docs" / "results"
HTGE = sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0}, bits=2, scale="init-bound")


@dataclass(frozen=True)
class Case:
    """One optimizer setting: its factory, base learning rate and loop habit."""

    name: str
    make: Callable[..., torch.optim.Optimizer]
    lr: float
    habit: str = ""  # "", "clip-qhat", "clip-own", "clip-value", "ema"
    package: str = ""
    order: str = ""  # the derived order where to_ste cannot judge it (Adam's ε)


def _opt(path: str, **kw) -> Callable[..., torch.optim.Optimizer]:
    module, name = path.rsplit(".", 1)

    def make(params, lr):
        opt = getattr(importlib.import_module(module), name)(params, lr=lr, **kw)
        if hasattr(opt, "train") and "schedulefree" in module:
            opt.train()
        return opt

    return make


SGDM, ADAM = _opt("torch.optim.SGD", momentum=0.9), _opt("torch.optim.Adam")
CASES = [
    Case("SGD", _opt("torch.optim.SGD"), 0.3),
    Case("SGD momentum", SGDM, 0.1),
    Case("SGD Nesterov", _opt("torch.optim.SGD", momentum=0.9, nesterov=True), 0.1),
    Case("SGD + coupled decay", _opt("torch.optim.SGD", momentum=0.9, weight_decay=1e-2), 0.1),
    Case("Adam eps=1e-12", _opt("torch.optim.Adam", eps=1e-12), 1e-2),
    Case("Adam eps=1e-8", ADAM, 1e-2),
    Case("Adam eps=1e-3", _opt("torch.optim.Adam", eps=1e-3), 1e-2, order="first order (ε)"),
    Case("AdamW", _opt("torch.optim.AdamW", weight_decay=0.1), 1e-2),
    Case("AMSGrad", _opt("torch.optim.Adam", amsgrad=True), 1e-2),
    Case("NAdam", _opt("torch.optim.NAdam"), 1e-2),
    Case("RAdam (from step 0)", _opt("torch.optim.RAdam"), 1e-2),
    Case("Adamax", _opt("torch.optim.Adamax"), 1e-2),
    Case("RMSprop", _opt("torch.optim.RMSprop"), 1e-3),
    Case("Adagrad", _opt("torch.optim.Adagrad"), 3e-2),
    Case("Adafactor", _opt("torch.optim.Adafactor"), 1e-2),
    Case("Muon", _opt("torch.optim.Muon", weight_decay=0.0), 2e-2),
    Case("Lion", _opt("lion_pytorch.Lion"), 1e-3, package="lion_pytorch"),
    Case("Shampoo", _opt("pytorch_optimizer.Shampoo"), 1e-2, package="pytorch_optimizer"),
    Case("SOAP", _opt("pytorch_optimizer.SOAP"), 3e-3, package="pytorch_optimizer"),
    Case("schedule-free AdamW", _opt("schedulefree.AdamWScheduleFree"), 1e-2, package="schedulefree"),
    Case("SGD momentum + clip (Q̂ coefficient)", SGDM, 0.1, "clip-qhat"),
    Case("SGD momentum + clip (own norm)", SGDM, 0.1, "clip-own"),
    Case("SGD momentum + value clip", SGDM, 0.1, "clip-value"),
    Case("SGD momentum + weight EMA", SGDM, 0.1, "ema"),
    Case("Adam + clip (Q̂ coefficient)", ADAM, 1e-2, "clip-qhat"),
    Case("Adam + clip (own norm)", ADAM, 1e-2, "clip-own"),
    Case("Adam + weight EMA", ADAM, 1e-2, "ema"),
]
HABITS = {  # the twin rule and derived order of each loop habit (docs/optimizers.md)
    "clip-qhat": ("twin scaled by the Q̂-net's clip coefficient", "as without"),
    "clip-own": ("twin clips by its own norm", "first order"),
    "clip-value": ("each clips its own values (twin would need c/Q̂′)", "first order"),
    "ema": ("EMA of each net's weights", "second order"),
}


def _model() -> nn.Module:
    g = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64, bias=False), nn.ReLU(),
                          nn.Linear(64, 10, bias=False)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) / math.sqrt(p.shape[1]))
    return sq.quantize_(model, HTGE, filter_fn=lambda m, n: isinstance(m, nn.Linear))


def _backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()


def _clip(habit: str, qnet: nn.Module, twin: nn.Module) -> bool:
    """Apply the habit's clipping to both nets' gradients; True when global clipping was active."""
    if habit == "clip-value":
        nn.utils.clip_grad_value_(qnet.parameters(), CLIP / 100)
        nn.utils.clip_grad_value_(twin.parameters(), CLIP / 100)
        return False
    if habit == "clip-qhat":  # the twin scaled by the Q̂-net's coefficient
        return float(sq.qat.clip_grad_norm_pair_(qnet, twin, CLIP)) > CLIP
    nn.utils.clip_grad_norm_(twin.parameters(), CLIP)
    return float(nn.utils.clip_grad_norm_(qnet.parameters(), CLIP)) > CLIP


def _ema_(ema: nn.Module, model: nn.Module) -> None:
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters(), strict=True):
            e.lerp_(p, 1 - EMA)


def run(case: Case, lr: float, data: tuple[torch.Tensor, torch.Tensor]) -> dict:
    """Train the pair in lockstep; Ē, the twin's movement and the clipping rate after STEPS."""
    qnet = _model()
    opt = case.make(qnet.parameters(), lr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # approximate twins warn: the table says so
        twin, twin_opt = sq.to_ste(qnet, opt, approximate=True)
        remap = sq.optimizer_kind(opt, approximate=True) == "sgd"
    start = copy.deepcopy(twin)
    emas = (copy.deepcopy(qnet), copy.deepcopy(twin))
    images, labels = data
    clipped = 0
    for step in range(STEPS):
        idx = slice((step * BATCH) % len(labels), (step * BATCH) % len(labels) + BATCH)
        x, y = images[idx], labels[idx]
        _backward(qnet, x, y)
        _backward(twin, x, y)
        if case.habit.startswith("clip"):
            clipped += _clip(case.habit, qnet, twin)
        opt.step()
        twin_opt.step()
        if case.habit == "ema":
            _ema_(emas[0], qnet)
            _ema_(emas[1], twin)
    a, b = emas if case.habit == "ema" else (qnet, twin)
    ebar = sq.alignment(a, b, remap=remap).ebar
    moved = sq.alignment(start, twin, remap=False).ebar
    return {"optimizer": case.name, "lr": lr, "ebar": ebar, "movement": moved,
            "ebar_per_movement": ebar / moved, "clipped_fraction": clipped / STEPS}


def _rule_and_verdict(case: Case) -> tuple[str, str]:
    """The family's twin rule, and its order as ``to_ste`` judges this setting (refused: first)."""
    model = _model()
    opt = case.make(model.parameters(), case.lr)
    rule = optimizer_rule(opt)
    try:
        sq.to_ste(model, opt)
        verdict = rule.verdict
    except ValueError:
        verdict = "first order"
    verdict = case.order or verdict
    if case.habit:
        twin_rule, order = HABITS[case.habit]
        return f"{rule.rule}; {twin_rule}", verdict if order == "as without" else order
    return rule.rule, verdict


def measure() -> None:
    """Train every case at every η; write docs/results/optimizers.csv."""
    torch.set_num_threads(1)
    split = load_split("mnist-5k", "train")
    perm = torch.randperm(len(split.labels), generator=torch.Generator().manual_seed(0))
    data = (split.images[perm].double(), split.labels[perm])
    rows = []
    for case in CASES:
        if case.package and importlib.util.find_spec(case.package) is None:
            print(f"skip {case.name}: pip install {case.package}", file=sys.stderr)
            continue
        rule, verdict = _rule_and_verdict(case)
        rows += [{**run(case, case.lr * s, data), "twin_rule": rule, "order": verdict}
                 for s in SCALES]
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = OUT / "optimizers.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(OUT / "optimizers.csv")


def _slope(rows: list[dict]) -> float:
    """The log-log slope of Ē against η (least squares)."""
    lrs, ebars = (np.array([float(r[k]) for r in rows]) for k in ("lr", "ebar"))
    return float(np.polyfit(np.log(lrs), np.log(np.maximum(ebars, 1e-300)), 1)[0])


def report() -> None:
    """From the CSV: the table (markdown, as in docs/optimizers.md) and the figure."""
    with (OUT / "optimizers.csv").open() as f:
        by_case: dict[str, list[dict]] = {}
        for row in csv.DictReader(f):
            by_case.setdefault(row["optimizer"], []).append(row)
    print("| optimizer | twin rule | order | slope (4 η) | slope (2 smallest η) "
          "| Ē per unit movement, largest → smallest η |")
    print("|---|---|---|---|---|---|")
    for name, rows in by_case.items():
        per = " → ".join(f"{float(r['ebar_per_movement']):.1e}" for r in rows)
        print(f"| {name} | {rows[0]['twin_rule']} | {rows[0]['order']} | {_slope(rows):.2f} "
              f"| {_slope(rows[-2:]):.2f} | {per} |")
    _figure(by_case)


def _figure(by_case: dict[str, list[dict]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(14, 7), sharey=True)
    habits = [n for n in by_case if any(k in n for k in ("clip", "EMA", "coupled"))]
    for ax, names, title in ((axes[0], [n for n in by_case if n not in habits], "optimizers"),
                             (axes[1], habits, "training-loop habits")):
        for i, name in enumerate(names):
            rows = by_case[name]
            lr0 = float(rows[0]["lr"])
            ax.loglog([float(r["lr"]) / lr0 for r in rows], [float(r["ebar"]) for r in rows],
                      "-" if rows[0]["order"].startswith(("exact", "second")) else "--",
                      color=plt.get_cmap("tab20")(i % 20), marker="osD^v"[i // 4 % 5],
                      label=f"{name} (slope {_slope(rows):.2f})")
        ax.set_title(f"{title}: solid = has a twin, dashed = first order")
        ax.set_xlabel("η / η_max (η_max per optimizer: docs/results/optimizers.csv)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel(f"Ē after {STEPS} steps (2-bit HTGE MLP, mnist-5k)")
    fig.tight_layout()
    fig.savefig(OUT / "optimizers.tmp.png", dpi=120)
    (OUT / "optimizers.tmp.png").replace(OUT / "optimizers.png")


if __name__ == "__main__":
    if "--report-only" not in sys.argv:
        measure()
    report()
