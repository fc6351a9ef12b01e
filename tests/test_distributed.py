r"""torchrun with 2 CPU processes (gloo, DDP) gives the one-process numbers.

Tolerance. Both runs see the same global batches in the same order from the same initial weights;
what differs is the order of the float32 sums: each rank averages the gradient over its half of
the batch and DDP averages the two halves, where one process sums all 32 at once. The gradients
then differ in their last bits (relative ≈ log2(B)·2⁻²⁴), an update η·g differs by far less than
an ulp of the weight, so a step changes a weight by at most one different rounding: after T steps
(to first order in η) every latent weight of a layer differs by at most T·ulp(max|w|) between the
runs, and M(w) by at most (sup M′·T + 1)·ulp. With SGD momentum β the gradient's last-bit
difference also stays in the momentum buffer and enters every later update with weight β^k, a total
gain of Σβ^k = 1/(1 − β) (10 for β = 0.9): where η·g is large (the first conv layer, whose gradient
sums over every pixel) the weights then differ by up to T/(1 − β) ulp — measured: 41 ulp of the 160
allowed there, ≤ 4 ulp in the other layers; a wrong batch gives ~1e4 ulp. Hence, with R the range length of a layer and
ulp(x)/x ≤ 2⁻²³,

* Ē = mean |M(w_Q̂) − w_b| / R moves by at most (1 + sup M′)·T·2⁻²³ (T = 16, sup M′ = 3.25 for the
  default HTGE: 8.1e-6; the measured difference is about 1e-11);
* agreement moves by k/N when k of the N quantized weights change level, which needs a weight within
  T ulp of one of the u − l boundaries: about N·(u − l)·2T·2⁻²³ ≈ 1 weight per net for
  N = 92,448; we allow 8 (Poisson tail below 1e-3);
* a validation prediction changes only where two logits tie to a few ulp: val_acc within 1/len(val).

The summary's structure (optimizers, experiments, keys) must be identical.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from stequiv.core import UniformQuantizer, get_estimator, remap_derivative
from stequiv.experiments import ExperimentConfig, PairSpec
from stequiv.experiments.engine import build_partner, build_qnet, make_optimizer
from stequiv.experiments.parallel import CpuSyncBatchNorm2d, convert_sync_batchnorm

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
REPRODUCE = ["-m", "stequiv", "reproduce"]
TINY = ["--set", "max_train_samples=256", "--set", "epochs=2", "--set", "batch_size=32",
        "--set", "optimizers=[sgd]", "--set", "experiments=[baseline,lr-tweak,unadjusted]",
        "--set", "lr_sweep=[]", "--set", "eval_every=4", "--device", "cpu", "--no-progress"]
STEPS = 256 // 32 * 2  # T
VAL_SIZE = 1000  # mnist-5k validation split
EPS32 = 2.0**-23
FLIPS_ALLOWED = 8
MOMENTUM_GAIN = 1 / (1 - ExperimentConfig().momentum)  # Σ β^k


ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's default for its workers


def _run(cmd: list[str], timeout: float = 300) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=ONE_THREAD)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ddp")
    _run([sys.executable, *REPRODUCE, *TINY, "--out", str(root / "one")])
    _run([*TORCHRUN, *REPRODUCE, *TINY, "--out", str(root / "two")])
    return root / "one", root / "two"


def _sup_remap_slope() -> float:
    est = get_estimator(ExperimentConfig().estimator_spec())
    grid = np.linspace(-1.5, 1.5, 300_001)
    return float(remap_derivative(est, UniformQuantizer.symmetric(bits=2, max_abs=1.0), grid).max())


def test_two_processes_give_the_one_process_summary(one_and_two):
    one, two = one_and_two
    s1, s2 = (json.loads((d / "summary.json").read_text()) for d in (one, two))
    assert s1.keys() == s2.keys() == {"sgd"}
    ebar_tol = (1 + _sup_remap_slope()) * STEPS * EPS32
    for exp, r1 in s1["sgd"].items():
        r2 = s2["sgd"][exp]
        assert r1.keys() == r2.keys() == {"ebar", "agreement", "val_acc"}
        n = sum(layer["count"] for layer in
                json.loads((one / "runs" / f"sgd-{exp}" / "final.json").read_text())["layers"].values())
        assert r2["ebar"] == pytest.approx(r1["ebar"], abs=ebar_tol, rel=0), exp
        assert r2["agreement"] == pytest.approx(r1["agreement"], abs=FLIPS_ALLOWED / n, rel=0), exp
        np.testing.assert_allclose(r2["val_acc"], r1["val_acc"], atol=1 / VAL_SIZE + 1e-12, rtol=0)
    assert json.loads((two / "runs" / "sgd-baseline" / "final.json").read_text())["world_size"] == 2


def test_two_processes_give_the_one_process_weights(one_and_two):
    """The sharp check behind the summary: every latent weight within T/(1 − β) ulp (a wrong batch
    is 1e4 ulp)."""
    one, two = one_and_two
    sup_slope = _sup_remap_slope()
    for run in ("sgd-baseline", "sgd-lr-tweak", "sgd-unadjusted"):
        w1, w2 = (np.load(d / "runs" / run / "weights.npz") for d in (one, two))
        remapped = json.loads((one / "runs" / run / "final.json").read_text())["remap"]
        for layer in np.unique(w1["layer"]):
            sel = w1["layer"] == layer
            for key, slope in (("x", sup_slope if remapped else 1.0), ("y", 1.0)):
                a, b = w1[key][sel], w2[key][sel]
                ulp = np.spacing(np.abs(np.concatenate([a, b])).max())
                tol = (slope * STEPS * MOMENTUM_GAIN + 1) * ulp
                assert np.abs(a.astype(np.float64) - b).max() <= tol, (run, key)


def test_torchrun_quick_preset_starts(tmp_path):
    """`torchrun --nproc-per-node 2 -m stequiv reproduce --quick --out DIR`: both ranks train
    (a first checkpoint after 5 steps, written by rank 0 past a barrier); stopped there."""
    out = tmp_path / "quick"
    cmd = [*TORCHRUN, *REPRODUCE, "--quick", "--out", str(out), "--no-progress",
           "--set", "checkpoint_every=5"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=ONE_THREAD)
    checkpoint = out / "runs" / "sgd-baseline" / "checkpoint.pt"
    try:
        deadline = time.monotonic() + 240
        while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert checkpoint.exists(), proc.communicate(timeout=30)[0][-3000:] if proc.poll() is not None else "timed out"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)
    config = json.loads((out / "config.json").read_text())
    assert (config["dataset"], config["epochs"], config["eval_every"]) == ("mnist-5k", 5, 20)
    state = torch.load(checkpoint, weights_only=False)
    assert state["world_size"] == 2 and state["step"] % 5 == 0 and state["step"] >= 5


def test_cpu_sync_batchnorm_is_batchnorm_over_the_global_batch(tmp_path):
    """Under DDP, each rank's half-batch output, every gradient and the running statistics equal
    BatchNorm2d on the whole batch in one process (float32 sums in another order: 1e-6)."""
    out = tmp_path / "diffs.json"
    _run([*TORCHRUN, str(Path(__file__).with_name("dist_worker.py")), str(out)], timeout=120)
    diffs = json.loads(out.read_text())
    assert diffs.pop("class") == "CpuSyncBatchNorm2d"
    assert len(diffs) == 10 and max(diffs.values()) < 1e-6, diffs


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_sync_batchnorm_survives_the_switch(device):
    """sync_batchnorm: the Q̂-net's 21 BatchNorms become synced ones (CPU: ours; CUDA: PyTorch's,
    converted here without a GPU) and the partner, a deep copy made by to_ste after a training
    step, keeps them, with the same running statistics."""
    config = ExperimentConfig(model="resnet20", sync_batchnorm=True, optimizers=("sgd",))
    qnet = build_qnet(config, 1, 10, torch.device("cpu"))
    if device == "cuda":
        qnet = convert_sync_batchnorm(build_qnet(replace(config, sync_batchnorm=False), 1, 10,
                                                 torch.device("cpu")), torch.device("cuda"))
    kind = {"cpu": CpuSyncBatchNorm2d, "cuda": torch.nn.SyncBatchNorm}[device]
    assert sum(isinstance(m, kind) for m in qnet.modules()) == 21
    opt, sched = make_optimizer(config, "sgd", qnet, 1.0, 10)
    torch.nn.functional.cross_entropy(qnet(torch.randn(8, 1, 28, 28)), torch.arange(8)).backward()
    opt.step()
    partner, _, _ = build_partner(config, PairSpec("sgd-baseline", "sgd", "baseline"), qnet, opt, sched)
    assert sum(isinstance(m, kind) for m in partner.modules()) == 21
    for (name, a), b in zip(qnet.named_buffers(), partner.buffers(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("world_size", ["1", "2"])
def test_end_worker_process_exits_only_a_torchrun_worker_and_keeps_its_output(world_size):
    # A torchrun worker ends at once (exit code kept, buffered output flushed), skipping the
    # interpreter teardown in which gloo's threads can abort a finished run; one process returns.
    code = ("import sys; from stequiv.experiments import end_worker_process\n"
            "print('written', end=''); sys.stderr.write('noted')\n"
            "end_worker_process(3)\nprint(' and returned', end='')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "WORLD_SIZE": world_size})
    if world_size == "2":
        assert (done.returncode, done.stdout, done.stderr) == (3, "written", "noted")
    else:
        assert (done.returncode, done.stdout) == (0, "written and returned")
