"""A lockstep pair (Q̂-net + STE twin) against one Q̂-net trained alone: same data, same steps.

Target: pair ≤ 2.02× single (issue 12; 2.05× in issue 4), i.e. running both nets in one process
costs at most 1 % over training them one after the other. Both are timed in alternation (``_bench.interleaved``),
each from a fresh net: the pair's time includes building the twin (``to_ste``).
Run: .venv/bin/python benchmarks/bench_pair.py   (``make bench`` runs every benchmark)
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from _bench import Row, compare, interleaved, markdown
from stequiv.experiments import ExperimentConfig, PairSpec, TrainData, load_data
from stequiv.experiments.engine import build_partner, build_qnet, make_optimizer

STEPS = 60
REPEAT = 5


def _train(config: ExperimentConfig, data: TrainData, with_twin: bool) -> None:
    """``STEPS`` SGD steps of the quick preset's Q̂-net (and its twin, in lockstep)."""
    a = build_qnet(config, data.train.in_channels, data.train.num_classes, torch.device("cpu"))
    opt, sched = make_optimizer(config, "sgd", a, 1.0, STEPS)
    nets = [(a, opt, sched)]
    if with_twin:
        nets.append(build_partner(config, PairSpec("b", "sgd", "baseline"), a, opt, sched))
    perm = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
    batch = config.batch_size
    for k in range(STEPS):
        idx = perm[k * batch:(k + 1) * batch]
        x, y = data.train.images[idx], data.train.labels[idx]
        for net, net_opt, net_sched in nets:
            net_opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            net_opt.step()
            net_sched.step()


def run() -> list[Row]:
    config = ExperimentConfig()  # the quick preset's model, estimator and batch
    data = load_data(config)
    times = interleaved({"single": lambda: _train(config, data, with_twin=False),
                         "pair": lambda: _train(config, data, with_twin=True)}, REPEAT)
    return [compare(f"lockstep pair, ConvNet + HTGE, {STEPS} SGD steps of batch {config.batch_size}",
                    times["pair"], "Q̂-net alone, same steps", times["single"], "≤ 2.02×", 2.02)]


def main() -> None:
    print(markdown(run()))


if __name__ == "__main__":
    main()
