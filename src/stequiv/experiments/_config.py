"""The experiment configuration of Section 6.1: every choice a validated value with the paper's default.

Precedence: defaults < preset (``--quick``) < YAML/JSON file < command line. The resolved config is
saved with every run (``config.json``) and a results folder refuses a different config.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core import get_estimator, list_estimators
from ..core._validate import reject_unknown_keys
from ..data import TEXT_DATASETS, list_datasets

__all__ = ["EXPERIMENTS", "PRESETS", "PRESET_BITS", "ExperimentConfig"]

EXPERIMENTS = ("baseline", "lr-tweak", "unadjusted", "m-only", "alpha-only")
_OPTIMIZERS = ("sgd", "adam")
IMAGE_FOLDER = "imagefolder"


@dataclass(frozen=True)
class ExperimentConfig:
    """One reproduction. Learning rates are the peak of the warm-up + cosine schedule.

    ``sharpness`` is the paper's "t set to 5.5 times the maximum value from the weight
    initialization distribution", read as a steepness of 5.5/max in weight units, i.e.
    ``t = sharpness · Δ/max = 2·sharpness/(2^b − 1)`` in bin units (3.67 for 2 bits), the same in
    every layer since Δ ∝ max. (The literal reading, t = 5.5·max, would make HTGE flatter for
    layers with smaller weights, which contradicts "chosen so that Q̂ differs significantly from
    the STE"; the authors' code also gives sharpness in units of 1/max.)

    ``dataset``: a name of :func:`stequiv.data.list_datasets`, or ``"imagefolder"`` with
    ``data_dir`` holding ``train/`` and ``val/`` folders of class sub-folders (ImageNet layout),
    read at ``image_size`` by ``workers`` DataLoader processes per rank (0: in the training
    process). ``quantize_first_conv`` left unset (``None``) resolves to true for the convnet and
    false for the ResNets, whose first conv and classifier stay float by default. ``max_train_samples``
    keeps that many training images, evenly spaced over the split (all classes keep their share);
    ``max_val_samples`` the same for validation.

    ``dataset`` ``"fortunes"`` (Debian's ``fortunes``, or the text files of ``data_dir``) is
    next-byte prediction in windows of the model's context; its models are the byte-level
    transformers (``transformer-tiny``, ``transformer-small``). ``weight_decay`` > 0 makes the
    adaptive optimizer AdamW with that decoupled decay on every parameter (0: Adam).
    """

    dataset: str = "mnist-5k"
    data_dir: str | None = None
    download: bool = False
    model: str = "convnet"
    bits: int = 2
    estimator: str = "htge"
    sharpness: float = 5.5
    estimator_params: Mapping[str, float] = dataclasses.field(default_factory=dict)
    quantize_classifier: bool = False
    quantize_first_conv: bool | None = None
    optimizers: tuple[str, ...] = _OPTIMIZERS
    experiments: tuple[str, ...] = EXPERIMENTS
    lr_sgd: float = 1e-3
    momentum: float = 0.9
    lr_adam: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    lr_tweak: float = 1.01
    lr_sweep: tuple[float, ...] = (0.25, 4.0)
    warmup_fraction: float = 0.02
    epochs: int = 15
    batch_size: int = 64
    seed: int = 0
    eval_every: int = 50
    switch_fraction: float = 0.0
    sync_batchnorm: bool = False
    device: str = "auto"
    checkpoint_every: int = 200
    max_train_samples: int | None = None
    max_val_samples: int | None = None
    image_size: int = 224
    workers: int = 0

    def __post_init__(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ValueError(msg)

        need(self.bits >= 1, f"`bits` must be >= 1, got {self.bits}")
        need(self.estimator in list_estimators(),
             f"`estimator` {self.estimator!r} is not registered; choose from {list_estimators()}")
        need(self.sharpness > 0, f"`sharpness` must be > 0, got {self.sharpness}")
        need(set(self.optimizers) <= set(_OPTIMIZERS) and self.optimizers,
             f"`optimizers` must be a non-empty subset of {_OPTIMIZERS}, got {self.optimizers}")
        need(set(self.experiments) <= set(EXPERIMENTS) and "baseline" in self.experiments,
             f"`experiments` must include 'baseline' and be a subset of {EXPERIMENTS}")
        for name in ("lr_sgd", "lr_adam", "lr_tweak", "epochs", "batch_size", "eval_every",
                     "checkpoint_every"):
            need(getattr(self, name) > 0, f"`{name}` must be > 0, got {getattr(self, name)}")
        need(0 <= self.warmup_fraction < 1, "`warmup_fraction` must be in [0, 1)")
        need(0 <= self.switch_fraction < 1, "`switch_fraction` must be in [0, 1)")
        need(0 <= self.momentum < 1, "`momentum` must be in [0, 1)")
        need(all(f > 0 for f in self.lr_sweep), "`lr_sweep` factors must be > 0")
        for name in ("max_train_samples", "max_val_samples"):
            need(getattr(self, name) is None or getattr(self, name) > 0, f"`{name}` must be > 0")
        datasets = [*list_datasets(), *TEXT_DATASETS, IMAGE_FOLDER]
        need(self.dataset in datasets, f"`dataset` {self.dataset!r} is unknown; choose from {datasets}")
        text_model = self.model.startswith("transformer")
        need(text_model == (self.dataset in TEXT_DATASETS),
             f"`model` {self.model!r} does not fit `dataset` {self.dataset!r}: the transformers "
             f"read text ({', '.join(TEXT_DATASETS)}), the other models images")
        need(self.weight_decay >= 0, f"`weight_decay` must be >= 0, got {self.weight_decay}")
        need(self.dataset != IMAGE_FOLDER or self.data_dir is not None,
             "`dataset` 'imagefolder' needs `data_dir` (--data-dir): a folder holding train/ and "
             "val/, each with one sub-folder of images per class")
        need(self.image_size > 0, f"`image_size` must be > 0, got {self.image_size}")
        need(self.workers >= 0, f"`workers` must be >= 0, got {self.workers}")
        if self.quantize_first_conv is None:  # ResNets keep their stem float (Section 6.1)
            object.__setattr__(self, "quantize_first_conv", not self.model.startswith("resnet"))
        self.estimator_spec()  # validates the estimator parameters

    def estimator_spec(self) -> dict[str, Any]:
        """The Q̂ of every quantized layer, in bin units (see the class docstring for ``t``)."""
        params = dict(self.estimator_params)
        if self.estimator in ("htge",) and "t" not in params:
            params["t"] = 2.0 * self.sharpness / (2**self.bits - 1)
        get_estimator(self.estimator, **params)
        return {"name": self.estimator, **params}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = dataclasses.asdict(self)
        out["estimator_params"] = dict(self.estimator_params)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        """Build from a mapping; unknown keys are an error naming the valid ones."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        reject_unknown_keys("config", data, set(fields))
        clean = {k: tuple(v) if isinstance(v, list) and "tuple" in str(fields[k].type) else v
                 for k, v in data.items()}
        return cls(**clean)

    @classmethod
    def load(cls, path: str | Path, base: Mapping[str, Any] | None = None,
             **overrides: Any) -> ExperimentConfig:
        """Read a YAML or JSON file over ``base`` (a preset's values), then apply ``overrides``
        (command-line values): defaults < base < file < overrides."""
        text = Path(path).read_text()
        if str(path).endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file must hold a mapping of keys to values")
        return cls.from_dict({**(base or {}), **data, **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    # The whole table on the 5,000 embedded MNIST digits in about 2 minutes on 2 idle CPU cores.
    "quick": {"dataset": "mnist-5k", "epochs": 5, "eval_every": 20, "lr_sweep": (0.25, 4.0)},
    # Table 4 (SGD + Adam) on full-size Fashion-MNIST (Debian's dataset-fashion-mnist): 3,748
    # steps per pair; ablations and the lr sweep are left to --set to stay within ~20 minutes.
    "full": {"dataset": "fashion-mnist", "epochs": 4, "eval_every": 100,
             "experiments": ("baseline", "lr-tweak", "unadjusted"), "lr_sweep": ()},
    # The ResNet experiment of Section 6 at CPU scale: ResNet-20, switch after 10 % (issue 5).
    # Table 4's three rows only (ablations via --set) to stay near an hour on 2 CPU cores.
    "resnet": {"dataset": "fashion-mnist", "model": "resnet20", "epochs": 3,
               "switch_fraction": 0.1, "eval_every": 100, "lr_sweep": (),
               "experiments": ("baseline", "lr-tweak", "unadjusted"),
               "quantize_first_conv": False},
    # The paper's ImageNet experiment (Table 4, right): ResNet-50, 100 epochs, Q̂-net alone for the
    # first 10 %, global batch 256, SGD 1e-3 / Adam 1e-4. Needs --data-dir and GPUs (torchrun).
    "resnet50": {"dataset": IMAGE_FOLDER, "model": "resnet50", "epochs": 100, "batch_size": 256,
                 "switch_fraction": 0.1, "optimizers": _OPTIMIZERS, "lr_sgd": 1e-3,
                 "lr_adam": 1e-4, "experiments": ("baseline", "lr-tweak", "unadjusted"),
                 "lr_sweep": (), "quantize_first_conv": False, "sync_batchnorm": True,
                 "image_size": 224, "workers": 8, "eval_every": 500, "checkpoint_every": 1000},
    # Issue 11: a byte-level decoder-only transformer on Debian's fortunes (English text), every
    # attention/MLP projection quantized (the tied embedding/head float), SGD + momentum and AdamW;
    # run at 4 and 2 bits (PRESET_BITS). lm-quick: the whole protocol at toy size (~2 min idle).
    "lm-quick": {"dataset": "fortunes", "model": "transformer-tiny", "epochs": 1,
                 "batch_size": 16, "max_train_samples": 1024, "max_val_samples": 128,
                 "lr_sgd": 0.3, "lr_adam": 3e-3, "weight_decay": 0.1, "warmup_fraction": 0.05,
                 "eval_every": 8, "experiments": ("baseline", "lr-tweak", "unadjusted"),
                 "lr_sweep": ()},
    "lm": {"dataset": "fortunes", "model": "transformer-tiny", "epochs": 1, "batch_size": 32,
           "max_train_samples": 32_000, "max_val_samples": 1024, "lr_sgd": 0.3, "lr_adam": 3e-3,
           "weight_decay": 0.1, "warmup_fraction": 0.05, "eval_every": 50,
           "experiments": ("baseline", "lr-tweak", "unadjusted"), "lr_sweep": ()},
}

#: Presets run once per bit width (into ``<out>/<b>-bit``) unless ``bits`` is given explicitly.
PRESET_BITS: dict[str, tuple[int, ...]] = {"lm-quick": (4, 2), "lm": (4, 2)}
