"""Paired training: determinism, resume, a short end-to-end pair, and configuration errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stequiv.experiments import (
    ExperimentConfig,
    PairSpec,
    group_specs,
    load_data,
    pair_specs,
    run_group,
    run_pair,
)
from stequiv.experiments.engine import load_checkpoint, save_checkpoint
from stequiv.experiments.parallel import Dist

CPU = Dist(0, 1, torch.device("cpu"))
TINY = {"max_train_samples": 256, "epochs": 2, "batch_size": 32, "eval_every": 4,
        "checkpoint_every": 5, "optimizers": ("sgd",)}


@pytest.fixture(scope="module")
def tiny():
    config = ExperimentConfig(**TINY)
    return config, load_data(config)


def _run(config, data, spec, folder):
    return run_pair(config, spec, data, folder, CPU, progress=False)


def _same(a: Path, b: Path):
    fa, fb = (json.loads((d / "final.json").read_text()) for d in (a, b))
    for key in ("seconds", "trained_with"):  # wall time; which partners shared the Q̂-net
        fa.pop(key), fb.pop(key)
    assert fa == fb
    assert (a / "metrics.csv").read_text() == (b / "metrics.csv").read_text()
    wa, wb = np.load(a / "weights.npz"), np.load(b / "weights.npz")
    np.testing.assert_array_equal(wa["x"], wb["x"])
    np.testing.assert_array_equal(wa["y"], wb["y"])


def test_two_runs_are_bit_identical(tiny, tmp_path):
    config, data = tiny
    spec = PairSpec("sgd-baseline", "sgd", "baseline")
    _run(config, data, spec, tmp_path / "one")
    _run(config, data, spec, tmp_path / "two")
    _same(tmp_path / "one", tmp_path / "two")


def test_interrupted_run_resumes_bit_identically(tiny, tmp_path, interrupt_at):
    config, data = tiny
    spec = PairSpec("sgd-baseline", "sgd", "baseline")
    _run(config, data, spec, tmp_path / "straight")
    interrupt_at(7, _run, config, data, spec, tmp_path / "resumed")
    assert (tmp_path / "resumed" / "checkpoint.pt").exists()
    assert not (tmp_path / "resumed" / "final.json").exists()
    _run(config, data, spec, tmp_path / "resumed")
    assert not (tmp_path / "resumed" / "checkpoint.pt").exists()
    _same(tmp_path / "straight", tmp_path / "resumed")


def test_resume_with_another_world_size_is_refused(tiny, tmp_path, interrupt_at):
    config, data = tiny
    spec = PairSpec("sgd-baseline", "sgd", "baseline")
    interrupt_at(6, _run, config, data, spec, tmp_path)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt", CPU.device)
    ckpt["world_size"] = 2
    save_checkpoint(tmp_path / "checkpoint.pt", ckpt)  # with its manifest: only the content differs
    with pytest.raises(ValueError, match="written by 2 process"):
        _run(config, data, spec, tmp_path)
    del ckpt["format"]  # a checkpoint of the one-partner engine
    save_checkpoint(tmp_path / "checkpoint.pt", ckpt)
    with pytest.raises(ValueError, match="has format 1, this stequiv reads format 2"):
        _run(config, data, spec, tmp_path)


def test_short_pair_shows_points_a_and_b(tiny, tmp_path):
    config, data = tiny
    results = {}
    for spec in pair_specs(config):
        if spec.experiment in ("baseline", "lr-tweak", "unadjusted"):
            results[spec.experiment] = _run(config, data, spec, tmp_path / spec.run_id)
    base, tweak, unadj = (results[k]["ebar"] for k in ("baseline", "lr-tweak", "unadjusted"))
    assert 0 < base < 3 * tweak  # Point A (loose: 16 steps on 256 images)
    assert unadj > 3 * base  # Point B
    assert results["baseline"]["agreement"] > 0.99
    assert results["baseline"]["nets"]["b"]["label"].startswith("pwl")


def test_switch_protocol_builds_the_twin_mid_training(tiny, tmp_path):
    config = ExperimentConfig(**{**TINY, "switch_fraction": 0.25})
    _, data = tiny
    final = _run(config, data, PairSpec("sgd-baseline", "sgd", "baseline"), tmp_path)
    assert final["switch_step"] == 4
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[1].split(",")[0] == "4"  # alignment recorded from the switch on
    first_ebar = float(rows[1].split(",")[2])
    assert first_ebar < 1e-3


def test_config_errors():
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['epoch'\]"):
        ExperimentConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match="`bits` must be >= 1"):
        ExperimentConfig(bits=0)
    with pytest.raises(ValueError, match="is not registered"):
        ExperimentConfig(estimator="nope")
    with pytest.raises(ValueError, match="must include 'baseline'"):
        ExperimentConfig(experiments=("lr-tweak",))
    with pytest.raises(ValueError, match="`sharpness` must be > 0"):
        ExperimentConfig(sharpness=-1.0)


def test_default_sharpness_is_5_5_over_max():
    assert ExperimentConfig(bits=2).estimator_spec() == {"name": "htge", "t": pytest.approx(11 / 3)}
    assert ExperimentConfig(bits=4).estimator_spec()["t"] == pytest.approx(11 / 15)


GROUP = [PairSpec("sgd-baseline", "sgd", "baseline"),
         PairSpec("sgd-lr-tweak", "sgd", "lr-tweak", partner="lr-tweak"),
         PairSpec("sgd-unadjusted", "sgd", "unadjusted")]


def test_a_group_gives_every_pair_bit_for_bit(tiny, tmp_path, interrupt_at):
    """One Q̂-net trained with three partners beside it = three separate pairs, to the bit; an
    interrupted group resumes from the checkpoint in its first folder, also to the bit."""
    config, data = tiny
    for spec in GROUP:
        _run(config, data, spec, tmp_path / "pairs" / spec.run_id)
    dirs = [tmp_path / "group" / s.run_id for s in GROUP]
    interrupt_at(7, run_group, config, GROUP, data, dirs, CPU, progress=False)
    assert (dirs[0] / "checkpoint.pt").exists()
    finals = run_group(config, GROUP, data, dirs, CPU, progress=False)
    assert [f["trained_with"] for f in finals] == [[s.run_id for s in GROUP]] * 3
    for spec in GROUP:
        _same(tmp_path / "pairs" / spec.run_id, tmp_path / "group" / spec.run_id)


def test_specs_are_grouped_by_the_qnet_they_train():
    config = ExperimentConfig(lr_sweep=(0.25,))
    groups = [[s.run_id for s in g] for g in group_specs(pair_specs(config))]
    assert groups == [
        ["sgd-baseline", "sgd-lr-tweak", "sgd-unadjusted", "sgd-m-only", "sgd-alpha-only"],
        ["adam-baseline", "adam-lr-tweak"],
        ["sgd-lr-sweep-x0.25", "sgd-lr-sweep-tweak-x0.25"]]
    with pytest.raises(ValueError, match="must share the Q̂-net's optimizer and lr factor"):
        run_group(config, [GROUP[0], PairSpec("adam-baseline", "adam", "baseline")], None,
                  ["a", "b"], CPU)
