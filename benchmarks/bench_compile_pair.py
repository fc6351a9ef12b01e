"""Is ``reproduce --set compile=true`` faster? The quick preset's first group, eager vs compiled.

The group is what ``stequiv reproduce --quick`` trains first: the SGD Q̂-net (HTGE, 2 bits) with
every partner of the default experiments beside it, on the embedded MNIST digits at batch 64.
Two copies are built in one process (one thread): eager and ``compile`` true. The compiled
group's first step includes dynamo's tracing and inductor's C++ compile of every net (the
warm-up); then STEPS steps of each are timed in alternation (the same machine load lands on
both) and the medians compared. Break-even: the number of steps after which compiling has paid
for its warm-up, warm-up / (eager − compiled step), to compare with the group's length.

Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_compile_pair.py
"""

from __future__ import annotations

import statistics
import time
import warnings

import torch

STEPS = 20


def _group(compile_: bool):
    from stequiv.experiments import (
        PRESETS,
        ExperimentConfig,
        group_specs,
        load_data,
        setup_distributed,
    )
    from stequiv.experiments.config import pair_specs
    from stequiv.experiments.testing import Group, index_batches

    config = ExperimentConfig.from_dict({**PRESETS["quick"], "device": "cpu", "compile": compile_})
    dist = setup_distributed("cpu")
    data = load_data(config)
    specs = group_specs(pair_specs(config))[0]
    group = Group(config, specs, data, dist)
    batches = index_batches(len(data.train), config, dist, 0)
    return group, list(data.train.batches(batches, 0)), len(specs)


def _timed(group, batch) -> float:
    start = time.perf_counter()
    group.train_step(batch)
    return time.perf_counter() - start


def main() -> None:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore")  # torch's own notes while compiling
    eager, batches, partners = _group(False)
    compiled, _, _ = _group(True)
    first_eager = _timed(eager, batches[0])
    warmup = _timed(compiled, batches[0])
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for batch in batches[1:1 + STEPS]:
        times["eager"].append(_timed(eager, batch))
        times["compiled"].append(_timed(compiled, batch))
    e, c = (statistics.median(times[k]) for k in ("eager", "compiled"))
    total = eager.total
    print(f"quick preset, first group (SGD Q̂-net + {partners} partners, {total} steps), 1 thread")
    print(f"first step: eager {first_eager:.2f} s, compiled {warmup:.1f} s (warm-up)")
    print(f"step, median (fastest) of {STEPS}: eager {e * 1e3:.1f} ms ({min(times['eager']) * 1e3:.1f}),"
          f" compiled {c * 1e3:.1f} ms ({min(times['compiled']) * 1e3:.1f}); compiled/eager {c / e:.2f}")
    if c < e:
        print(f"break-even after {(warmup - first_eager) / (e - c):.0f} steps (the group has {total})")
    else:
        print("compiled steps are not faster: compiling never pays")
    print(f"group time, projected: eager {first_eager + e * (total - 1):.0f} s, compiled "
          f"{warmup + c * (total - 1):.0f} s")


if __name__ == "__main__":
    main()
