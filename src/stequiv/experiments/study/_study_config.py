"""The configuration and grid of ``stequiv study``: alignment against learning rate.

A *cell* of the grid is (model, dataset, estimator, bits, optimizer, η). Each cell trains three
nets: the Q̂-net, its STE twin (Tables 1/2) and its lr-tweak partner (η × ``lr_tweak``, the
noise floor), and gives one row of ``study.csv``: the pairs (Q̂, twin) and (Q̂, tweak) share the
Q̂-net's training.

Every mistake is found before any training, with the offending entries named: an estimator without
an M at a bit width, a learning rate ≤ 0, an empty grid, unknown keys.
Precedence: defaults < preset < YAML/JSON file < ``--set``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace

from ...core import (
    NoRemapError,
    custom_estimator,
    get_estimator,
    list_estimators,
    plan_for,
    ste_twin,
)
from ...core import UniformQuantizer as _Grid
from ...data import list_datasets
from ..config import OPTIMIZERS as _OPTIMIZERS
from ..config import ExperimentConfig, default_of

__all__ = ["STUDY_PRESETS", "Cell", "StudyConfig", "study_cosine"]

# Image classifiers the batched trainer runs (BatchNorm statistics included).
_STUDY_MODELS = ("convnet", "resnet20")
# Keys of an `estimators` entry that are not the estimator's own parameters.
_ENTRY_KEYS = ("name", "sharpness", "bits", "models")


def _cosine(x: Any) -> Any:
    """Q̂′(v) = 1 − ½cos(2πv): steepest (1.5) at decision boundaries, flattest (0.5) at levels."""
    xp = array_namespace(x)
    return 1.0 - 0.5 * xp.cos(2.0 * np.pi * x)


# The study's own custom estimator (α = √(1 − ¼) = 0.866), registered once per process.
study_cosine = ("study_cosine" in list_estimators() and get_estimator("study_cosine")) or \
    custom_estimator("study_cosine", _cosine, reference="stequiv study: a smooth custom estimator")


@dataclass(frozen=True)
class Cell:
    """One grid point; ``estimator`` is ``{"name": ..., params}`` plus optional ``sharpness``."""

    model: str
    dataset: str
    estimator: Mapping[str, Any]
    bits: int
    optimizer: str
    lr: float

    @property
    def label(self) -> str:
        """The estimator as a short label, e.g. ``htge(sharpness=5.5)``."""
        params = {k: v for k, v in self.estimator.items() if k not in ("name", "bits", "models")}
        inner = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        return f"{self.estimator['name']}({inner})"

    @property
    def cell_id(self) -> str:
        """A file-name-safe, unique id."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.label)
        return f"{self.model}-{self.dataset}-{safe}-b{self.bits}-{self.optimizer}-lr{self.lr:.6g}"

    def experiment_config(self, study: StudyConfig) -> ExperimentConfig:
        """The one-pair config of this cell (what ``reproduce`` would train)."""
        params = {k: v for k, v in self.estimator.items() if k not in _ENTRY_KEYS}
        extra = {"sharpness": self.estimator["sharpness"]} if "sharpness" in self.estimator else {}
        return ExperimentConfig.from_dict({
            "dataset": self.dataset, "model": self.model, "bits": self.bits,
            "estimator": self.estimator["name"], "estimator_params": params, **extra,
            "lr_sgd": self.lr, "lr_adam": self.lr, "momentum": study.momentum,
            "betas": tuple(study.betas), "lr_tweak": study.lr_tweak,
            "warmup_fraction": study.warmup_fraction, "batch_size": study.batch_size,
            "seed": study.seed, "epochs": 1, "optimizers": (self.optimizer,)})


@dataclass(frozen=True)
class StudyConfig:
    """A study grid and its training budget (``steps`` per net, batches of ``batch_size``).

    An entry of ``estimators`` may restrict itself to some ``bits`` and some ``models`` (e.g.
    ``{"name": "htge", "sharpness": 5.5, "models": ["resnet20"]}``); otherwise it runs on all.
    The grid's order is (model, estimator, bits, optimizer, dataset, η): a study stopped early
    has whole η series of the first entries on every dataset.

    ``threads``: torch's intra-op threads while the study trains (1 by default: on this 2-core
    machine shared with other work, one thread per process ran the batched step 2.4× faster than
    two, 0.22 s against 0.53 s per net-step at batch 32, measured with ``calibrate``).
    """

    datasets: tuple[str, ...] = ("mnist-5k", "fashion-mnist")
    models: tuple[str, ...] = ("convnet",)
    estimators: tuple[Mapping[str, Any], ...] = (
        {"name": "htge", "sharpness": 5.5}, {"name": "htge", "sharpness": 11.0},
        {"name": "dsq", "alpha": 0.2}, {"name": "qn", "bits": [2, 4, 8]},
        {"name": "mad", "bits": [2, 4, 8]}, {"name": "study_cosine"},
        {"name": "ede", "bits": [1]})
    bits: tuple[int, ...] = (1, 2, 4, 8)
    optimizers: tuple[str, ...] = _OPTIMIZERS
    lrs: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=lambda: {
        "sgd": tuple(float(f"{x:.3g}") for x in np.geomspace(1e-3, 1.0, 8)),
        "adam": tuple(float(f"{x:.3g}") for x in np.geomspace(1e-5, 1e-1, 8))})
    # The training hyper-parameters a cell shares with `stequiv reproduce`: their defaults are
    # ExperimentConfig's (one place each), so a cell trains as its one-pair reproduction would.
    lr_tweak: float = default_of("lr_tweak")
    momentum: float = default_of("momentum")
    betas: tuple[float, float] = default_of("betas")
    warmup_fraction: float = default_of("warmup_fraction")
    steps: int = 400
    batch_size: int = 32
    eval_samples: int = 1000
    nets_per_batch: int = 24
    threads: int = 1
    seed: int = default_of("seed")
    data_dir: str | None = None

    def __post_init__(self) -> None:
        for key in ("datasets", "models", "estimators", "bits", "optimizers", "betas"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        object.__setattr__(self, "lrs", {k: tuple(v) for k, v in dict(self.lrs).items()})
        problems = self._problems()
        if problems:
            head = "" if len(problems) == 1 else f"{len(problems)} study config errors:\n  "
            raise ValueError(head + "\n  ".join(problems))

    def _problems(self) -> list[str]:
        out = [f"`datasets`: unknown dataset {d!r}; choose from {list_datasets()}"
               for d in self.datasets if d not in list_datasets()]
        out += [f"`models`: unknown model {m!r}; choose from {_STUDY_MODELS}"
                for m in self.models if m not in _STUDY_MODELS]
        out += [f"`optimizers`: unknown optimizer {o!r}; choose from {list(_OPTIMIZERS)}"
                for o in self.optimizers if o not in _OPTIMIZERS]
        for opt in self.optimizers:
            bad = [x for x in self.lrs.get(opt, ()) if not (isinstance(x, int | float)
                                                             and not isinstance(x, bool)
                                                             and 0 < x < math.inf)]
            if bad:
                out.append(f"`lrs.{opt}`: learning rates must be finite numbers > 0, got {bad}; "
                           "remove them")
        out += [f"`{k}` must be an integer ≥ 1, got {getattr(self, k)!r}" for k in
                ("steps", "batch_size", "eval_samples", "nets_per_batch", "threads")
                if not (_is_int(getattr(self, k)) and getattr(self, k) >= 1)]
        if not (isinstance(self.lr_tweak, int | float) and 0 < self.lr_tweak < math.inf):
            out.append(f"`lr_tweak` must be a finite number > 0, got {self.lr_tweak!r}")
        if self.lr_tweak == 1:
            out.append("`lr_tweak` 1.0 makes the lr-tweak partner the Q̂-net itself (its Ē would "
                       "be 0); give a factor near 1 such as the default 1.01")
        if not (0 <= self.momentum < 1 and all(0 <= b < 1 for b in self.betas) and len(self.betas) == 2):
            out.append(f"`momentum` and `betas` must lie in [0, 1), got {self.momentum}, {list(self.betas)}")
        out += self._estimator_problems()
        if not out and not self.cells():
            out.append("the grid is empty: `datasets`, `estimators`, `bits`, `optimizers` and "
                       "`lrs` (for each optimizer) must each hold at least one value")
        return out or self._cell_problems()

    def _cell_problems(self) -> list[str]:
        """What each cell's one-pair config refuses (``seed``, ``batch_size``, ...: the values a
        cell shares with ``reproduce``), once each: found here, not when the cell trains."""
        out: dict[str, None] = {}
        for cell in self.cells():
            try:
                cell.experiment_config(self)
            except ValueError as err:
                out.setdefault(str(err))
        return list(out)

    def _estimator_problems(self) -> list[str]:
        out = []
        for spec in self.estimators:
            try:
                name = spec["name"]
                get_estimator(name, **{k: v for k, v in spec.items() if k not in _ENTRY_KEYS})
            except (KeyError, TypeError, ValueError) as err:
                out.append(f"`estimators`: entry {dict(spec)} is invalid: {err}")
                continue
            stray = [m for m in spec.get("models", ()) if m not in self.models]
            if stray:
                out.append(f"`estimators`: entry {dict(spec)} names models {stray} that are not in "
                           f"`models` {list(self.models)}; add them there or remove them here")
            reasons: dict[str, list[int]] = {}
            for bits in spec.get("bits", self.bits):
                reason = _no_m_reason(spec, bits)
                if reason:
                    reasons.setdefault(reason, []).append(bits)
            out += [f"`estimators`: {name} has no M at bits {bits} ({reason}); give the entry the "
                    f"bit widths where it has one, e.g. {{name: {name}, bits: [...]}}, or remove it"
                    for reason, bits in reasons.items()]
        return out

    def cells(self) -> list[Cell]:
        """The grid, in a fixed order (model, estimator, bits, optimizer, dataset, η)."""
        return [Cell(m, d, dict(spec), b, opt, float(lr))
                for m in self.models for spec in self.estimators
                if m in spec.get("models", self.models)
                for b in spec.get("bits", self.bits) for opt in self.optimizers
                for d in self.datasets for lr in self.lrs.get(opt, ())]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (round-trips through :meth:`from_dict`)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyConfig:
        """Build from a mapping; unknown keys are an error naming the valid ones."""
        valid = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise ValueError(f"unknown study config key(s) {unknown}; valid keys: {sorted(valid)}")
        return cls(**data)


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _no_m_reason(spec: Mapping[str, Any], bits: int) -> str:
    """Why ``spec`` has no map M on a ``bits``-bit grid ("" if it has one)."""
    est = get_estimator(spec["name"], **{k: v for k, v in spec.items() if k not in _ENTRY_KEYS})
    if est.kind == "binary" and bits != 1:
        return "a binary estimator acts on the 1-bit grid only"
    if not isinstance(bits, int) or not 1 <= bits <= 16:
        return f"bits must be an integer in 1..16, got {bits!r}"
    grid = _Grid.symmetric(bits, 1.0)
    try:
        plan_for(est, grid)
        ste_twin(est, grid, "sgd")
    except NoRemapError as err:
        return str(err).split(". ")[0]
    return ""


STUDY_PRESETS: dict[str, dict[str, Any]] = {
    # ≥ 60 rows in ≤ 10 minutes on 2 cores: 4 (estimator, bits) × 2 optimizers × 8 η on MNIST-5k.
    "quick": {"datasets": ("mnist-5k",), "steps": 40, "batch_size": 16, "eval_samples": 500,
              "estimators": ({"name": "htge", "sharpness": 5.5, "bits": [2, 8]},
                             {"name": "ede", "bits": [1]}, {"name": "study_cosine", "bits": [4]})},
    # The ConvNet on the whole grid of the class defaults: 2 datasets × 23 (estimator, bits) × 2 × 8
    # = 736 cells; ResNet-20 (BatchNorm, ~10× the ConvNet's cost per step) with HTGE at 2 and 8
    # bits on both datasets: 64 cells more, 800 in all.
    "full": {"models": ("convnet", "resnet20"),
             "estimators": (*({**e, "models": ["convnet"]} for e in StudyConfig.estimators),
                            {"name": "htge", "sharpness": 5.5, "bits": [2, 8], "models": ["resnet20"]})},
}
