"""ResNet-20 pair on Fashion-MNIST: time per epoch on 1 and 2 CPU processes (torchrun, gloo, DDP
and FSDP2).

Each configuration trains the lockstep pair (Q̂-net + STE twin, both from step 0) of the `resnet`
preset at its global batch of 64 for WARMUP + STEPS steps through the experiment engine and
records every step's wall time; the epoch time is the median step time × 937 steps (60,000
images), extrapolated so the whole benchmark stays near 3 minutes. The fastest step is shown too:
on a machine shared with other work it is the steadier estimate of what the code can do. Scaling efficiency is
t1 / (2·t2) with t1 the one-process time at one thread (same per-process resources); for
context, one process using both cores by intra-op threads is timed too. The FSDP2 row
(``parallel`` ``fsdp``: every net sharded with ``fully_shard``, its weights all-gathered before
each block's forward and backward, its gradients reduce-scattered) has the same reference t1.

Run: .venv/bin/python benchmarks/bench_distributed.py   (needs Debian's dataset-fashion-mnist)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WARMUP, STEPS = 3, 25
# (label, processes, threads per process, parallel)
RUNS = [("1 process, 1 thread", 1, 1, "ddp"), ("1 process, 2 threads", 1, 2, "ddp"),
        ("2 processes, 1 thread each (DDP)", 2, 1, "ddp"),
        ("2 processes, 1 thread each (FSDP2)", 2, 1, "fsdp")]


def worker(out: str, parallel: str) -> None:
    """One rank: time STEPS pair steps of the resnet preset (rank 0 writes the step times)."""
    import torch

    from stequiv.experiments import (
        PRESETS,
        ExperimentConfig,
        PairSpec,
        load_data,
        setup_distributed,
    )
    from stequiv.experiments.testing import Group, index_batches

    config = ExperimentConfig.from_dict({**PRESETS["resnet"], "switch_fraction": 0.0, "device": "cpu",
                                         "parallel": parallel})
    dist = setup_distributed(config.device)
    torch.use_deterministic_algorithms(True)
    data = load_data(config)
    pair = Group(config, [PairSpec("sgd-baseline", "sgd", "baseline")], data, dist)
    batches = index_batches(len(data.train), config, dist, 0)[:WARMUP + STEPS]
    times = []
    for batch in data.train.batches(batches, 0):
        start = time.perf_counter()
        pair.train_step(batch)
        times.append(time.perf_counter() - start)
    if dist.is_main:
        Path(out).write_text(json.dumps({"step_s": times[WARMUP:], "steps_per_epoch": pair.steps_per_epoch,
                                         "threads": torch.get_num_threads()}))
    dist.barrier()


def measure(processes: int, threads: int, parallel: str, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", str(processes)]
    subprocess.run([*launcher, __file__, "--worker", str(out), parallel], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    result = json.loads(out.read_text())
    step = statistics.median(result["step_s"])
    return {"step_s": step, "epoch_s": step * result["steps_per_epoch"],
            "fastest_s": min(result["step_s"]), "steps_per_epoch": result["steps_per_epoch"]}


def main() -> None:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, processes, threads, parallel in RUNS:
            results[label] = measure(processes, threads, parallel,
                                     Path(tmp) / f"{processes}x{threads}-{parallel}.json")
    print(f"ResNet-20 pair, Fashion-MNIST, global batch 64, {STEPS} timed steps per run\n")
    print("| run | s/step median (fastest) | epoch, min (from fastest step) | images/s through the pair |")
    print("|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['step_s']:.3f} ({r['fastest_s']:.3f}) | {r['epoch_s'] / 60:.1f} "
              f"({r['fastest_s'] * r['steps_per_epoch'] / 60:.1f}) | {64 / r['step_s']:.0f} |")
    for key, name in (("step_s", "median"), ("fastest_s", "fastest")):
        t1, t1_threads, t2, t2_fsdp = (results[run[0]][key] for run in RUNS)
        print(f"\n{name} steps: scaling efficiency t1/(2·t2) = {t1 / (2 * t2):.2f} DDP, "
              f"{t1 / (2 * t2_fsdp):.2f} FSDP2 (t1: 1 process, 1 thread); 2 processes against 1 "
              f"process using both cores by threads: {t1_threads / t2:.2f}x DDP, "
              f"{t1_threads / t2_fsdp:.2f}x FSDP2")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3])
    else:
        main()
