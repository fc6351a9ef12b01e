"""The study's optimizer axis: every optimizer through `to_ste`'s rule, clipped variants, the
optimizer table and figure of the report."""

from __future__ import annotations

import math

import torch

from stequiv import qat
from stequiv.experiments import study
from stequiv.experiments.study import (
    STUDY_OPTIMIZERS,
    STUDY_PRESETS,
    BatchedNets,
    StudyConfig,
    build_cell,
    run_study,
    slope_verdict,
    train_sequential,
)
from study_reference import GaussianSplit

TINY = {"datasets": ["mnist-5k"], "steps": 3, "batch_size": 8, "eval_samples": 40,
        "estimators": [{"name": "htge", "sharpness": 5.5, "bits": [2]}], "nets_per_batch": 48}


def test_every_study_optimizer_gets_the_twin_rule_of_to_ste():
    config = StudyConfig.from_dict({**TINY, "optimizers": [n for n, o in STUDY_OPTIMIZERS.items()
                                                             if o.available]})
    data = study.StudyData(GaussianSplit(), torch.zeros(0), torch.zeros(0))
    for cell in config.cells()[::8]:  # one cell per optimizer
        qnet, twin, _ = build_cell(cell, config, data)
        rule = qat.optimizer_rule(qnet.optimizer)
        assert type(twin.optimizer) is type(qnet.optimizer)
        assert cell.experiment_config(config).optimizers == (rule.kind,)
        lrs = {g["lr"] for g in twin.optimizer.param_groups}
        assert (len(lrs) == 2) == (rule.kind == "sgd")  # SGD-like: quantized weights at α·η


def test_clipped_cells_train_batched_as_one_pair_at_a_time():
    """The clip hook runs between backward and step in both paths: the twin of `sgd-clip` takes
    the Q̂-net's coefficient, that of `adam-clip-own` its own."""
    config = StudyConfig.from_dict({**TINY, "steps": 4, "optimizers": ["sgd-clip", "adam-clip-own"],
                                    "clip_grad_norm": 0.05,
                                    "lrs": {"sgd-clip": [0.1], "adam-clip-own": [1e-3]}})
    cells = config.cells()
    data = study.StudyData(GaussianSplit(), torch.zeros(0), torch.zeros(0))
    states = [s for c in cells for s in build_cell(c, config, data)]
    nets = BatchedNets(states)
    clips = [study.clipper(c, config, *(s.net for s in states[3 * k:3 * k + 3]))
             for k, c in enumerate(cells)]
    for idx in study.index_stream(len(data.train), config.batch_size, config.seed, config.steps):
        nets.train_step(*data.train.batch(idx), before_step=clips)
    reference = [s for group in train_sequential(cells, config, data) for s in group]
    for one, other in zip(states, reference, strict=True):
        for p, q in zip(one.net.parameters(), other.net.parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=0)


def test_slope_verdict_reads_the_order_from_the_slope():
    assert slope_verdict(2.01, "exact") == "exact"
    assert slope_verdict(1.9, "second order") == "second order"
    assert slope_verdict(1.9, "first order") == "second order"  # better than the rule promises
    assert slope_verdict(1.02, "second order") == "first order"
    assert slope_verdict(0.1, "exact") == "fails"
    assert slope_verdict(math.nan, "exact", cells=1) == "—"
    assert slope_verdict(math.nan, "exact", cells=0) == "fails"  # Point A fails at every η


def test_tiny_optimizer_study_writes_the_table_and_figure(tmp_path, small_bound_check):
    config = StudyConfig.from_dict({**TINY, "optimizers": ["sgd", "rmsprop", "adam-clip"],
                                    "lrs": {"sgd": [1e-4, 1e-3], "rmsprop": [1e-6, 1e-5],
                                            "adam-clip": [1e-5, 1e-4]}})
    summary = run_study(config, tmp_path, progress=False)
    table = summary["optimizers"]
    assert [t["optimizer"] for t in table] == ["sgd", "rmsprop", "adam-clip"]
    assert [t["order"] for t in table] == ["second order", "exact", "exact"]
    assert all(math.isfinite(t["slope"]) and t["cells"] == 2 for t in table)
    assert table[2]["twin_rule"].endswith("twin × the Q̂-net's clip coefficient")
    text = (tmp_path / "optimizers.md").read_text()
    assert text.startswith("| optimizer | twin rule | order | slope | verdict |")
    assert text in (tmp_path / "report.md").read_text()
    assert (tmp_path / "figures" / "ebar_vs_lr_by_optimizer.png").stat().st_size > 0
    assert "order" in (tmp_path / "study.csv").read_text().splitlines()[0]


def test_optimizers_preset_covers_every_installed_optimizer_with_clipped_variants():
    config = StudyConfig.from_dict(STUDY_PRESETS["optimizers"])
    names = {c.optimizer for c in config.cells()}
    assert {"nesterov", "adamw", "rmsprop", "adagrad", "sgd-clip", "sgd-clip-own", "adam-clip",
            "adam-clip-own"} <= names
    assert ("lion" in names) == STUDY_OPTIMIZERS["lion"].available
    assert len(config.cells()) <= 66
