"""The study's batched trainer against the same pairs one after another, and the theorem check.

Pair-steps/s: a cell holds two pairs, (Q̂-net, STE twin) and (Q̂-net, lr-tweak partner). The
batched trainer steps all cells' nets at once (``BatchedNets``: vmap, the Q̂-net shared by its two
pairs); the reference trains each pair one after another the one-net way (``train_sequential``:
module forward, autograd-Function backward), each pair with its own Q̂-net. The same cells, data and
steps; both at the study's ``threads``. A second reference separates the two gains: the same three
nets per cell in lockstep, one net at a time (sharing, no vmap). Target (issue 14): ≥ 3× the
pair-steps/s, i.e. batched time ≤ 0.33× the sequential time. The theorem check: ≤ 30 s.
Run: .venv/bin/python benchmarks/bench_study.py
"""

from __future__ import annotations

import time

import torch

from _bench import Row, compare, interleaved, markdown, single
from stequiv.experiments import _study
from stequiv.experiments._study import build_cell, load_study_data, train_sequential
from stequiv.experiments._study_config import STUDY_PRESETS, StudyConfig
from stequiv.theory import bound_check

STEPS = 5
REPEAT = 2


def _config() -> StudyConfig:
    return StudyConfig.from_dict({**STUDY_PRESETS["quick"], "steps": STEPS})


def _batched(config, cells, data) -> None:
    states = [s for c in cells for s in build_cell(c, config, data)]
    nets = _study.BatchedNets(states)
    for idx in _study.index_stream(len(data.train), config.batch_size, config.seed, config.steps):
        nets.train_step(*data.train.batch(idx))


def _lockstep(config, cells, data) -> None:
    for cell in cells:
        _study.train_lockstep(build_cell(cell, config, data), config, data)


def run() -> list[Row]:
    config = _config()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        data = load_study_data(config, "mnist-5k")
        cells = config.cells()[: config.nets_per_batch // 3]
        times = interleaved({"batched": lambda: _batched(config, cells, data),
                             "sequential": lambda: train_sequential(cells, config, data),
                             "lockstep": lambda: _lockstep(config, cells, data)}, REPEAT)
    finally:
        torch.set_num_threads(threads)
    what = (f"{len(cells)} cells ({2 * len(cells)} pairs) × {STEPS} steps, batch {config.batch_size}, "
            f"{config.threads} thread(s)")
    started = time.perf_counter()
    report = bound_check()
    check = time.perf_counter() - started
    return [compare(f"study batched trainer, {what}", times["batched"],
                    "the same pairs one after another", times["sequential"], "≤ 0.33× (≥ 3× pair-steps/s)", 0.33),
            compare("study batched trainer (vmap gain alone)", times["batched"],
                    "3 nets per cell in lockstep, one net at a time", times["lockstep"], "", None),
            single(f"Theorem 5.1/D.3/5.2 exact check, {len(report['estimators'])} estimators, "
                   f"{report['checks']} checks, {report['violations']} violations", [check], "≤ 30 s", 30.0)]


def main() -> None:
    print(markdown(run()))


if __name__ == "__main__":
    main()
