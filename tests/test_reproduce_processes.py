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
    # a resume may use another process count (it changes no number)
    reproduce(ExperimentConfig(**TINY), tmp_path / "two", progress=False)


def test_processes_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="processes"):
        ExperimentConfig(**TINY, processes=0)
