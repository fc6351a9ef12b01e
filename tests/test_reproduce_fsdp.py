r"""``stequiv reproduce --set parallel=fsdp`` under torchrun (2 CPU processes, gloo) gives the
one-process Table 4 numbers, through a mid-training switch, a checkpoint and a resume.

The run: ``mnist-5k`` with 256 training images, 2 epochs of batch 32 (T = 16 steps), SGD and Adam
baselines, the partners made after 4 steps (``switch_fraction`` 0.25: ``to_ste`` on the whole
weights gathered from the shards, with the SGD momentum / Adam moments), a checkpoint every 6
steps. The two-process run is stopped after its first checkpoint and started again: the resumed
run loads the whole-tensor checkpoint into the shards and must finish with the one-process numbers.

Tolerance: the same first-order argument as tests/test_distributed.py. FSDP2's reduce-scatter
averages each rank's half-batch gradient where one process sums the whole batch: the gradients
differ in their last bits, so after T steps a latent weight differs by at most T roundings,
Ē = mean |M(w_Q̂) − w_b| / R by at most (1 + sup M′)·T·2⁻²³ (8.1e-6 for the default HTGE at 2
bits), agreement by a few level flips of weights within T ulp of a boundary (8 allowed out of
N = 92,448), validation accuracy by 1/len(val). A rank that trained on the wrong half batch, a
shard loaded into the wrong parameter, or optimizer state lost at the switch or the resume, all
move Ē at first order in η·g (thousands of ulp).
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stequiv.core import UniformQuantizer, get_estimator, remap_derivative
from stequiv.experiments import ExperimentConfig

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
TINY = ["reproduce", "--set", "max_train_samples=256", "--set", "max_val_samples=500",
        "--set", "epochs=2", "--set", "batch_size=32", "--set", "optimizers=[sgd,adam]",
        "--set", "experiments=[baseline]", "--set", "lr_sweep=[]", "--set", "eval_every=4",
        "--set", "switch_fraction=0.25", "--set", "checkpoint_every=6",
        "--set", "parallel=fsdp", "--device", "cpu", "--no-progress"]
STEPS = 256 // 32 * 2  # T
VAL_SIZE = 500
EPS32 = 2.0**-23
FLIPS_ALLOWED = 8
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's default for its workers


def _run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ONE_THREAD)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _stop_after_first_checkpoint(cmd: list[str], checkpoint: Path) -> None:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=ONE_THREAD)
    try:
        deadline = time.monotonic() + 240
        listed = checkpoint.with_name("manifest.json")  # the checkpoint is complete once listed
        while (not (listed.exists() and checkpoint.name in listed.read_text())
               and proc.poll() is None and time.monotonic() < deadline):
            time.sleep(0.2)
        assert checkpoint.exists(), (proc.communicate(timeout=30)[0][-3000:]
                                     if proc.poll() is not None else "timed out")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("fsdp-reproduce")
    one, two = root / "one", root / "two"
    note = _run([sys.executable, "-m", "stequiv", *TINY, "--out", str(one)]).stderr
    _run([*TORCHRUN, "-m", "stequiv", *TINY, "--out", str(two)])
    return one, two, note


def _sup_remap_slope() -> float:
    est = get_estimator(ExperimentConfig().estimator_spec())
    grid = np.linspace(-1.5, 1.5, 300_001)
    return float(remap_derivative(est, UniformQuantizer.symmetric(bits=2, max_abs=1.0), grid).max())


def test_fsdp_two_processes_give_the_one_process_table4(one_and_two):
    one, two, _ = one_and_two
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert s1.keys() == s2.keys() == {"sgd", "adam"}
    ebar_tol = (1 + _sup_remap_slope()) * STEPS * EPS32
    for opt in ("sgd", "adam"):
        r1, r2 = s1[opt]["baseline"], s2[opt]["baseline"]
        final = json.loads((two / "runs" / f"{opt}-baseline" / "final.json").read_text())
        n = sum(layer["count"] for layer in final["layers"].values())
        assert final["world_size"] == 2 and final["switch_step"] == 4
        assert r2["ebar"] == pytest.approx(r1["ebar"], abs=ebar_tol, rel=0), opt
        assert r2["agreement"] == pytest.approx(r1["agreement"], abs=FLIPS_ALLOWED / n, rel=0), opt
        np.testing.assert_allclose(r2["val_acc"], r1["val_acc"], atol=1 / VAL_SIZE + 1e-12, rtol=0)


def test_fsdp_two_processes_give_the_one_process_weights(one_and_two):
    """The sharp check (Ē of a baseline pair is as small as its bound): every latent weight within
    (slope·T/(1 − β) + 1) ulp, β = 0.9 the SGD momentum and Adam's β₁ (measured ≤ 26 of the 160
    allowed where the slope is 1); a wrong half batch moves weights by thousands of ulp."""
    one, two, _ = one_and_two
    gain = STEPS / (1 - ExperimentConfig().momentum)
    for run, slope in (("sgd-baseline", _sup_remap_slope()), ("adam-baseline", 1.0)):
        w1, w2 = (np.load(d / "runs" / run / "weights.npz") for d in (one, two))
        for layer in np.unique(w1["layer"]):
            sel = w1["layer"] == layer
            for key, s in (("x", slope), ("y", 1.0)):
                a, b = w1[key][sel], w2[key][sel]
                ulp = np.spacing(np.abs(np.concatenate([a, b])).max())
                assert np.abs(a.astype(np.float64) - b).max() <= (s * gain + 1) * ulp, (run, key)


def test_fsdp_in_one_process_says_there_is_nothing_to_shard(one_and_two):
    _, _, note = one_and_two
    assert "`parallel` 'fsdp' in one process: nothing to shard" in note


@pytest.mark.slow  # two more torchrun launches: ~1 min idle, minutes on a shared machine
def test_fsdp_resume_is_bit_identical(one_and_two, tmp_path):
    """Stopped after its first checkpoint (step 6, after the switch) and started again, the
    2-process run ends with the uninterrupted one's files to the bit; the checkpoint holds whole
    tensors (gathered by every rank, written by rank 0), the partner's momentum included."""
    _, two, _ = one_and_two
    out = tmp_path / "resumed"
    cmd = [*TORCHRUN, "-m", "stequiv", *TINY, "--out", str(out)]
    checkpoint = out / "runs" / "sgd-baseline" / "checkpoint.pt"
    _stop_after_first_checkpoint(cmd, checkpoint)
    saved = torch.load(checkpoint, weights_only=False)
    assert saved["world_size"] == 2 and saved["step"] == 6 and len(saved["partners"]) == 1
    for state in (saved["a"], saved["partners"][0]["net"]):
        weight = state["conv2.parametrizations.weight.original"]
        assert type(weight) is torch.Tensor and weight.shape == (64, 32, 3, 3)
    momentum = [s["momentum_buffer"] for s in saved["partners"][0]["opt"]["state"].values()]
    assert (64, 32, 3, 3) in {tuple(m.shape) for m in momentum}
    assert all(type(m) is torch.Tensor for m in momentum)
    _run(cmd)
    for run in ("sgd-baseline", "adam-baseline"):
        w_two, w_resumed = (np.load(d / "runs" / run / "weights.npz") for d in (two, out))
        for key in ("x", "y"):
            np.testing.assert_array_equal(w_resumed[key], w_two[key])
        f_two, f_resumed = (json.loads((d / "runs" / run / "final.json").read_text())
                            for d in (two, out))
        assert (f_resumed["ebar"], f_resumed["agreement"]) == (f_two["ebar"], f_two["agreement"])
