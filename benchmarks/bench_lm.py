"""``to_ste`` of the ``lm`` preset's transformer: the switch from the Q̂-net to its STE twin.

Target (issue 11): ≤ 1 s for the ``transformer-small`` model (4 blocks, width 128: 24 quantized
projections, 786,432 quantized weights), 2-bit HTGE with one Δ per group of 32 inputs (the lm
preset's grid), after a few training steps (so that the
optimizer holds state to map), under SGD + momentum (weights through M, momentum scaled) and AdamW
(moments scaled). One warm-up call first compiles the M loops (numba), as in a long run.
Run: .venv/bin/python benchmarks/bench_lm.py   (``make bench`` runs every benchmark)
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from _bench import Row, interleaved, markdown, single
from stequiv import qat
from stequiv.models import build_model

MODEL = "transformer-small"
STEPS = 3
REPEAT = 5


def _trained(kind: str) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = build_model(MODEL, num_classes=256, generator=torch.Generator().manual_seed(0))
    cfg = qat.QuantConfig(estimator={"name": "htge", "t": 11 / 3}, bits=2, scale="absmax",
                          group_size=32)
    qat.quantize_(model, cfg, filter_fn=lambda m, name: name in model.quantizable_layers)
    opt: torch.optim.Optimizer = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
                                  if kind == "sgd" else torch.optim.AdamW(model.parameters(), 1e-3))
    tokens = torch.randint(0, 256, (4, model.size.context + 1),
                           generator=torch.Generator().manual_seed(1))
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(model(tokens[:, :-1]).flatten(0, 1), tokens[:, 1:].flatten()).backward()
        opt.step()
    return model, opt


def run() -> list[Row]:
    nets = {kind: _trained(kind) for kind in ("sgd", "adamw")}
    times = interleaved({kind: lambda m=m, o=o: qat.to_ste(m, o) for kind, (m, o) in nets.items()},
                        REPEAT)
    return [single(f"to_ste of the lm model ({MODEL}, 2-bit HTGE), {kind}", times[kind], "≤ 1 s", 1.0)
            for kind in nets]


def main() -> None:
    print(markdown(run()))


if __name__ == "__main__":
    main()
