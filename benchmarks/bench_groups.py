"""Per-group Δ (issue 11): fake-quant forward+backward of a 4096×4096 weight with one Δ per group of
G = 32 and G = 128 input elements of each output row, against one Δ for the whole tensor in the
same run (target ≤ 1.3×), for the STE and HTGE, one intra-op thread and the default.

Run: .venv/bin/python benchmarks/bench_groups.py
"""

from __future__ import annotations

import torch
from torch import nn

import stequiv as sq
from _bench import Row, compare, interleaved, markdown
from bench_torch import _threads  # intra-op threads for one comparison

SHAPE = (4096, 4096)
REPEAT = 7
GROUPS = (32, 128)
LIMIT = 1.3


def _fake_quant(estimator: str, group_size: int | None) -> nn.Module:
    layer = nn.Linear(*SHAPE, bias=False)
    cfg = sq.QuantConfig(estimator=estimator, bits=4, group_size=group_size)
    sq.quantize_(nn.Sequential(layer), cfg)
    return layer.parametrizations.weight[0]


def _rows(estimator: str, threads: int | None) -> list[Row]:
    gen = torch.Generator().manual_seed(0)
    w = (torch.randn(SHAPE, generator=gen) * 0.02).requires_grad_()
    upstream = torch.randn(SHAPE, generator=gen)

    def fwd_bwd(fq: nn.Module):
        def call() -> None:
            w.grad = None
            fq(w).backward(upstream)
        return call

    fns = {"tensor": fwd_bwd(_fake_quant(estimator, None))}
    fns |= {f"G={g}": fwd_bwd(_fake_quant(estimator, g)) for g in GROUPS}
    with _threads(threads) as label:
        times = interleaved(fns, REPEAT)
    return [compare(f"fake-quant fwd+bwd {estimator}, 4096×4096, {name}{label}", times[name],
                    "per-tensor Δ", times["tensor"], f"≤ {LIMIT}×", LIMIT)
            for name in fns if name != "tensor"]


def run() -> list[Row]:
    return [row for est in ("ste", "htge") for threads in (1, None) for row in _rows(est, threads)]


if __name__ == "__main__":
    print(markdown(run()))
