"""`stequiv reproduce` / `stequiv report`: argument handling and clear errors (no training here)."""

import json

from click.testing import CliRunner

from stequiv import experiments
from stequiv.cli import main


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
    (tmp_path / "config.json").write_text(json.dumps({"dataset": "mnist", "epochs": 99}))
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
