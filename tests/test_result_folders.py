"""Result folders are all-or-nothing: claimed only after every check, every file read back under a
manifest (``config.json`` and a study's cells included), leftovers of killed writes removed on
resume, and a file deleted from under its manifest refused rather than silently left out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stequiv.experiments import ExperimentConfig, PairSpec, load_data, reproduce, run_pair
from stequiv.experiments.results import (
    MANIFEST,
    IntegrityError,
    read_verified,
    write_config,
    write_report,
)
from stequiv.experiments.study import StudyConfig, report_study, run_study
from test_experiments import CPU, TINY

# one group (the SGD baseline), 2 steps: a whole reproduction, report included, in a few seconds
ONE_PAIR = {"max_train_samples": 64, "max_val_samples": 64, "epochs": 1, "batch_size": 32,
            "eval_every": 1, "optimizers": ("sgd",), "experiments": ("baseline",), "lr_sweep": ()}
STUDY = {"datasets": ["mnist-5k"], "steps": 2, "batch_size": 8, "eval_samples": 40,
         "estimators": [{"name": "htge", "sharpness": 5.5, "bits": [2]}],
         "optimizers": ["sgd"], "lrs": {"sgd": [0.05, 0.1]}, "nets_per_batch": 3}


@pytest.fixture(autouse=True)
def small_bound_check(monkeypatch):
    from stequiv import theory

    real = theory.bound_check
    monkeypatch.setattr(theory, "bound_check", lambda: real(["mad"], steps=10, etas=(0.1,)))


def _reproduce(out: Path, **change) -> None:
    reproduce(ExperimentConfig.from_dict({**ONE_PAIR, **change}), out, progress=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished one-pair reproduction (copied by :func:`folder` for each test)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    _reproduce(out)
    return out


@pytest.fixture
def folder(finished, tmp_path) -> Path:
    return Path(shutil.copytree(finished, tmp_path / "out"))


def _numbers(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("runs/*/*"))}

# ------------------------------------------------------------------- claimed after every check


@pytest.mark.parametrize("change", [
    {"sharpness": 1e-300},  # α cannot be evaluated
    {"group_size": 7},  # does not divide conv1's 9 inputs
    {"estimator": "ede", "bits": 2},  # a binary estimator on the 2-bit grid
    {"estimator": "ede", "bits": 1, "schedule": "ir-net", "schedule_t": [1.0, 1e6]},  # no M late on
], ids=["sharpness", "group_size", "ede-2-bits", "schedule_t"])
def test_a_refused_reproduction_claims_nothing(tmp_path, change):
    with pytest.raises(ValueError):
        _reproduce(tmp_path / "out", **change)
    assert not (tmp_path / "out").exists()


def test_the_corrected_rerun_runs_into_the_same_folder(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="group_size"):
        _reproduce(out, group_size=7)
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"group_size": 7}))  # an older claim, cut short
    _reproduce(out)
    ours = json.loads(json.dumps(ExperimentConfig.from_dict(ONE_PAIR).to_dict()))
    assert json.loads((out / "config.json").read_text()) == ours
    assert (out / "report.md").exists()

# --------------------------------------------------------------------- config.json under a manifest


def test_an_edited_config_json_is_refused_by_report_and_resume(folder):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    path.write_text(json.dumps({**config, "lr_sgd": 0.5}, indent=2))
    for call in (lambda: write_report(folder), lambda: _reproduce(folder)):
        with pytest.raises(IntegrityError, match=r"config\.json does not match its SHA-256 digest"
                                                 r".*delete the folder"):
            call()


@pytest.mark.parametrize("removed", [("config.json",), ("config.json", MANIFEST)])
def test_a_deleted_config_json_is_refused_not_mixed(folder, removed):
    before = _numbers(folder)
    for name in removed:
        (folder / name).unlink()
    with pytest.raises(IntegrityError, match=r"config\.json is missing, but .* holds"):
        _reproduce(folder, seed=1)  # another config: its runs would sit beside the old ones
    with pytest.raises(IntegrityError, match=r"config\.json is missing"):
        write_report(folder)
    assert _numbers(folder) == before and not (folder / "config.json").exists()


def test_another_config_is_refused_once_the_folder_holds_results(folder):
    with pytest.raises(ValueError, match=r"already holds results of a different config .*'seed'"):
        _reproduce(folder, seed=1)

# --------------------------------------------------------------------- partial files, on resume


def test_resume_removes_the_temporary_files_of_killed_writes(folder):
    stale = [folder / ".config.json.k1.tmp", folder / "runs" / "sgd-baseline" / ".final.json.k2.tmp"]
    for path in stale:
        path.write_bytes(b"half a fi")
    before = _numbers(folder)
    _reproduce(folder)
    assert not any(p.exists() for p in stale)
    assert _numbers(folder).keys() == before.keys() - {str(p.relative_to(folder)) for p in stale}


@pytest.fixture(scope="module")
def tiny():
    config = ExperimentConfig(**TINY)
    return config, load_data(config)


def test_a_killed_finish_resumes_from_the_checkpoint(tiny, tmp_path, interrupt_at):
    """Results written, manifest not yet (a kill in between): they are dropped, the run resumes."""
    config, data = tiny
    spec = PairSpec("sgd-baseline", "sgd", "baseline")
    interrupt_at(7, run_pair, config, spec, data, tmp_path, CPU, progress=False)
    (tmp_path / "final.json").write_text('{"ebar": 0.0}')  # unlisted: never read
    (tmp_path / ".metrics.csv.k3.tmp").write_text("step,")
    final = run_pair(config, spec, data, tmp_path, CPU, progress=False)
    listed = json.loads((tmp_path / MANIFEST).read_text())["files"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*listed, MANIFEST])
    assert json.loads(read_verified(tmp_path / "final.json", "", required=True)) == final

def test_a_killed_first_checkpoint_write_is_removed_on_resume(tiny, tmp_path, interrupt_at):
    """Killed inside the first checkpoint's write: a temporary file, and no manifest yet."""
    config, data = tiny
    spec = PairSpec("sgd-baseline", "sgd", "baseline")
    interrupt_at(3, run_pair, config, spec, data, tmp_path, CPU, progress=False)
    stale = tmp_path / ".checkpoint.pt.k4.tmp"
    stale.write_bytes(b"PK\x03")
    run_pair(config, spec, data, tmp_path, CPU, progress=False)
    assert not stale.exists() and (tmp_path / "final.json").exists()

# ------------------------------------------------------------------------ all of a run, or none


def test_a_deleted_weights_file_is_refused_not_left_out_of_figure_3(folder):
    (folder / "runs" / "sgd-baseline" / "weights.npz").unlink()
    with pytest.raises(IntegrityError, match=r"sgd-baseline: weights\.npz listed in manifest\.json "
                                             r"is missing .* delete the folder"):
        write_report(folder)


def test_a_figure_without_data_is_not_drawn_and_its_old_png_removed(tmp_path):
    """A hand-made folder (no manifest) whose run saved no weights: Figure 3 cannot be drawn; the
    report says so, and an older figure3_weights.png is removed rather than shown stale."""
    run = tmp_path / "runs" / "sgd-baseline"
    run.mkdir(parents=True)
    net = {"train_acc": 0.9, "train_loss": 0.2, "val_acc": 0.9, "val_loss": 0.2}
    (run / "final.json").write_text(json.dumps({
        "run_id": "sgd-baseline", "optimizer": "sgd", "experiment": "baseline", "lr": 1e-3,
        "remap": True, "ebar": 0.004, "agreement": 0.98, "nets": {"a": net, "b": net}}))
    stale = tmp_path / "figures" / "figure3_weights.png"
    stale.parent.mkdir()
    stale.write_bytes(b"an older figure")
    report = write_report(tmp_path).read_text()
    assert not stale.exists()
    assert "Not drawn: Figure 3: no SGD `baseline` or `unadjusted` run saved a weights.npz" in report


def test_the_report_of_a_claimed_folder_needs_every_run_manifest(folder):
    run = folder / "runs" / "sgd-baseline"
    (run / MANIFEST).unlink()
    with pytest.raises(IntegrityError, match=r"sgd-baseline/\w+\.\w+ has no manifest\.json beside"):
        write_report(folder)


def test_write_config_refuses_a_non_finite_value(tmp_path):
    with pytest.raises(ValueError, match="Out of range float values"):
        write_config(tmp_path, {"lr": float("inf")})
    assert not (tmp_path / "config.json").exists()

# -------------------------------------------------------------------------------------- studies


def _study(out: Path, **kwargs) -> dict:
    return run_study(StudyConfig.from_dict(STUDY), out, progress=False, **kwargs)


@pytest.fixture(scope="module")
def study_done(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("study") / "out"
    run_study(StudyConfig.from_dict(STUDY), out, progress=False)
    return out


@pytest.fixture
def study(study_done, tmp_path) -> Path:
    return Path(shutil.copytree(study_done, tmp_path / "out"))


def _cells(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "cells").iterdir())}


@pytest.mark.parametrize(("change", "match"), [
    ({"seed": -1}, "`seed` must be >= 0"),
    ({"batch_size": 7.5}, r"`batch_size` must be an integer, got 7\.5"),
    ({"steps": 2.5}, r"`steps` must be an integer, got 2\.5"),
    ({"lrs": {"sgd": [float("inf")]}}, r"`lrs\.sgd\[0\]` must be finite, got inf"),
])
def test_a_bad_study_value_is_refused_by_the_config(change, match):
    with pytest.raises(ValueError, match=match):
        StudyConfig.from_dict({**STUDY, **change})


def test_a_study_refused_by_max_minutes_claims_nothing(tmp_path):
    with pytest.raises(ValueError, match="--max-minutes 1e-06 is too small"):
        _study(tmp_path / "out", max_minutes=1e-6)
    assert not (tmp_path / "out").exists()


def test_a_study_lists_its_config_and_cells_in_manifests(study):
    assert set(json.loads((study / MANIFEST).read_text())["files"]) == {"config.json"}
    listed = json.loads((study / "cells" / MANIFEST).read_text())["files"]
    assert set(listed) == set(_cells(study)) - {MANIFEST} and len(listed) == 2


@pytest.mark.parametrize("key", ["ebar_twin", "lr"])
def test_an_edited_cell_is_refused_by_report_and_resume(study, key):
    path = next(p for p in (study / "cells").glob("*.json") if p.name != MANIFEST)
    row = json.loads(path.read_text())
    path.write_text(json.dumps({**row, key: row[key] * 10}, indent=2))
    for call in (lambda: report_study(StudyConfig.from_dict(STUDY), study), lambda: _study(study)):
        with pytest.raises(IntegrityError, match=rf"{path.name} does not match its SHA-256 digest"
                                                 r".*delete .* to train that cell again"):
            call()


def test_an_edited_study_config_is_refused(study):
    path = study / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "seed": 7}, indent=2))
    with pytest.raises(IntegrityError, match=r"config\.json does not match its SHA-256 digest"):
        _study(study)


def test_a_study_without_its_config_refuses_another_config(study):
    before = _cells(study)
    (study / "config.json").unlink()
    with pytest.raises(IntegrityError, match=r"config\.json is missing, but .* holds cells/"):
        run_study(StudyConfig.from_dict({**STUDY, "steps": 3}), study, progress=False)
    assert _cells(study) == before


def test_a_deleted_cell_is_refused_by_the_report_and_trained_again_on_resume(study):
    path = next(p for p in (study / "cells").glob("*.json") if p.name != MANIFEST)
    content = path.read_bytes()
    path.unlink()
    with pytest.raises(IntegrityError, match=rf"{path.name} listed in manifest\.json is missing"):
        report_study(StudyConfig.from_dict(STUDY), study)
    summary = _study(study)
    assert summary["cells"] == 2
    assert json.loads(path.read_bytes())["ebar_twin"] == json.loads(content)["ebar_twin"]


def test_a_study_resume_removes_leftovers_of_killed_writes(study):
    stale = [study / ".study.csv.k1.tmp", study / "cells" / "unlisted-cell.json"]
    for path in stale:
        path.write_text("{")
    _study(study)
    assert not any(p.exists() for p in stale)
