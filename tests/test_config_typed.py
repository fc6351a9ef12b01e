"""The typed experiment config: what valid input looks like, and that the resolved config saved as
config.json is what it was before typing (byte for byte). Bad values: tests/test_bad_inputs.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from stequiv.experiments import PRESETS, ConfigError, ExperimentConfig
from stequiv.experiments.config import parse_assignment, read_config_file

# ExperimentConfig().to_dict() on main before the typed config (commit 07321c8).
DEFAULT_JSON = (
    '{"dataset": "mnist-5k", "data_dir": null, "download": false, "model": "convnet", "bits": 2, '
    '"estimator": "htge", "sharpness": 5.5, "estimator_params": {}, "quantize_classifier": false, '
    '"quantize_first_conv": true, "optimizers": ["sgd", "adam"], "experiments": ["baseline", '
    '"lr-tweak", "unadjusted", "m-only", "alpha-only"], "lr_sgd": 0.001, "momentum": 0.9, '
    '"lr_adam": 0.0001, "betas": [0.9, 0.95], "lr_tweak": 1.01, "lr_sweep": [0.25, 4.0], '
    '"warmup_fraction": 0.02, "epochs": 15, "batch_size": 64, "seed": 0, "eval_every": 50, '
    '"switch_fraction": 0.0, "sync_batchnorm": false, "device": "auto", "checkpoint_every": 200, '
    '"max_train_samples": null, "image_size": 224, "workers": 0}'
)


def test_the_resolved_config_is_unchanged_byte_for_byte():
    assert json.dumps(ExperimentConfig().to_dict()) == DEFAULT_JSON


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_is_valid(name):
    extra = {"data_dir": "/data"} if PRESETS[name]["dataset"] == "imagefolder" else {}
    config = ExperimentConfig.from_dict({**PRESETS[name], **extra})
    assert json.loads(json.dumps(config.to_dict()))["dataset"] == PRESETS[name]["dataset"]


def test_yaml_values_arrive_typed(tmp_path: Path):
    """YAML booleans, exponent floats (YAML 1.2: `1e-3` is a number) and lists are accepted."""
    path = tmp_path / "cfg.yaml"
    path.write_text("download: false\nlr_sgd: 1e-3\nlr_adam: 5E-5\nbetas: [0.8, 0.9]\n"
                    "optimizers: [sgd]\nestimator_params: {t: 2}\nmax_train_samples: null\n")
    config = ExperimentConfig.load(path)
    assert (config.download, config.lr_sgd, config.lr_adam) == (False, 1e-3, 5e-5)
    assert (config.betas, config.optimizers, config.estimator_params) == ((0.8, 0.9), ("sgd",),
                                                                          {"t": 2})
    assert config.estimator_spec() == {"name": "htge", "t": 2}


def test_json_and_set_values_arrive_typed(tmp_path: Path):
    path = tmp_path / "cfg.json"
    path.write_text('{"epochs": 3, "sync_batchnorm": true, "lr_sweep": [0.5]}')
    assert read_config_file(path) == {"epochs": 3, "sync_batchnorm": True, "lr_sweep": [0.5]}
    assert parse_assignment("lr-sgd=2e-3") == ("lr_sgd", 2e-3)
    assert parse_assignment("experiments=[baseline, m-only]") == (
        "experiments", ["baseline", "m-only"])
    assert parse_assignment("data_dir=a=b") == ("data_dir", "a=b")


def test_an_empty_yaml_file_is_no_values(tmp_path: Path):
    (tmp_path / "cfg.yaml").write_text("# nothing set\n")
    assert read_config_file(tmp_path / "cfg.yaml") == {}


def test_integers_are_accepted_for_floats_and_paths_for_folders(tmp_path: Path):
    config = ExperimentConfig(lr_tweak=2, dataset="mnist", data_dir=tmp_path)
    assert config.lr_tweak == 2.0 and config.data_dir == str(tmp_path)


def test_replace_validates_again():
    config = ExperimentConfig(model="resnet20")
    assert dataclasses.replace(config, sync_batchnorm=True).sync_batchnorm is True
    with pytest.raises(ConfigError, match="`epochs` must be > 0"):
        dataclasses.replace(config, epochs=0)


def test_every_problem_is_reported_with_its_key():
    with pytest.raises(ConfigError) as info:
        ExperimentConfig(epochs=0.5, momentum=2.0, device="tpu")
    assert {key for key, _ in info.value.problems} == {"epochs", "momentum", "device"}
    assert str(info.value).startswith("3 config errors:\n  ")


def test_the_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        ExperimentConfig().epochs = 3  # type: ignore[misc]
