r"""The optimizers a study cell trains with: a name, a torch optimizer, an η grid, a clipping habit.

The twin of each is whatever :func:`stequiv.to_ste` makes of it: the study never derives a rule.
:func:`study_rule` asks :func:`stequiv.qat.optimizer_rule` (the family registry of
:mod:`stequiv.qat._optim_families`) for the rule of an instance of the optimizer, and reads the
twin's rule text, its kind ("sgd": M(w) and α·η; "adam": w and η unchanged) and its order
(exact, second order, first order) from there.

``clip`` names a training-loop habit the optimizer cannot see (docs/optimizers.md), with global
norm τ = ``clip_grad_norm`` of the study config:

``"pair"``
    the Q̂-net clips by its own norm and its twin is scaled by the *Q̂-net's* coefficient
    (:func:`stequiv.qat.clip_grad_norm_pair_`): the twin's step stays the Q̂-net's step through M,
    so the order is the optimizer's.
``"own"``
    every net clips by its own norm, as a user who trains the twin alone would: the twin's
    coefficient :math:`\tau/\lVert g\rVert` differs from the Q̂-net's :math:`\tau/\lVert \hat Q'
    g\rVert` by a factor that does not shrink with η, a *first-order* difference.

The lr-tweak partner is a Q̂-net: it always clips by its own norm.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from ... import qat

__all__ = ["STUDY_OPTIMIZERS", "StudyOptimizer", "StudyRule", "study_rule"]

Clip = Literal["", "pair", "own"]
Hyper = Mapping[str, Any]  # the study config's shared hyper-parameters: momentum, betas


def _grid(low: float, high: float) -> tuple[float, ...]:
    return tuple(float(f"{x:.3g}") for x in np.geomspace(low, high, 8))


@dataclass(frozen=True)
class StudyOptimizer:
    """One optimizer choice of the study: ``path`` (``module.Class``), its keyword arguments from
    the study's ``momentum``/``betas`` (``kwargs``), its default η grid and its clipping habit."""

    name: str
    path: str
    kwargs: Callable[[Hyper], dict[str, Any]]
    lrs: tuple[float, ...]
    clip: Clip = ""
    package: str = ""  # the pip package of an optional optimizer
    about: str = field(default="", compare=False)

    @property
    def available(self) -> bool:
        """Whether the optimizer's module can be imported (optional packages)."""
        return importlib.util.find_spec(self.path.split(".", 1)[0]) is not None

    def make(self, params: Iterable[torch.nn.Parameter], lr: float,
             hyper: Hyper) -> torch.optim.Optimizer:
        """The optimizer over ``params`` at learning rate ``lr``."""
        module, name = self.path.rsplit(".", 1)
        cls = getattr(importlib.import_module(module), name)
        return cls(params, lr=lr, **self.kwargs(hyper))


def _momentum(hyper: Hyper, **extra: Any) -> dict[str, Any]:
    return {"momentum": hyper["momentum"], **extra}


def _betas(hyper: Hyper, **extra: Any) -> dict[str, Any]:
    return {"betas": tuple(hyper["betas"]), **extra}


# Clipped to τ = 1 (the study's default), the ConvNet's gradients (norm 5 to 15 in the first
# steps on MNIST) are scaled by 0.07 to 0.2: clipped SGD's grid sits 3× higher.
_SGD_LRS, _ADAM_LRS, _CLIPPED_SGD_LRS = _grid(1e-3, 1.0), _grid(1e-5, 1e-1), _grid(3e-3, 3.0)
STUDY_OPTIMIZERS: dict[str, StudyOptimizer] = {o.name: o for o in (
    StudyOptimizer("sgd", "torch.optim.SGD", _momentum, _SGD_LRS, about="SGD, momentum"),
    StudyOptimizer("adam", "torch.optim.Adam", _betas, _ADAM_LRS, about="Adam"),
    StudyOptimizer("nesterov", "torch.optim.SGD", lambda h: _momentum(h, nesterov=True),
                   _SGD_LRS, about="SGD, Nesterov momentum"),
    StudyOptimizer("adamw", "torch.optim.AdamW", lambda h: _betas(h, weight_decay=0.01),
                   _ADAM_LRS, about="AdamW, decoupled decay 0.01"),
    StudyOptimizer("rmsprop", "torch.optim.RMSprop", lambda h: {}, _grid(1e-6, 1e-2),
                   about="RMSprop"),
    StudyOptimizer("adagrad", "torch.optim.Adagrad", lambda h: {}, _grid(1e-4, 1.0),
                   about="Adagrad"),
    StudyOptimizer("lion", "lion_pytorch.Lion", lambda h: {}, _grid(1e-6, 1e-2),
                   package="lion-pytorch", about="Lion (lion-pytorch)"),
    StudyOptimizer("sgd-clip", "torch.optim.SGD", _momentum, _CLIPPED_SGD_LRS, clip="pair",
                   about="SGD, momentum, clipped; twin × the Q̂-net's coefficient"),
    StudyOptimizer("sgd-clip-own", "torch.optim.SGD", _momentum, _CLIPPED_SGD_LRS, clip="own",
                   about="SGD, momentum, clipped; twin by its own norm"),
    StudyOptimizer("adam-clip", "torch.optim.Adam", _betas, _ADAM_LRS, clip="pair",
                   about="Adam, clipped; twin × the Q̂-net's coefficient"),
    StudyOptimizer("adam-clip-own", "torch.optim.Adam", _betas, _ADAM_LRS, clip="own",
                   about="Adam, clipped; twin by its own norm"),
)}


@dataclass(frozen=True)
class StudyRule:
    """What ``to_ste`` does with a study optimizer: the twin's ``kind`` ("sgd" or "adam"), its
    rule text and its order (the family's verdict; first order for ``clip="own"``)."""

    kind: str
    rule: str
    order: str


_CLIP_RULE = {"": "", "pair": "; twin × the Q̂-net's clip coefficient",
              "own": "; twin clips by its own norm"}


def study_rule(name: str, hyper: Hyper) -> StudyRule:
    """The twin rule of study optimizer ``name``, looked up by :func:`stequiv.qat.optimizer_rule`
    on an instance of it."""
    choice = STUDY_OPTIMIZERS[name]
    rule = qat.optimizer_rule(choice.make([torch.nn.Parameter(torch.zeros(1))], 1e-3, hyper))
    order = "first order" if choice.clip == "own" else rule.verdict
    return StudyRule(rule.kind, rule.rule + _CLIP_RULE[choice.clip], order)
