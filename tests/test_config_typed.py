"""The typed experiment config: what valid input looks like, and that the resolved config saved as
config.json is what it was before typing (byte for byte). Bad values: tests/test_bad_inputs.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from stequiv.experiments import PRESETS, ConfigError, ExperimentConfig
from stequiv.experiments.config import default_of, parse_assignment, read_config_file, resolve
from stequiv.experiments.study import STUDY_PRESETS, StudyConfig

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


# ------------------------------------------------------------------ one resolver, one default each


def test_resolve_layers_defaults_preset_file_options_set(tmp_path: Path):
    path = tmp_path / "cfg.yaml"
    path.write_text("epochs: 2\nbits: 3\neval_every: 7\n")
    resolved = resolve(ExperimentConfig.from_dict, PRESETS, "quick", path, {"bits": 4, "seed": None},
                       ["eval_every=9"])
    config = resolved.config
    assert (config.dataset, config.lr_sweep) == ("mnist-5k", (0.25, 4.0))  # the preset
    assert (config.epochs, config.bits, config.eval_every, config.seed) == (2, 4, 9, 0)
    assert resolved.origins["epochs"] == str(path) and resolved.origins["bits"] == "--bits"
    assert resolved.given("bits") and not resolved.given("dataset") and not resolved.given("seed")


def test_resolve_names_where_a_bad_value_came_from(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"`epochs` must be > 0, got 0 \(from preset 'bad'\)"):
        resolve(ExperimentConfig.from_dict, {"bad": {"epochs": 0}}, "bad")
    with pytest.raises(ConfigError, match=r"unknown preset 'quik' \(did you mean 'quick'\?\)"):
        resolve(ExperimentConfig.from_dict, PRESETS, "quik")
    with pytest.raises(ConfigError, match=r"`bits` must be <= 16, got 65 \(from --set bits=65\)"):
        resolve(ExperimentConfig.from_dict, PRESETS, None, sets=["bits=65"])


def test_the_study_resolves_through_the_same_resolver():
    resolved = resolve(StudyConfig.from_dict, STUDY_PRESETS, "quick", sets=["steps=7"])
    assert resolved.config.steps == 7 and resolved.config.datasets == ("mnist-5k",)
    with pytest.raises(ConfigError, match=r"unknown study config key\(s\) \['step'\]"):
        resolve(StudyConfig.from_dict, STUDY_PRESETS, "quick", sets=["step=7"])


@pytest.mark.parametrize("key", ["lr_tweak", "momentum", "betas", "warmup_fraction", "seed"])
def test_the_study_shares_each_training_default_with_reproduce(key):
    """One default per value: a study cell trains as its one-pair reproduction would."""
    assert getattr(StudyConfig(), key) == getattr(ExperimentConfig(), key) == default_of(key)
    cell = StudyConfig.from_dict(STUDY_PRESETS["quick"]).cells()[0]
    assert getattr(cell.experiment_config(StudyConfig.from_dict(STUDY_PRESETS["quick"])), key) == \
        default_of(key)


def test_default_of_an_unknown_key_is_named():
    with pytest.raises(KeyError, match=r"'lr_twaek' is not a config key \(did you mean 'lr_tweak'\?\)"):
        default_of("lr_twaek")


def test_load_applies_a_preset_under_the_file(tmp_path: Path):
    path = tmp_path / "cfg.yaml"
    path.write_text("epochs: 2\n")
    config = ExperimentConfig.load(path, "quick", bits=3)
    assert (config.epochs, config.eval_every, config.bits) == (2, 20, 3)


@pytest.mark.parametrize(("text", "value"), [
    ("010", 10), ("1_0", "1_0"), ("0x10", 16), ("0o10", 8), ("on", "on"), ("yes", "yes"),
    ("TRUE", True), ("~", None), (".inf", float("inf")), ("1e-3", 1e-3), ("3.", 3.0),
    ("2024-01-01", "2024-01-01"), ("1:30", "1:30")])
def test_yaml_reads_numbers_and_booleans_as_yaml_1_2(text, value):
    """YAML 1.1 read `010` as 8, `1_0` as 10, `on` as true and a date as a date."""
    assert parse_assignment(f"epochs={text}") == ("epochs", value)


def test_a_yaml_1_1_octal_is_ten_in_a_file(tmp_path: Path):
    path = tmp_path / "cfg.yaml"
    path.write_text("epochs: 010\n")
    assert ExperimentConfig.load(path).epochs == 10
    path.write_text("epochs: 1_0\n")
    with pytest.raises(ConfigError, match="epochs"):
        ExperimentConfig.load(path)


def test_lr_tweak_of_one_is_refused_in_reproduce_and_study():
    """It was accepted, and the report then said Point A "not run"."""
    with pytest.raises(ConfigError, match=r"`lr_tweak` 1\.0 makes the lr-tweak partner the Q̂-net"):
        ExperimentConfig(lr_tweak=1.0)
    with pytest.raises(ValueError, match=r"`lr_tweak` 1\.0 makes the lr-tweak partner the Q̂-net"):
        StudyConfig.from_dict({"lr_tweak": 1.0})
