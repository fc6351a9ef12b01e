"""Speed of issue 13's pieces, each ratio against its reference timed in the same run.

* activation fake-quant forward+backward (fixed range, per tensor; STE and HTGE) ≤ 1.2× the
  weight path (``WeightFakeQuant``, same estimator) per element, on a 4 M-element tensor;
* a schedule change of the STE twin of the paper's ConvNet (all three convs re-mapped by
  M_new∘M_old⁻¹, momentum state rescaled, learning rates moved to α_new·η) ≤ 10 ms: DSQ α
  annealed at 2 bits, and IR-Net's EDE at 1 bit;
* a training step of a ConvNet pair with learned Δ (the Q̂-net, its STE twin, and the twin following
  the Q̂-net's Δ: ``LearnedStepTwin.step``) ≤ 2.1× a step of the Q̂-net alone.

Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_beyond.py
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

import stequiv as sq
from _bench import Row, compare, interleaved, markdown, single
from stequiv.models import ConvNet
from stequiv.qat import (
    ActivationConfig,
    ActivationFakeQuant,
    EstimatorSchedule,
    ScheduledTwin,
    WeightFakeQuant,
)

N = 4_000_000
REPEAT = 9
CHANGES = 20


def _activation_rows() -> list[Row]:
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(N, generator=gen) * 4 - 2).requires_grad_()
    upstream = torch.randn(N, generator=gen)
    quantizer = sq.UniformQuantizer(delta=4.0 / 15, offset=-7.5, lower=0, upper=15)  # [-2, 2], 4 bits

    def fwd_bwd(fn):
        def call() -> None:
            x.grad = None
            fn(x).backward(upstream)
        return call

    rows = []
    for name in ("ste", "htge"):
        est = sq.get_estimator(name)
        act = ActivationFakeQuant(ActivationConfig(estimator=est, bits=4, range=(-2.0, 2.0)), "bench")
        times = interleaved({"act": fwd_bwd(act), "weight": fwd_bwd(WeightFakeQuant(est, quantizer, x.shape))},
                            REPEAT)
        rows.append(compare(f"activation fake-quant fwd+bwd {name}, 4 M", times["act"],
                            f"weight fake-quant fwd+bwd {name}", times["weight"], "≤ 1.2×", 1.2))
    return rows


def _twin_with_state(schedule: EstimatorSchedule, bits: int) -> ScheduledTwin:
    model = ConvNet(generator=torch.Generator().manual_seed(0))
    cfg = sq.QuantConfig(estimator=schedule.at(0), bits=bits, scale="init-bound")
    sq.quantize_(model, cfg, filter_fn=lambda m, n: n in ConvNet.quantizable_layers)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    F.cross_entropy(model(x), torch.arange(8)).backward()
    opt.step()  # momentum state to rescale
    twin, twin_opt = sq.to_ste(model, opt)
    return ScheduledTwin(twin, twin_opt, schedule)


def _schedule_rows() -> list[Row]:
    rows = []
    cases = {"DSQ α annealed, 2 bits": (EstimatorSchedule.anneal("dsq", "alpha", 0.4, 0.2, CHANGES, CHANGES), 2),
             "IR-Net EDE, 1 bit": (EstimatorSchedule.ir_net(CHANGES, CHANGES), 1)}
    for label, (schedule, bits) in cases.items():
        follower = _twin_with_state(schedule, bits)
        times = interleaved({"change": follower.step}, CHANGES - 2)
        rows.append(single(f"schedule change, ConvNet twin ({label})", times["change"], "≤ 10 ms", 0.010))
    return rows


def _learned_step_rows() -> list[Row]:
    """ConvNet (three convs quantized, HTGE 2 bits, learned Δ per channel), SGD, batch 64."""
    model = ConvNet(generator=torch.Generator().manual_seed(0))
    cfg = sq.QuantConfig(estimator="htge", bits=2, scale="init-bound", per_channel=True, learn_step=True)
    sq.quantize_(model, cfg, filter_fn=lambda m, n: n in ConvNet.quantizable_layers)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    twin, twin_opt = sq.to_ste(model, opt)
    follower = sq.LearnedStepTwin(twin, twin_opt, model)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(64, 1, 28, 28, generator=gen), torch.randint(0, 10, (64,), generator=gen)

    def step(net, net_opt) -> None:
        net_opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        net_opt.step()

    def pair() -> None:
        step(model, opt)
        step(twin, twin_opt)
        follower.step()

    times = interleaved({"pair": pair, "one": lambda: step(model, opt)}, REPEAT)
    return [compare("learned-Δ pair step (Q̂-net + twin + Δ follower), ConvNet", times["pair"],
                    "Q̂-net step alone", times["one"], "≤ 2.1×", 2.1)]


def run() -> list[Row]:
    """Every row of this benchmark, with one intra-op thread (steadier on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _activation_rows() + _schedule_rows() + _learned_step_rows()
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    print(markdown(run()))
