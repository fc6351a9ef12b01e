"""What the checkpoint integrity check costs: hashing at save + verifying at resume, against the
training time between two checkpoints, in the quick preset.

Target (issue 10): ≤ 5 %. The quick preset's largest group (SGD: the Q̂-net and its five partners)
checkpoints every ``checkpoint_every`` = 200 steps; the time between two checkpoints is taken as
200 × the median group step (timed over ``STEPS`` steps). The integrity cost is the SHA-256 of
the checkpoint's bytes when it is written plus :func:`read_verified` (read the file, hash it,
compare with the manifest) when it is resumed, both medians of ``REPEAT`` calls.
Run: .venv/bin/python benchmarks/bench_checkpoint.py
"""

from __future__ import annotations

import hashlib
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch

from _bench import Row, markdown
from stequiv.experiments import PRESETS, ExperimentConfig, group_specs, load_data, pair_specs
from stequiv.experiments.engine import save_checkpoint
from stequiv.experiments.parallel import Dist
from stequiv.experiments.results import read_verified
from stequiv.experiments.testing import Group, index_batches

STEPS = 20
REPEAT = 15


def _median_s(fn, repeat: int = REPEAT) -> float:
    times = []
    for _ in range(repeat + 1):  # one warm-up call
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def run() -> list[Row]:
    config = ExperimentConfig.from_dict(PRESETS["quick"])
    dist = Dist(0, 1, torch.device("cpu"))
    data = load_data(config)
    specs = group_specs(pair_specs(config))[0]
    group = Group(config, specs, data, dist)
    steps = []
    for batch in data.train.batches(index_batches(len(data.train), config, dist, 0)[:STEPS + 2], 0):
        start = time.perf_counter()
        group.train_step(batch)
        steps.append(time.perf_counter() - start)
    between = config.checkpoint_every * statistics.median(steps[2:])  # 2 warm-up steps
    buf = io.BytesIO()
    torch.save(group.state(), buf)
    raw = buf.getvalue()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pt"
        save_checkpoint(path, group.state())
        hash_s = _median_s(lambda: hashlib.sha256(raw).hexdigest())
        verify_s = _median_s(lambda: read_verified(path, "", required=True))
    cost = hash_s + verify_s
    label = (f"checkpoint integrity (sha256 at save + verify at resume), {len(raw) / 1e6:.2f} MB, "
             f"{len(specs)} partners")
    print(f"group step {statistics.median(steps[2:]) * 1e3:.1f} ms; {config.checkpoint_every} steps "
          f"= {between:.2f} s; hash {hash_s * 1e3:.2f} ms, verify {verify_s * 1e3:.2f} ms: "
          f"{100 * cost / between:.3f} %")
    return [Row(label, cost, cost, f"{config.checkpoint_every} group steps (quick preset)", between,
                between, "≤ 5 %", 0.05)]


def main() -> None:
    torch.set_num_threads(1)
    print(markdown(run()))


if __name__ == "__main__":
    main()
