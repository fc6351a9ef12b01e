r"""FSDP2 (``fully_shard``, 2 CPU processes, gloo): a quantized pair trains as in one process.

tests/fsdp_worker.py makes the pair as the experiments do (``quantize_`` with HTGE, ``to_ste`` with
its SGD optimizer) and trains both nets 6 steps on the same global batches, in one process and
sharded over two. What differs is only the order of float32 sums: each rank averages its half
batch and FSDP2's reduce-scatter averages the halves. Those last-bit differences are then
amplified by the training itself (a latent weight one ulp across a decision boundary changes its
level, and HTGE's Q̂′ reaches t/2 = 2 there), so the bound is not T·ulp as for the DDP test: we
allow every latent weight to differ by 1e-4 of its layer's largest weight (measured: up to 1e-5,
i.e. 88 ulp; a weight moved by a wrong half batch differs at first order in η·g, ~1e-3 here), and
the pair's Table 4 distance Ē = mean|M(w_Q̂) − w_STE|/R (0.03–0.14 after these 6 steps) by 1e-6
(measured: 2e-9).
"""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from stequiv.core import UniformQuantizer, get_estimator, remap

WORKER = str(Path(__file__).with_name("fsdp_worker.py"))
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}
WEIGHT_TOL = 1e-4  # of the layer's max |w|
EBAR_TOL = 1e-6
LAYERS = ("conv1", "conv2", "conv3")


def _run(cmd: list[str], timeout: float = 300) -> None:
    import subprocess

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ONE_THREAD)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    _run([sys.executable, WORKER, str(root / "one.npz")])
    _run([*TORCHRUN, WORKER, str(root / "two.npz")])
    return np.load(root / "one.npz"), np.load(root / "two.npz")


def test_fsdp2_pair_trains_as_one_process(one_and_two):
    one, two = one_and_two
    assert set(one) == set(two)
    for key in one:
        a, b = one[key].astype(np.float64), two[key]
        assert np.abs(a - b).max() <= WEIGHT_TOL * np.abs(a).max(), key


def _ebar(w: np.lib.npyio.NpzFile, layer: str) -> float:
    delta, offset, lower, upper = w[f"grid/{layer}"]
    q = UniformQuantizer(delta=float(delta), offset=float(offset), lower=int(lower), upper=int(upper))
    latent = f"{layer}.parametrizations.weight.original"
    m = remap(get_estimator("htge"), q, w[f"q/{latent}"].astype(np.float64))
    return float(np.abs(m - w[f"ste/{latent}"]).mean() / (delta * (q.upper - q.lower)))


def test_fsdp2_pair_keeps_the_table4_distance(one_and_two):
    one, two = one_and_two
    for layer in LAYERS:
        assert _ebar(two, layer) == pytest.approx(_ebar(one, layer), abs=EBAR_TOL), layer
