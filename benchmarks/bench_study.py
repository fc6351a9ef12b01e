"""The study's batched trainer against the same pairs one after another, and the theorem check.

Pair-steps/s: a cell holds two pairs, (Q̂-net, STE twin) and (Q̂-net, lr-tweak partner). The same
16 cells (32 pairs) of the quick preset, data and steps in every row:

* **batched, 2 workers** (what ``stequiv study`` runs by default): the cells' two training
  batches (8 cells, 24 nets each) trained at once by 2 worker processes of 1 thread each
  (``worker_pool``; started and warmed once, as a study starts it once), each batch with
  ``BatchedNets`` (vmap, the Q̂-net shared by its two pairs);
* **batched, 1 process**: the same two batches one after another in this process, 1 thread;
* reference **sequential, 1 thread**: each pair one after another the one-net way
  (``train_sequential``: module forward, autograd-Function backward), each pair with its own
  Q̂-net, in this process with 1 thread;

(A sequential reference with torch's 2 intra-op threads was measured once, at load 9–12: 198 s
against 25 s with one thread — OpenMP's fork/join in every small op loses a scheduler slice on a
loaded machine — so it is not rerun here; see docs/benchmarks.md.)

This process keeps freed memory (``keep_freed_memory``), as every process of ``stequiv study``
does (its command line and its workers): the in-process rows, batched and sequential alike, run
as the study runs them, without faulting the batched step's large activations in again each step.

Target (issue 14): ≥ 3× the pair-steps/s of the sequential reference, i.e. time ≤ 0.33×.
Every time includes building the nets (as a study's batch does). On a shared machine wall time
depends on the CPU share each side gets (with Linux's autogroups a session's processes share one
slice, so 2 workers get no more CPU than 1 process when other sessions fill the cores); the CPU
seconds of each side (all its processes) are reported next to it as the load-independent measure
of work: 2 workers on 2 idle cores run in about half their CPU seconds. The theorem check: ≤ 30 s.
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_study.py (writes benchmarks/results/study.md)
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from concurrent.futures import wait
from pathlib import Path

import torch

from _bench import Row, compare, interleaved, markdown, single
from stequiv._memory import keep_freed_memory
from stequiv.experiments import study
from stequiv.experiments.study import (
    STUDY_PRESETS,
    StudyConfig,
    build_cell,
    cell_batches,
    load_study_data,
    train_sequential,
)
from stequiv.theory import bound_check

OUT = Path(__file__).with_name("results") / "study.md"
STEPS = 5
BATCHES = 2  # of 8 cells each: 16 cells, 32 pairs
REPEAT = 2


def _config() -> StudyConfig:
    return StudyConfig.from_dict({**STUDY_PRESETS["quick"], "steps": STEPS})


def _train(config: StudyConfig, cells, data) -> None:
    nets = study.BatchedNets([s for c in cells for s in build_cell(c, config, data)])
    for idx in study.index_stream(len(data.train), config.batch_size, config.seed, config.steps):
        nets.train_step(*data.train.batch(idx))


_DATA = {}


def _worker_train(config: dict, index: int) -> float:
    """Batch ``index`` trained in a worker process (the study's worker, without its evaluation);
    returns the CPU seconds it took."""
    started = time.process_time()
    study = StudyConfig.from_dict(config)
    if "data" not in _DATA:
        _DATA["data"] = load_study_data(study, "mnist-5k")
    _train(study, cell_batches(study)[index], _DATA["data"])
    return time.process_time() - started


def _in_workers(pool, config: StudyConfig) -> float:
    done, _ = wait([pool.submit(_worker_train, config.to_dict(), k) for k in range(BATCHES)])
    return sum(future.result() for future in done)


def _cpu(times: dict[str, list[float]], name: str, fn):
    """``fn`` timed in CPU seconds too: its return value if a float (workers), else this process's."""
    def run():
        started = time.process_time()
        value = fn()
        times[name].append(value if isinstance(value, float) else time.process_time() - started)
    return run


def run() -> list[Row]:
    config = _config()
    keep_freed_memory()  # as in stequiv's own processes (module docstring)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    started = time.perf_counter()
    pool = study.worker_pool(config, BATCHES)
    _in_workers(pool, config)  # start both processes: import, data, one warm-up batch
    startup = time.perf_counter() - started
    try:
        data = load_study_data(config, "mnist-5k")
        batches = cell_batches(config)[:BATCHES]
        cells = [c for b in batches for c in b]
        cpu: dict[str, list[float]] = {"workers": [], "batched": [], "sequential": []}
        times = interleaved({
            "workers": _cpu(cpu, "workers", lambda: _in_workers(pool, config)),
            "batched": _cpu(cpu, "batched", lambda: [_train(config, b, data) for b in batches]),
            "sequential": _cpu(cpu, "sequential", lambda: train_sequential(cells, config, data))},
            REPEAT)
        cpu = {k: v[1:] for k, v in cpu.items()}  # drop the warm-up round, as interleaved does
    finally:
        pool.shutdown()
        torch.set_num_threads(threads)
    what = f"{len(cells)} cells ({2 * len(cells)} pairs) × {STEPS} steps, batch {config.batch_size}"
    started = time.perf_counter()
    report = bound_check()
    check = time.perf_counter() - started
    seq = "the same pairs one after another, 1 thread"
    target = "≤ 0.33× (≥ 3× pair-steps/s)"
    return [compare(f"study batched trainer, 2 worker processes × 1 thread, {what}", times["workers"],
                    seq, times["sequential"], target, 0.33),
            compare("study batched trainer, 1 process, 1 thread", times["batched"], seq,
                    times["sequential"], "", None),
            compare("CPU seconds: 2 worker processes (both)", cpu["workers"], f"{seq}, CPU seconds",
                    cpu["sequential"], "", None),
            compare("CPU seconds: 1 process", cpu["batched"], f"{seq}, CPU seconds",
                    cpu["sequential"], "", None),
            single("study worker pool start (2 spawned processes: import, data, a warm-up batch; "
                   "once per study)", [startup]),
            single(f"Theorem 5.1/D.3/5.2 exact check, {len(report['estimators'])} estimators, "
                   f"{report['checks']} checks, {report['violations']} violations", [check], "≤ 30 s", 30.0)]


def main() -> None:
    load_before = os.getloadavg()
    rows = run()
    load_after = os.getloadavg()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=Path(__file__).parent).stdout.strip() or "unknown"
    text = "\n".join([
        "# The study's batched trainer against the same pairs one after another",
        "",
        f"commit {commit} · {platform.machine()}, {os.cpu_count()} cores · Python "
        f"{platform.python_version()} · torch {torch.__version__} · load average (1 min) "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after",
        "",
        "Made by `OMP_NUM_THREADS=1 python benchmarks/bench_study.py`. Wall time of the worker "
        "row depends on the CPU share the session gets; the CPU-second rows do not.",
        "",
        markdown(rows),
    ]) + "\n"
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(text, encoding="utf-8")
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
