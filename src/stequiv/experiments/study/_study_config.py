"""The configuration and grid of ``stequiv study``: alignment against learning rate.

A *cell* of the grid is (model, dataset, estimator, bits, optimizer, η). Each cell trains three
nets: the Q̂-net, its STE twin (``to_ste``'s rule for the optimizer) and its lr-tweak partner (η × ``lr_tweak``, the
noise floor), and gives one row of ``study.csv``: the pairs (Q̂, twin) and (Q̂, tweak) share the
Q̂-net's training.

Every mistake is found before any training, with the offending entries named: an estimator without
an M at a bit width, a learning rate ≤ 0, an empty grid, unknown keys, a value of the wrong type
(``steps: 1.5``, ``datasets: mnist-5k`` for ``[mnist-5k]``).
Precedence: defaults < preset < YAML/JSON file < ``--set``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass as plain_dataclass
from typing import Annotated, Any, Literal

import numpy as np
from array_api_compat import array_namespace
from pydantic import Field
from pydantic.dataclasses import dataclass

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
from ..config import (
    STRICT,
    ConfigError,
    ExperimentConfig,
    Fraction,
    ListOf,
    PositiveFloat,
    PositiveInt,
    checked,
    close_match,
    default_of,
)
from ._optimizers import STUDY_OPTIMIZERS, study_rule

__all__ = ["STUDY_PRESETS", "Cell", "StudyConfig", "study_cosine"]

# Image classifiers the batched trainer runs (BatchNorm statistics included).
_STUDY_MODELS = ("convnet", "resnet20")
# Keys of an `estimators` entry that are not the estimator's own parameters.
_ENTRY_KEYS = ("name", "sharpness", "bits", "models")
MAX_STEPS = 10_000_000
"""25,000 times the full preset's 400 steps per net: more is a typo, not a plan."""


def _cosine(x: Any) -> Any:
    """Q̂′(v) = 1 − ½cos(2πv): steepest (1.5) at decision boundaries, flattest (0.5) at levels."""
    xp = array_namespace(x)
    return 1.0 - 0.5 * xp.cos(2.0 * np.pi * x)


# The study's own custom estimator (α = √(1 − ¼) = 0.866), registered once per process.
study_cosine = ("study_cosine" in list_estimators() and get_estimator("study_cosine")) or \
    custom_estimator("study_cosine", _cosine, reference="stequiv study: a smooth custom estimator")


@plain_dataclass(frozen=True)
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
        """The one-pair config of this cell (what ``reproduce`` would train). Its ``optimizers``
        names the twin's kind ("sgd" or "adam", :func:`~._optimizers.study_rule`); the cell
        builds its own optimizer (:func:`~._study.build_cell`), which may be another of the kind."""
        params = {k: v for k, v in self.estimator.items() if k not in _ENTRY_KEYS}
        extra = {"sharpness": self.estimator["sharpness"]} if "sharpness" in self.estimator else {}
        return ExperimentConfig.from_dict({
            "dataset": self.dataset, "model": self.model, "bits": self.bits,
            "estimator": self.estimator["name"], "estimator_params": params, **extra,
            "lr_sgd": self.lr, "lr_adam": self.lr, "momentum": study.momentum,
            "betas": tuple(study.betas), "lr_tweak": study.lr_tweak,
            "warmup_fraction": study.warmup_fraction, "batch_size": study.batch_size,
            "seed": study.seed, "epochs": 1,
            "optimizers": (study_rule(self.optimizer, study.hyper).kind,)})


@checked
@dataclass(frozen=True, config=STRICT)
class StudyConfig:
    """A study grid and its training budget (``steps`` per net, batches of ``batch_size``).

    An entry of ``estimators`` may restrict itself to some ``bits`` and some ``models`` (e.g.
    ``{"name": "htge", "sharpness": 5.5, "models": ["resnet20"]}``); otherwise it runs on all.
    The grid's order is (model, estimator, bits, optimizer, dataset, η): a study stopped early
    has whole η series of the first entries on every dataset.

    ``optimizers``: names of :data:`~._optimizers.STUDY_OPTIMIZERS` (SGD + momentum, Adam,
    Nesterov, AdamW, RMSprop, Adagrad, Lion, and SGD/Adam clipped to global norm
    ``clip_grad_norm`` with the twin scaled by the Q̂-net's coefficient or by its own); each
    cell's twin is ``to_ste``'s for that optimizer. ``lrs`` maps an optimizer to its η grid; an
    optimizer it does not name takes its default grid.

    ``search``: ``"grid"`` trains every η of ``lrs``; ``"bisect"`` trains, per series, the ends
    of its η ladder and then bisects it for the breakdown η* (:mod:`._search`: ⌈log₂(n − 1)⌉ + 2
    cells of n when Point A breaks once); the report counts the cells it left out as implied.

    ``threads``: torch's intra-op threads while the study trains (1 by default: on this 2-core
    machine shared with other work, one thread per process ran the batched step 2.4× faster than
    two, 0.22 s against 0.53 s per net-step at batch 32, measured with ``calibrate``).

    Every value is type-checked strictly on construction, as :class:`ExperimentConfig`'s are
    (integers are integers, lists are lists, numbers are finite and in range); a mistake raises
    :class:`~stequiv.experiments.config.ConfigError` naming the key and the value.
    """

    datasets: ListOf(str) = ("mnist-5k", "fashion-mnist")  # type: ignore[valid-type]
    models: ListOf(str) = ("convnet",)  # type: ignore[valid-type]
    estimators: ListOf(Mapping[str, Any]) = (  # type: ignore[valid-type]
        {"name": "htge", "sharpness": 5.5}, {"name": "htge", "sharpness": 11.0},
        {"name": "dsq", "alpha": 0.2}, {"name": "qn", "bits": [2, 4, 8]},
        {"name": "mad", "bits": [2, 4, 8]}, {"name": "study_cosine"},
        {"name": "ede", "bits": [1]})
    bits: ListOf(int) = (1, 2, 4, 8)  # type: ignore[valid-type]
    optimizers: ListOf(str) = _OPTIMIZERS  # type: ignore[valid-type]
    lrs: Mapping[str, ListOf(PositiveFloat)] = dataclasses.field(  # type: ignore[valid-type]
        default_factory=lambda: {name: STUDY_OPTIMIZERS[name].lrs for name in _OPTIMIZERS})
    # The training hyper-parameters a cell shares with `stequiv reproduce`: their defaults are
    # ExperimentConfig's (one place each), so a cell trains as its one-pair reproduction would.
    lr_tweak: PositiveFloat = default_of("lr_tweak")
    momentum: Fraction = default_of("momentum")
    betas: ListOf(Fraction, length=2, distinct=False) = default_of("betas")  # type: ignore[valid-type]
    warmup_fraction: Fraction = default_of("warmup_fraction")
    clip_grad_norm: PositiveFloat = 1.0
    steps: Annotated[int, Field(gt=0, le=MAX_STEPS)] = 400
    batch_size: PositiveInt = 32
    eval_samples: PositiveInt = 1000
    nets_per_batch: PositiveInt = 24
    threads: PositiveInt = 1
    seed: Annotated[int, Field(ge=0, lt=2**63)] = default_of("seed")
    search: Literal["grid", "bisect"] = "grid"
    data_dir: Annotated[str, Field(min_length=1)] | None = None

    def __post_init__(self) -> None:
        """Checks of the names and across keys, once each key is valid on its own."""
        problems = self._problems()
        if problems:
            head = "" if len(problems) == 1 else f"{len(problems)} study config errors:\n  "
            raise ValueError(head + "\n  ".join(problems))

    def _problems(self) -> list[str]:
        out = [f"`datasets`: unknown dataset {d!r}; choose from {list_datasets()}"
               for d in self.datasets if d not in list_datasets()]
        out += [f"`models`: unknown model {m!r}; choose from {_STUDY_MODELS}"
                for m in self.models if m not in _STUDY_MODELS]
        out += [f"`optimizers`: unknown optimizer {o!r}; choose from {list(STUDY_OPTIMIZERS)}"
                for o in self.optimizers if o not in STUDY_OPTIMIZERS]
        out += [f"`optimizers`: {o!r} needs the package {STUDY_OPTIMIZERS[o].package} (pip install "
                f"{STUDY_OPTIMIZERS[o].package}); install it or remove {o!r}"
                for o in self.optimizers if o in STUDY_OPTIMIZERS and not STUDY_OPTIMIZERS[o].available]
        out += self._lr_problems()
        if self.lr_tweak == 1:
            out.append("`lr_tweak` 1.0 makes the lr-tweak partner the Q̂-net itself (its Ē would "
                       "be 0); give a factor near 1 such as the default 1.01")
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

    def _lr_problems(self) -> list[str]:
        """``lrs``: keyed by optimizer names, one list for every optimizer of the grid."""
        out = [f"`lrs` has the key {k!r}, which is not an optimizer{close_match(k, STUDY_OPTIMIZERS)}; "
               f"its keys are optimizer names: {list(STUDY_OPTIMIZERS)}"
               for k in self.lrs if k not in STUDY_OPTIMIZERS]
        # the nets train in float32, and torch's step stops on a step size float32 cannot hold
        factor, largest = max(1.0, self.lr_tweak), float(np.finfo(np.float32).max)
        out += [f"`lrs.{k}` holds {x:g}, beyond what float32 (in which the nets train) holds as a "
                f"step size: keep η × max(1, `lr_tweak`) below {largest:.3g}; remove it"
                for k, xs in self.lrs.items() for x in xs if x * factor > largest]
        return out

    def _estimator_problems(self) -> list[str]:
        out = []
        for spec in self.estimators:
            try:
                name = spec["name"]
                get_estimator(name, **{k: v for k, v in spec.items() if k not in _ENTRY_KEYS})
            except (KeyError, TypeError, ValueError) as err:
                out.append(f"`estimators`: entry {dict(spec)} is invalid: {err}")
                continue
            scalars = [k for k in ("bits", "models") if not isinstance(spec.get(k, ()), list | tuple)]
            if scalars:
                out += [f"`estimators`: entry {dict(spec)} gives `{k}` {spec[k]!r}, which must be a "
                        f"list; write [{spec[k]}]" for k in scalars]
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
                for d in self.datasets for lr in self.lrs.get(opt, STUDY_OPTIMIZERS[opt].lrs)]

    @property
    def hyper(self) -> dict[str, Any]:
        """The hyper-parameters every optimizer of the study shares (``momentum``, ``betas``)."""
        return {"momentum": self.momentum, "betas": self.betas}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (round-trips through :meth:`from_dict`)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyConfig:
        """Build from a mapping; unknown keys are an error naming the valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(map(str, set(data) - set(valid)))
        if unknown:
            raise ConfigError([("", f"unknown study config key(s) {unknown}"
                                    f"{close_match(unknown[0], valid)}; valid keys: {sorted(valid)}")])
        return cls(**data)


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
    # Every optimizer of the study (lion if lion-pytorch is installed) on one series: the slope of
    # Ē against η per optimizer and its verdict (docs/study.md). 6 η each, a factor √10 apart from
    # a tenth of the lowest η of the optimizer's grid (most cells below η*, where the slope is
    # read); 40 steps: 66 cells.
    "optimizers": {"datasets": ("mnist-5k",), "steps": 40, "batch_size": 16, "eval_samples": 200,
                   "estimators": ({"name": "htge", "sharpness": 5.5, "bits": [2]},),
                   "optimizers": tuple(o.name for o in STUDY_OPTIMIZERS.values() if o.available),
                   "lrs": {o.name: tuple(float(f"{x:.3g}") for x in
                                         np.geomspace(o.lrs[0] / 10, o.lrs[0] * 10**1.5, 6))
                           for o in STUDY_OPTIMIZERS.values()}},
    # η* and slopes of every (estimator, bits) the ConvNet has in `full` (23 of them), under SGD
    # and Adam on MNIST-5k at the quick budget, found by bisecting each 8-η series: ≤ 5 cells of
    # 8, ≤ 230 of the grid's 368.
    "estimators": {"datasets": ("mnist-5k",), "steps": 40, "batch_size": 16, "eval_samples": 500,
                   "search": "bisect"},
    # The ConvNet on the whole grid of the class defaults: 2 datasets × 23 (estimator, bits) × 2 × 8
    # = 736 cells; ResNet-20 (BatchNorm, ~10× the ConvNet's cost per step) with HTGE at 2 and 8
    # bits on both datasets: 64 cells more, 800 in all (every η: a preset for bigger machines).
    "full": {"models": ("convnet", "resnet20"),
             "estimators": (*({**e, "models": ["convnet"]} for e in StudyConfig.estimators),
                            {"name": "htge", "sharpness": 5.5, "bits": [2, 8], "models": ["resnet20"]})},
}
# The full grid's questions (η* per estimator, bits, optimizer, dataset and model; the slope of Ē
# against η) at its full budget, each 8-η series bisected for η*: ≤ 500 of the 800 cells.
STUDY_PRESETS["full-bisect"] = {**STUDY_PRESETS["full"], "search": "bisect"}
