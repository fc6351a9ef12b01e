"""`stequiv reproduce` / `stequiv report`: argument handling and clear errors (no training here)."""

import json

import pytest
from click.testing import CliRunner

from stequiv import experiments
from stequiv.cli import main
from stequiv.experiments.results import write_config, write_with_manifest


def test_quick_and_another_preset_conflict(tmp_path):
    result = CliRunner().invoke(main, ["reproduce", "--quick", "--preset", "full", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--quick and --preset name different presets" in result.output


def test_unknown_config_key_is_named(tmp_path):
    result = CliRunner().invoke(main, ["reproduce", "--quick", "--out", str(tmp_path), "--set", "epoch=3"])
    assert result.exit_code != 0 and "unknown config key(s) ['epoch']" in result.output


def test_bad_value_is_named(tmp_path):
    result = CliRunner().invoke(main, ["reproduce", "--out", str(tmp_path), "--bits", "0"])
    assert result.exit_code != 0 and "`bits` must be >= 1" in result.output


def test_folder_with_a_different_config_is_refused(tmp_path):
    write_config(tmp_path, {"dataset": "mnist", "epochs": 99})  # and results of that config:
    write_with_manifest(tmp_path / "runs" / "sgd-baseline", {"final.json": "{}"})
    result = CliRunner().invoke(main, ["reproduce", "--quick", "--out", str(tmp_path), "--no-progress"])
    assert result.exit_code != 0 and "already holds results of a different config" in result.output


def test_config_file_and_overrides(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 2\nbits: 0\n")
    result = CliRunner().invoke(main, ["reproduce", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert "`bits` must be >= 1" in result.output
    cfg.write_text("- not a mapping\n")
    result = CliRunner().invoke(main, ["reproduce", "--config", str(cfg), "--out", str(tmp_path / "o")])
    assert "must hold a mapping" in result.output


def test_report_on_an_empty_folder_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1 and result.output.startswith("Error:")


def test_precedence_is_preset_then_file_then_command_line(tmp_path, monkeypatch):
    """defaults < --preset/--quick < --config file < options and --set."""
    seen = []
    monkeypatch.setattr(experiments, "reproduce", lambda config, *a, **k: seen.append(config) or {})
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("epochs: 2\nbits: 3\neval_every: 7\n")
    result = CliRunner().invoke(main, ["reproduce", "--quick", "--config", str(cfg), "--bits", "4",
                                       "--set", "eval_every=9", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.dataset, config.lr_sweep) == ("mnist-5k", (0.25, 4.0))  # from the preset
    assert (config.epochs, config.bits, config.eval_every) == (2, 4, 9)  # file, then command line


def _counting_plan(monkeypatch):
    """``experiments.plan`` without its timing (a few training steps): groups, nets, steps."""
    real = experiments.plan
    monkeypatch.setattr(experiments, "plan", lambda config, **k: real(config, measure=False))


def test_reproduce_without_a_preset_prints_its_plan_and_starts_nothing(tmp_path, monkeypatch):
    """No preset, file or `epochs`: the 15-epoch default is described, not silently started."""
    _counting_plan(monkeypatch)
    started = []
    monkeypatch.setattr(experiments, "reproduce", lambda *a, **k: started.append(a) or {})
    result = CliRunner().invoke(main, ["reproduce", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and not started and not (tmp_path / "o").exists()
    lines = result.output.splitlines()
    # mnist-5k: 4,000 training digits, batch 64 -> 62 steps per epoch
    assert lines[0] == ("15 epoch(s) of convnet on mnist-5k (4,000 training samples, batch 64): "
                        "930 steps per net, 4 group(s), 15 nets")
    assert lines[1] == ("  group 1 of 4 (6 nets): sgd-baseline, sgd-lr-tweak, sgd-unadjusted, "
                        "sgd-m-only, sgd-alpha-only")
    assert "not started" in result.output and "--yes" in result.output
    result = CliRunner().invoke(main, ["reproduce", "--out", str(tmp_path / "o"), "--yes"])
    assert result.exit_code == 0 and len(started) == 1  # --yes starts it


def test_plan_time_is_net_steps_times_the_measured_step(tmp_path):
    config = experiments.ExperimentConfig(max_train_samples=64, batch_size=32, epochs=2,
                                          optimizers=("sgd",), experiments=("baseline",),
                                          lr_sweep=(), device="cpu")
    plan = experiments.plan(config)
    assert (plan.steps, plan.nets, len(plan.groups)) == (4, 2, 1)
    assert plan.seconds_per_net_step > 0 and plan.seconds == 2 * 4 * plan.seconds_per_net_step
    assert "estimated training time: ~" in plan.text()


def test_summary_table_shows_each_row_and_the_points():
    summary = {"sgd": {"baseline": {"ebar": 3.3e-06, "agreement": 0.99998, "val_acc": [0.152, 0.151]},
                       "lr-tweak": {"ebar": 4.75e-06, "agreement": 0.99996, "val_acc": [0.152, 0.149]}}}
    checks = experiments.results.point_checks(summary)
    lines = experiments.results.summary_table(summary, checks).splitlines()
    assert lines[2].split() == ["sgd", "baseline", "0.000330%", "99.998%", "15.20%", "15.10%"]
    assert lines[3].split()[:3] == ["sgd", "lr-tweak", "0.000475%"]
    assert lines[4] == "Point A (baseline Ē / lr-tweak Ē ≤ 1.5): 0.69, holds"
    assert lines[5].startswith("Point B") and lines[5].endswith("not run")


def test_a_run_shows_group_k_of_n_and_ends_with_the_summary_table(tmp_path):
    """One tiny group end to end: the progress line names the group, the end is a table."""
    tiny = ["--set", "max_train_samples=64", "--set", "batch_size=32", "--set", "epochs=1",
            "--set", "optimizers=[sgd]", "--set", "experiments=[baseline, lr-tweak]",
            "--set", "lr_sweep=[]", "--set", "eval_every=1", "--device", "cpu"]
    result = CliRunner().invoke(main, ["reproduce", "--out", str(tmp_path), *tiny])
    assert result.exit_code == 0, result.output
    assert "[reproduce] group 1 of 1 (3 nets): sgd-baseline, sgd-lr-tweak" in result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("sgd ")]
    assert [r[:2] for r in rows] == [["sgd", "baseline"], ["sgd", "lr-tweak"]]
    assert rows[0][2] == experiments.results.ebar_percent(summary["sgd"]["baseline"]["ebar"])
    assert "Point A (baseline Ē / lr-tweak Ē ≤ 1.5):" in result.stdout
    assert "{" not in result.stdout  # a table, not JSON


def test_plan_option_describes_a_preset_and_trains_nothing(tmp_path, monkeypatch):
    _counting_plan(monkeypatch)
    monkeypatch.setattr(experiments, "reproduce", lambda *a, **k: pytest.fail("must not train"))
    result = CliRunner().invoke(main, ["reproduce", "--quick", "--plan", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    # quick: 5 epochs of 62 steps; SGD's 5 experiments, Adam's 2, and 2 lr-sweep groups of 2
    assert result.output.splitlines()[0].endswith("310 steps per net, 4 group(s), 15 nets")
    assert not (tmp_path / "o").exists()
