"""stequiv study: the batched trainer against one pair at a time, resume, bad inputs, the command."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from click.testing import CliRunner
from torch.nn import functional as F

from stequiv.cli import main
from stequiv.experiments import study
from stequiv.experiments.study import (
    BatchedNets,
    StudyConfig,
    build_cell,
    load_study_data,
    run_study,
    train_sequential,
)
from stequiv.experiments.testing import interrupted_study, pair_metrics
from study_reference import GaussianSplit

# The batched forward/backward sums float32 convolutions in another order than one net's: weights
# agree to ~1e-7 per step. On real images, quantized weights make exact max-pool ties common, and a
# last-bit difference can route a tie's gradient elsewhere (a valid subgradient either way), so
# multi-step runs are compared on continuous (Gaussian) images, where ties do not occur.
WEIGHT_ATOL = 1e-5
# ResNet-20 in float32 is not comparable this way: its BatchNorm divides by the deviation of a batch
# of 8, and at 2 bits a summation-order difference of ~1e-7 can carry a latent weight across a bin
# boundary, which changes Q(w) by a whole Δ (measured: 2e-3 after 3 steps with one thread on an
# AVX-512 machine, 1e-5 on AVX2). In float64 a flip would need a weight within ~1e-16 of a boundary,
# so there the two paths must agree to summation noise: the same function, computed twice.
FLOAT64_ATOL = 1e-12


TINY = {"datasets": ["mnist-5k"], "steps": 2, "batch_size": 8, "eval_samples": 40,
        "estimators": [{"name": "htge", "sharpness": 5.5, "bits": [2]},
                       {"name": "study_cosine", "bits": [4]}],
        "lrs": {"sgd": [0.05], "adam": [1e-3]}, "nets_per_batch": 6}


def _train_batched(cells, config, data):
    states = [s for c in cells for s in build_cell(c, config, data)]
    nets = BatchedNets(states)
    for idx in study.index_stream(len(data.train), config.batch_size, config.seed, config.steps):
        nets.train_step(*data.train.batch(idx))
    return states


def _assert_same_nets(batched, reference, atol):
    assert len(batched) == len(reference)
    for one, other in zip(batched, reference, strict=True):
        for p, q in zip(one.net.parameters(), other.net.parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=atol, rtol=0)


def test_batched_equals_one_pair_at_a_time():
    config = StudyConfig.from_dict({**TINY, "steps": 4})
    cells = config.cells()[::3][:2]  # htge/sgd and study_cosine/adam
    assert {c.optimizer for c in cells} == {"sgd", "adam"}
    data = study.StudyData(GaussianSplit(), torch.zeros(0), torch.zeros(0))
    batched = _train_batched(cells, config, data)
    reference = [s for group in train_sequential(cells, config, data) for s in group]
    start = build_cell(cells[0], config, data)[0].net
    assert not torch.equal(next(batched[0].net.parameters()), next(start.parameters()))  # moved
    _assert_same_nets(batched, reference, WEIGHT_ATOL)
    x = data.train.batch(list(range(8)))[0]  # the nets still run their own forward afterwards
    with torch.no_grad():
        torch.testing.assert_close(BatchedNets(batched).forward(x),
                                   torch.stack([s.net(x) for s in batched]), atol=1e-5, rtol=1e-6)


def test_stacked_convnet_forward_equals_the_vmap_path_values_and_gradients():
    config = StudyConfig.from_dict(TINY)
    data = study.StudyData(GaussianSplit(), torch.zeros(0), torch.zeros(0))
    cells = config.cells()[::3][:2]
    stacked = BatchedNets([s for c in cells for s in build_cell(c, config, data)])
    plain = BatchedNets([s for c in cells for s in build_cell(c, config, data)], stacked=False)
    assert stacked.stacked is not None and plain.stacked is None
    x, y = data.train.batch(list(range(8)))
    out, ref = stacked.forward(x), plain.forward(x)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-6)
    for nets, logits in ((stacked, out), (plain, ref)):
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(len(nets.states))).backward()
    for a, b in zip(stacked.states, plain.states, strict=True):
        for p, q in zip(a.net.parameters(), b.net.parameters(), strict=True):
            torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5)


def test_stacked_convnet_pools_before_relu_bit_for_bit_ties_included():
    """The stacked forward max-pools before its ReLU (cheaper: the ReLU runs on a quarter of the
    elements): the same values and gradients as the ConvNet's ReLU-then-pool, on integer-valued
    activations where ties, zeros and all-negative windows are everywhere."""
    a = torch.randint(-2, 3, (4, 6, 8, 8), generator=torch.Generator().manual_seed(0)).float()
    a = a.contiguous(memory_format=torch.channels_last)  # as the stacked conv1 hands it over
    g = torch.randn(4, 6, 4, 4, generator=torch.Generator().manual_seed(1))
    outs = []
    for first_pool in (False, True):
        x = a.clone().requires_grad_()
        y = torch.relu(F.max_pool2d(x, 2)) if first_pool else F.max_pool2d(torch.relu(x), 2)
        y.backward(g)
        outs.append((y.detach(), x.grad))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


@pytest.mark.parametrize("stacked", [True, False])
def test_batched_per_group_and_ste_layers_match_each_net(stacked):
    """Per-group Δ (the layout's rows view), per-channel and per-tensor fallbacks and a plain STE
    net in one batch: the logits and gradients of each net's own forward and backward."""
    from stequiv.experiments.study._batched import NetState
    from stequiv.models import ConvNet
    from stequiv.qat import QuantConfig, quantize_

    torch.manual_seed(0)
    nets = [ConvNet() for _ in range(3)]
    for net, estimator in zip(nets, ["htge", "ste", "study_cosine"], strict=True):
        quantize_(net, QuantConfig(estimator=estimator, bits=2, group_size=32,
                                   group_fallback="per-channel"), log=False)
    states = [NetState(n, torch.optim.SGD(n.parameters(), lr=0.1), None) for n in nets]
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    out = BatchedNets(states, stacked=stacked).forward(x)
    F.cross_entropy(out.flatten(0, 1), y.repeat(3)).backward()
    grads = [[p.grad for p in n.parameters()] for n in nets]
    for n in nets:
        n.zero_grad(set_to_none=True)
    ref = torch.stack([n(x) for n in nets])
    F.cross_entropy(ref.flatten(0, 1), y.repeat(3)).backward()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-6)
    for g, n in zip(grads, nets, strict=True):
        for a, p in zip(g, n.parameters(), strict=True):
            torch.testing.assert_close(a, p.grad, atol=1e-6, rtol=1e-5)


def test_batched_first_step_on_mnist_matches_to_float_rounding():
    config = StudyConfig.from_dict({**TINY, "steps": 1})
    cells = config.cells()[::3][:2]
    data = load_study_data(config, "mnist-5k")
    reference = [s for group in train_sequential(cells, config, data) for s in group]
    _assert_same_nets(_train_batched(cells, config, data), reference, 1e-6)


@pytest.fixture
def float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def test_batched_resnet20_batchnorm_equals_one_pair_at_a_time(float64_default):
    """BatchNorm's running statistics are updated per net under vmap (stacked buffers), and the
    evaluation uses them (eval mode), as the one-net path does. In float64 (see FLOAT64_ATOL)."""
    config = StudyConfig.from_dict({**TINY, "models": ["resnet20"], "steps": 3,
                                    "estimators": [{"name": "htge", "sharpness": 5.5, "bits": [2]}]})
    cells = config.cells()[:2]  # sgd and adam
    data = study.StudyData(GaussianSplit(), torch.zeros(0), torch.zeros(0))
    batched = _train_batched(cells, config, data)
    assert all(p.dtype == torch.float64 for s in batched for p in s.net.parameters())
    reference = [s for group in train_sequential(cells, config, data) for s in group]
    _assert_same_nets(batched, reference, FLOAT64_ATOL)
    for one, other in zip(batched, reference, strict=True):
        for (name, b), c in zip(one.net.named_buffers(), other.net.buffers(), strict=True):
            if "running" in name:
                assert not torch.equal(b, torch.zeros_like(b) if "mean" in name else torch.ones_like(b))
            torch.testing.assert_close(b, c, atol=FLOAT64_ATOL, rtol=0)
    x, y = data.train.batch(list(range(16)))
    nets = BatchedNets(batched)
    scores = nets.evaluate([(x, y)])
    for score, state in zip(scores, reference, strict=True):
        state.net.eval()
        with torch.no_grad():
            loss = torch.nn.functional.cross_entropy(state.net(x), y).item()
        assert score["loss"] == pytest.approx(loss, rel=1e-10)
    assert nets.skeleton.training  # back in training mode


def test_training_processes_are_deterministic_without_the_nan_fill():
    """Deterministic algorithms on (a resumed study or reproduction trains as an uninterrupted
    one), but not torch's NaN fill of every new tensor, which only costs time."""
    from stequiv.experiments.engine import deterministic_algorithms as _deterministic

    before = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    try:
        _deterministic()
        assert torch.are_deterministic_algorithms_enabled()
        assert not torch.utils.deterministic.fill_uninitialized_memory
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.utils.deterministic.fill_uninitialized_memory = before[1]


def _rows(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def test_a_round_s_costly_batch_is_cut_for_the_workers_first():
    """ResNet-20's batch (10 × the ConvNet's cost per net) is cut and handed out first."""
    from stequiv.experiments.parallel import makespan
    from stequiv.experiments.study._study import scheduled

    config = StudyConfig.from_dict({**TINY, "models": ["convnet", "resnet20"], "nets_per_batch": 24,
                                    "lrs": {"sgd": [0.05, 0.1], "adam": [1e-3, 1e-2]}})
    todo = study.cell_batches(config)
    assert [(b[0].model, len(b)) for b in todo] == [("convnet", 8), ("resnet20", 8)]
    flops = {"convnet": 1.0, "resnet20": 10.0}

    def cost(b):
        return 3 * len(b) * flops[b[0].model]

    plan = scheduled(todo, 2, flops)
    assert sorted(c.cell_id for b in plan for c in b) == sorted(c.cell_id for b in todo for c in b)
    assert [(b[0].model, len(b)) for b in plan] == [("resnet20", 4)] * 2 + [("convnet", 4)] * 2
    assert makespan([cost(b) for b in plan], 2) == 132 < makespan([cost(b) for b in todo], 2) == 240
    assert sum(cost(b) for b in todo) / 2 == 132  # the even share
    assert scheduled(todo, 1, flops) == todo
    measured = study._study.model_flops(config, {"mnist-5k": load_study_data(config, "mnist-5k")})
    assert 8 < measured["resnet20"] / measured["convnet"] < 12  # ~62 and ~6.2 MFLOPs per image


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the workers' own imports
def test_a_batch_cut_for_two_workers_gives_the_rows_of_one_batch(tmp_path, small_bound_check):
    """A cell's numbers do not depend on its batch-mates: one batch of 4 cells in one process,
    or that batch cut in two for two workers, give the same rows to the bit."""
    config = StudyConfig.from_dict({**TINY, "nets_per_batch": 12})
    assert len(study.cell_batches(config)) == 1
    run_study(config, tmp_path / "one", progress=False)
    run_study(config, tmp_path / "two", progress=False, workers=2)
    assert _rows(tmp_path / "one" / "study.csv") == _rows(tmp_path / "two" / "study.csv")


def test_study_resumes_after_a_stop_and_is_deterministic(tmp_path, small_bound_check):
    """Stopped after one batch, resumed by 2 worker processes: the rows equal one process's."""
    config = StudyConfig.from_dict({**TINY, "nets_per_batch": 3})  # one cell per batch
    with interrupted_study(batches=1), pytest.raises(KeyboardInterrupt):
        run_study(config, tmp_path / "a", progress=False)
    partial = _rows(tmp_path / "a" / "study.csv")
    assert len(partial) == 1 and (tmp_path / "a" / "config.json").exists()
    assert study.report_study(config, tmp_path / "a")["cells"] == 1  # the stopped folder reports
    assert (tmp_path / "a" / "report.md").read_text().startswith("# stequiv study: 1 of 4 cells")
    summary = run_study(config, tmp_path / "a", progress=False, workers=2)  # finished by 2 processes
    assert summary["cells"] == summary["of"] == 4
    assert _rows(tmp_path / "a" / "study.csv")[0] == partial[0]
    run_study(config, tmp_path / "b", progress=False)
    assert _rows(tmp_path / "a" / "study.csv") == _rows(tmp_path / "b" / "study.csv")
    rows = _rows(tmp_path / "a" / "study.csv")
    assert {"ebar_twin", "ebar_tweak", "agreement_twin", "coefficient", "val_acc_q"} <= set(rows[0])
    bound = json.loads((tmp_path / "a" / "bound_check.json").read_text())
    assert bound["checks"] > 0 and bound["violations"] == 0
    assert (tmp_path / "a" / "report.md").exists()
    assert (tmp_path / "a" / "figures" / "ebar_ratio_vs_lr.png").exists()
    with pytest.raises(ValueError, match="different config"):
        run_study(StudyConfig.from_dict({**TINY, "steps": 3}), tmp_path / "a", progress=False)


def test_batches_group_one_model_and_dataset_in_grid_order():
    config = StudyConfig.from_dict({**TINY, "models": ["convnet", "resnet20"], "nets_per_batch": 6,
                                    "datasets": ["mnist-5k", "fashion-mnist"],
                                    "estimators": [{"name": "htge", "sharpness": 5.5, "bits": [2]},
                                                   {"name": "mad", "bits": [4], "models": ["resnet20"]}]})
    batches = study.cell_batches(config)
    order = {c.cell_id: k for k, c in enumerate(config.cells())}
    ids = [[order[c.cell_id] for c in b] for b in batches]
    assert sorted(k for b in ids for k in b) == list(range(len(order)))
    assert all(b == sorted(b) for b in ids) and [b[0] for b in ids] == sorted(b[0] for b in ids)
    assert all(len({(c.model, c.dataset) for c in b}) == 1 for b in batches)
    assert {c.model for c in config.cells() if c.label == "mad()"} == {"resnet20"}
    assert config.cells()[0].cell_id.startswith("convnet-mnist-5k-htge")


def test_report_of_a_folder_without_a_study_is_refused(tmp_path):
    with pytest.raises(ValueError, match="holds no study"):
        study.report_study(StudyConfig.from_dict(TINY), tmp_path)


@pytest.mark.parametrize("workers", [0, 1.5])
def test_bad_worker_count_is_refused(tmp_path, workers):
    with pytest.raises(ValueError, match=f"--workers must be an integer ≥ 1, got {workers}"):
        run_study(StudyConfig.from_dict(TINY), tmp_path, workers=workers)


@pytest.mark.parametrize(("change", "match"), [
    ({"estimators": [{"name": "psg"}]}, r"psg has no M at bits \[1, 2, 4, 8\]"),
    ({"estimators": [{"name": "ede"}]}, r"ede has no M at bits \[2, 4, 8\]"),
    ({"lrs": {"sgd": [0.1, -1.0], "adam": [0.0]}},
     r"`lrs.sgd\[1\]` must be > 0, got -1.0[\s\S]*`lrs.adam\[0\]` must be > 0, got 0.0"),
    ({"datasets": []}, "the grid is empty"),
    ({"lr": [0.1]}, r"unknown study config key\(s\) \['lr'\]"),
    ({"datasets": ["mnist-6k"]}, "unknown dataset 'mnist-6k'"),
    ({"models": ["resnet-20"]}, r"unknown model 'resnet-20'; choose from \('convnet', 'resnet20'\)"),
    ({"estimators": [{"name": "mad", "bits": [4], "models": ["resnet20"]}]},
     r"names models \['resnet20'\] that are not in `models` \['convnet'\]"),
])
def test_bad_grids_are_refused_naming_the_entries(change, match):
    with pytest.raises(ValueError, match=match):
        StudyConfig.from_dict({**TINY, **change})


def test_max_minutes_too_small_is_refused_before_training(tmp_path):
    config = StudyConfig.from_dict({**TINY, "nets_per_batch": 3})
    with pytest.raises(ValueError, match="--max-minutes 1e-06 is too small for the grid: 4 cells"):
        run_study(config, tmp_path, max_minutes=1e-6, progress=False)
    assert not (tmp_path / "cells").exists()


def test_max_minutes_counts_each_model_at_its_own_step_time(tmp_path, monkeypatch):
    """ResNet-20 cells are estimated at ResNet-20's measured step time, not the ConvNet's."""
    config = StudyConfig.from_dict({**TINY, "models": ["convnet", "resnet20"], "steps": 100})
    speed = {"convnet": 0.001, "resnet20": 0.1}  # seconds per net-step, as calibrated
    monkeypatch.setattr(study._study, "calibrate", lambda c, d, *, model: speed[model])
    # 4 cells per model, 12 nets × 100 steps each: 1.2 s of ConvNet, 120 s of ResNet-20
    with pytest.raises(ValueError, match=r"8 cells left \(convnet: 12 nets at 1 ms per net-step, "
                                         r"resnet20: 12 nets at 100 ms per net-step, × 100 steps, "
                                         r"measured now, on 1 worker\(s\)\) need about 2.0 minutes"):
        run_study(config, tmp_path, max_minutes=1.5, progress=False)
    assert not (tmp_path / "cells").exists()


def test_study_command_reports_bad_input_cleanly(tmp_path):
    result = CliRunner().invoke(main, ["study", "--quick", "--out", str(tmp_path),
                                       "--set", "lrs={sgd: [0.1], adam: [-1]}"])
    assert result.exit_code == 1
    assert "`lrs.adam[0]` must be > 0, got -1 (from --set" in result.output
    assert not (tmp_path / "config.json").exists()


def test_quick_preset_has_at_least_60_cells_over_3_decades():
    from stequiv.experiments.study import STUDY_PRESETS

    config = StudyConfig.from_dict(STUDY_PRESETS["quick"])
    assert len(config.cells()) >= 60
    for lrs in config.lrs.values():
        assert len(lrs) >= 8 and max(lrs) / min(lrs) >= 1e3
    full = StudyConfig.from_dict(STUDY_PRESETS["full"])
    assert len({(c.estimator["name"], c.estimator.get("sharpness")) for c in full.cells()}) >= 6
    assert {c.bits for c in full.cells()} == {1, 2, 4, 8} and len(full.datasets) >= 2
    assert {(c.model, c.dataset) for c in full.cells()} == {
        (m, d) for m in ("convnet", "resnet20") for d in ("mnist-5k", "fashion-mnist")}


def test_pair_far_outside_gets_nan_instead_of_stopping_the_study():
    """EDE's M(w) is infinite where Q̂′ underflows (a weight driven far out by a huge η)."""
    config = StudyConfig.from_dict({**TINY, "estimators": [{"name": "ede", "bits": [1]}]})
    data = study.StudyData(GaussianSplit(), torch.zeros(0), torch.zeros(0))
    a, twin, _ = (s.net for s in build_cell(config.cells()[0], config, data))
    with torch.no_grad():
        next(p for n, p in a.named_parameters() if n.startswith("conv2.param")).fill_(1e6)
    ebar, agreement = pair_metrics(a, twin, remap=True)
    assert ebar != ebar and agreement != agreement  # NaN
