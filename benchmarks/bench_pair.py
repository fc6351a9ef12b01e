"""A lockstep pair (Q̂-net + STE twin) against one Q̂-net trained alone, same data, same steps.

Target (issue 4): pair ≤ 2.05× single. Also times the quick preset's per-pair cost.
Run: .venv/bin/python benchmarks/bench_pair.py
"""

from __future__ import annotations

import statistics
import time

import torch
from torch.nn import functional as F

from stequiv.experiments import ExperimentConfig, PairSpec, load_data
from stequiv.experiments._setup import build_partner, build_qnet, make_optimizer

STEPS = 60
REPEATS = 3


def _time(nets, data, batch: int) -> float:
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(data.train), generator=g)
    start = time.perf_counter()
    for k in range(STEPS):
        idx = perm[k * batch:(k + 1) * batch]
        x, y = data.train.images[idx], data.train.labels[idx]
        for net, opt, sched in nets:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()
            sched.step()
    return time.perf_counter() - start


def main() -> dict[str, float]:
    config = ExperimentConfig()
    data = load_data(config)
    single, pair = [], []
    for _ in range(REPEATS):
        a = build_qnet(config, 1, 10, torch.device("cpu"))
        opt, sched = make_optimizer(config, "sgd", a, 1.0, STEPS)
        single.append(_time([(a, opt, sched)], data, config.batch_size))
        a = build_qnet(config, 1, 10, torch.device("cpu"))
        opt, sched = make_optimizer(config, "sgd", a, 1.0, STEPS)
        b = build_partner(config, PairSpec("b", "sgd", "baseline"), a, opt, sched)
        pair.append(_time([(a, opt, sched), b], data, config.batch_size))
    t1, t2 = statistics.median(single), statistics.median(pair)
    result = {"single_ms_per_step": 1e3 * t1 / STEPS, "pair_ms_per_step": 1e3 * t2 / STEPS,
              "pair_over_single": t2 / t1}
    print("| measurement | value |\n|---|---|")
    for k, v in result.items():
        print(f"| {k} | {v:.3f} |")
    return result


if __name__ == "__main__":
    main()
