"""A QAT training step under stequiv and its peers, side by side in one process: each as a ratio
to the float step of the same network, timed in alternation (the same load lands on every one).

Networks: the paper's MNIST ConvNet (batch 64, its two convs and first Linear quantized) and the
byte-level ``transformer-tiny`` (batch 16 × 64 tokens, its attention and MLP Linear layers).
Weights at 2 bits, one Δ per output channel, SGD with momentum; every framework quantizes the
same layers:

* ``stequiv STE`` / ``HTGE`` / ``DSQ``: ``sq.quantize_`` with that estimator;
* ``torchao``: torchao's QAT fake quantizer (``IntxFakeQuantizer``, int2 per channel, STE) on each
  weight (torchao has no conv module: it goes on the conv weights as a parametrization);
* ``Brevitas``: ``QuantConv2d`` / ``QuantLinear`` with ``weight_bit_width=2`` (eager only).

Eager and ``torch.compile``-d (inductor; float, stequiv HTGE and torchao). Writes
``benchmarks/results/peers.md`` with the machine, versions and thread count.
Run: .venv/bin/python benchmarks/bench_peers.py   (the peers: pip install -c constraints.txt -e '.[peers]')
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

import stequiv as sq
from _bench import Row, compare, interleaved, markdown
from bench_torch import _TorchaoWeight as TorchaoWeight
from stequiv.models import ConvNet, build_model

THREADS = 1
STEPS = 3  # training steps per timed call
REPEAT = 7
OUT = Path(__file__).with_name("results") / "peers.md"
QUANTIZED = (nn.Conv2d, nn.Linear)


def _convnet() -> tuple[nn.Module, Callable[[nn.Module], torch.Tensor]]:
    model = ConvNet(generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(64, 1, 28, 28, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    return model, lambda m: F.cross_entropy(m(x), y)


def _transformer() -> tuple[nn.Module, Callable[[nn.Module], torch.Tensor]]:
    model = build_model("transformer-tiny", num_classes=256, generator=torch.Generator().manual_seed(0))
    tokens = torch.randint(0, 256, (16, 65), generator=torch.Generator().manual_seed(1))
    x, y = tokens[:, :-1], tokens[:, 1:]
    return model, lambda m: F.cross_entropy(m(x).reshape(-1, 256), y.reshape(-1))


NETWORKS = {"ConvNet": _convnet, "transformer-tiny": _transformer}


def _selected(model: nn.Module) -> list[str]:
    """The layers every framework quantizes: convs and Linear layers, not a tied head."""
    tied = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return [n for n, m in model.named_modules()
            if isinstance(m, QUANTIZED) and id(m.weight) not in tied]


def _stequiv(estimator: str) -> Callable[[nn.Module], nn.Module]:
    def build(model: nn.Module) -> nn.Module:
        chosen = set(_selected(model))
        config = sq.QuantConfig(estimator=estimator, bits=2, per_channel=True)
        return sq.quantize_(model, config, filter_fn=lambda m, name: name in chosen, log=False)
    return build


def _torchao(model: nn.Module) -> nn.Module:
    from torchao.quantization.qat import IntxFakeQuantizeConfig, IntxFakeQuantizer

    config = IntxFakeQuantizeConfig(torch.int2, "per_channel")
    for name in _selected(model):
        parametrize.register_parametrization(model.get_submodule(name), "weight",
                                             TorchaoWeight(IntxFakeQuantizer(config)))
    return model


def _brevitas(model: nn.Module) -> nn.Module:
    from brevitas import nn as qnn

    for name in _selected(model):
        parent, _, child = name.rpartition(".")
        old = model.get_submodule(name)
        if isinstance(old, nn.Conv2d):
            new = qnn.QuantConv2d(old.in_channels, old.out_channels, old.kernel_size,
                                  stride=old.stride, padding=old.padding,
                                  bias=old.bias is not None, weight_bit_width=2)
        else:
            new = qnn.QuantLinear(old.in_features, old.out_features, bias=old.bias is not None,
                                  weight_bit_width=2)
        new.load_state_dict(old.state_dict(), strict=False)
        setattr(model.get_submodule(parent) if parent else model, child, new)
    return model


FRAMEWORKS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "float": lambda m: m, "stequiv STE": _stequiv("ste"), "stequiv HTGE": _stequiv("htge"),
    "stequiv DSQ": _stequiv("dsq"), "torchao": _torchao, "Brevitas": _brevitas}
COMPILED = ("float", "stequiv HTGE", "torchao")


def _stepper(model: nn.Module, loss: Callable[[nn.Module], torch.Tensor]) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def steps() -> None:
        for _ in range(STEPS):
            opt.zero_grad(set_to_none=True)
            loss(model).backward()
            opt.step()
    return steps


def _network_rows(network: str) -> tuple[list[Row], list[str]]:
    make = NETWORKS[network]
    fns, notes = {}, []
    for name, prepare in FRAMEWORKS.items():
        for compiled in (False, True):
            if compiled and name not in COMPILED:
                continue
            label = f"{name}, {'compiled' if compiled else 'eager'}"
            try:
                model, loss = make()
                model = prepare(model)
                step = _stepper(torch.compile(model) if compiled else model, loss)
                step()  # compiles (and warms up) outside the timing
            except Exception as err:  # a peer that is not installed or fails here: say so
                notes.append(f"{network}, {label}: not timed ({type(err).__name__}: {err})")
                continue
            fns[label] = step
    per_step = {k: [t / STEPS for t in ts] for k, ts in interleaved(fns, REPEAT).items()}
    rows = []
    for label, times in per_step.items():
        if label.startswith("float"):
            continue
        mode = label.rpartition(", ")[2]
        rows.append(compare(f"{network} step, {label}", times, f"float, {mode}",
                            per_step[f"float, {mode}"], "report"))
    if "float, compiled" in per_step:
        rows.append(compare(f"{network} step, float, compiled", per_step["float, compiled"],
                            "float, eager", per_step["float, eager"], "report"))
    return rows, notes


def _versions() -> str:
    out = [f"torch {torch.__version__} ({THREADS} thread)"]
    for package in ("torchao", "brevitas"):
        try:
            out.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            out.append(f"{package} not installed")
    return " · ".join(out)


def main() -> None:
    torch.set_num_threads(THREADS)
    rows, notes = [], []
    for network in NETWORKS:
        r, n = _network_rows(network)
        rows, notes = rows + r, notes + n
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip() or "unknown"
    load = os.getloadavg()
    text = "\n".join([
        "# QAT training step: stequiv and its peers",
        "",
        f"commit {commit} · {platform.machine()}, {os.cpu_count()} cores · Python "
        f"{platform.python_version()} · {_versions()} · load average {load[0]:.2f} at the end",
        "",
        "Each row: the median seconds per step (and the minimum), against the float step of the "
        "same network in the same mode, timed in alternation.",
        "",
        markdown(rows),
        "",
        *[f"- {note}" for note in notes],
    ]) + "\n"
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
