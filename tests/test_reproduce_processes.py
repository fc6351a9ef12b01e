"""Pair groups in worker processes: the same numbers as one after another, at any thread count
of the calling process (each group trains on ``config.threads`` threads wherever it runs)."""

import json

import pytest
import torch

from stequiv.experiments import ExperimentConfig, reproduce

TINY = {"max_train_samples": 128, "epochs": 1, "batch_size": 32, "eval_every": 2,
        "optimizers": ("sgd", "adam"), "experiments": ("baseline", "lr-tweak"), "lr_sweep": (),
        "device": "cpu"}


def _runs(root):
    """Every run's final.json (without its wall time) and metrics.csv."""
    out = {}
    for run in sorted((root / "runs").iterdir()):
        final = json.loads((run / "final.json").read_text())
        final.pop("seconds", None)
        out[run.name] = (final, (run / "metrics.csv").read_text())
    return out


def _check_timings(root, groups: int) -> None:
    """``timings.json``: every phase of the run, each group's from wherever it trained, and in no
    manifest (its times differ from run to run)."""
    timings = json.loads((root / "timings.json").read_text())
    names = [row["phase"] for row in timings["phases"]]
    per_group = [f"group {k} of {groups}: {phase}" for k in range(1, groups + 1)
                 for phase in ("set-up", "train", "evaluate", "write results")]
    expected = ["load data", "preflight", "train groups (all, worker processes included)",
                "copy Adam baselines", "figure 1 (estimators)", "summary, tables, figures, report"]
    assert sorted(names) == sorted(expected + per_group)
    assert all(row["wall_s"] >= 0 and row["cpu_s"] >= 0 for row in timings["phases"])
    train = next(r for r in timings["phases"] if r["phase"].startswith("train groups"))
    group_cpu = sum(r["cpu_s"] for r in timings["phases"] if r["phase"].endswith(": train"))
    assert train["cpu_s"] >= 0.9 * group_cpu  # the workers' CPU time is counted
    assert not any("timings.json" in m.read_text() for m in root.rglob("manifest.json"))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the workers' own imports
def test_two_worker_processes_give_the_numbers_of_one_process_at_another_thread_count(tmp_path):
    previous = torch.get_num_threads()
    torch.set_num_threads(2)  # the caller's count must not reach the groups' reductions
    try:
        one = reproduce(ExperimentConfig(**TINY), tmp_path / "one", progress=False)
    finally:
        torch.set_num_threads(previous)
    two = reproduce(ExperimentConfig(**TINY, processes=2), tmp_path / "two", progress=False)
    assert torch.get_num_threads() == previous
    runs_one, runs_two = _runs(tmp_path / "one"), _runs(tmp_path / "two")
    assert len(runs_one) >= 4 and runs_one == runs_two
    assert json.dumps(one, sort_keys=True, default=str) == json.dumps(two, sort_keys=True, default=str)
    for root in (tmp_path / "one", tmp_path / "two"):
        _check_timings(root, groups=2)
    # a resume may use another process count (it changes no number)
    reproduce(ExperimentConfig(**TINY), tmp_path / "two", progress=False)


def test_processes_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="processes"):
        ExperimentConfig(**TINY, processes=0)
