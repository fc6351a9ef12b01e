"""Pair groups shared among worker processes: split only where the workers finish sooner, the
same numbers for any process count, and a resume keeps the groups its run started with."""

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stequiv.experiments import (
    PRESETS,
    ExperimentConfig,
    _reproduce,
    group_specs,
    pair_specs,
    reproduce,
)
from stequiv.experiments.config import PairSpec
from stequiv.experiments.parallel import balance_groups, group_cost, makespan


def _optimal(costs, workers):
    """The best makespan over every assignment of ``costs`` to ``workers`` (brute force)."""
    return min(max(sum(c for c, w in zip(costs, owners, strict=True) if w == k) for k in range(workers))
               for owners in itertools.product(range(workers), repeat=len(costs)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=6), st.integers(1, 3))
def test_makespan_is_the_list_schedule_within_graham_s_bound(costs, workers):
    span, best = makespan(costs, workers), _optimal(costs, workers)
    assert best <= span <= (4 / 3 - 1 / (3 * workers)) * best + 1e-9  # LPT (Graham 1969)
    assert span >= max(costs) and span >= sum(costs) / workers - 1e-9


def _specs(sizes):
    return [[PairSpec(f"g{i}-p{j}", "sgd", "baseline", lr_factor=float(i + 1)) for j in range(n)]
            for i, n in enumerate(sizes)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=5), st.integers(1, 4),
       st.sampled_from([0.0, 0.1, 0.5]))
def test_balancing_keeps_every_spec_once_and_never_lengthens_the_run(sizes, workers, switch):
    groups = _specs(sizes)
    plan = balance_groups(groups, workers, switch)
    assert sorted(s.run_id for g in plan for s in g) == sorted(s.run_id for g in groups for s in g)
    assert all(len({(s.optimizer, s.lr_factor) for s in g}) == 1 for g in plan)  # one Q̂-net each
    before = makespan([group_cost(g, switch) for g in groups], workers)
    after = makespan([group_cost(g, switch) for g in plan], workers)
    assert after <= before
    assert len(plan) == len(groups) or after < before  # a split only where it pays
    costs = [group_cost(g, switch) for g in plan]
    assert costs == sorted(costs, reverse=True) or workers == 1


def test_the_quick_preset_on_two_workers_splits_sgd_s_group_from_9_nets_to_8():
    config = ExperimentConfig.from_dict(PRESETS["quick"])
    groups = group_specs(pair_specs(config))
    assert [1 + len(g) for g in groups] == [6, 3, 3, 3]
    assert balance_groups(groups, 1) == groups  # one worker: nothing split, order kept
    plan = balance_groups(groups, 2)
    assert [1 + len(g) for g in plan] == [5, 3, 3, 3, 2]
    assert [s.run_id for s in plan[0]] == ["sgd-baseline", "sgd-lr-tweak", "sgd-unadjusted",
                                          "sgd-m-only"]
    assert makespan([1 + len(g) for g in plan], 2) == 8 < makespan([6, 3, 3, 3], 2) == 9


def test_makespan_names_a_bad_worker_count():
    with pytest.raises(ValueError, match="`workers` must be a positive integer, got 0"):
        makespan([1.0], 0)


ONE_GROUP = {"max_train_samples": 128, "epochs": 1, "batch_size": 32, "eval_every": 2,
             "optimizers": ("sgd",), "experiments": ("baseline", "lr-tweak", "unadjusted", "m-only"),
             "lr_sweep": (), "device": "cpu"}


def _runs(root):
    out = {}
    for run in sorted((root / "runs").iterdir()):
        final = json.loads((run / "final.json").read_text())
        for key in ("seconds", "trained_with"):  # wall time; which partners shared the Q̂-net
            final.pop(key)
        out[run.name] = (final, (run / "metrics.csv").read_text(), (run / "weights.npz").read_bytes())
    return out


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the workers' own imports
def test_a_group_split_over_two_workers_gives_the_numbers_of_one_process(tmp_path):
    assert [len(g) for g in _reproduce.planned_groups(ExperimentConfig(**ONE_GROUP), 2)] == [2, 2]
    one = reproduce(ExperimentConfig(**ONE_GROUP), tmp_path / "one", progress=False)
    two = reproduce(ExperimentConfig(**ONE_GROUP, processes=2), tmp_path / "two", progress=False)
    assert len(_runs(tmp_path / "one")) == 4 and _runs(tmp_path / "one") == _runs(tmp_path / "two")
    assert json.dumps(one, sort_keys=True) == json.dumps(two, sort_keys=True)
    trained = {json.loads((r / "final.json").read_text())["run_id"]:
               json.loads((r / "final.json").read_text())["trained_with"]
               for r in (tmp_path / "two" / "runs").iterdir()}
    assert trained["sgd-baseline"] == ["sgd-baseline", "sgd-lr-tweak"]
    assert trained["sgd-m-only"] == ["sgd-unadjusted", "sgd-m-only"]


def test_a_resume_trains_the_groups_its_run_started_with(tmp_path, monkeypatch):
    seen = []

    def stop(config, groups, *args, **kwargs):
        seen.append([[s.run_id for s in g] for g in groups])
        raise KeyboardInterrupt

    monkeypatch.setattr(_reproduce, "train_groups", stop)
    for processes in (2, 1):
        with pytest.raises(KeyboardInterrupt):
            reproduce(ExperimentConfig(**ONE_GROUP, processes=processes), tmp_path, progress=False)
    split = [["sgd-baseline", "sgd-lr-tweak"], ["sgd-unadjusted", "sgd-m-only"]]
    assert seen == [split, split]  # started on 2: its groups, whatever the resume's count
    assert json.loads((tmp_path / "config.json").read_text())["processes"] == 2
