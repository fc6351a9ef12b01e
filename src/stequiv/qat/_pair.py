r"""``Pair``: a Q̂-net and its STE twin trained in lockstep in the user's own loop.

One call per batch, :meth:`Pair.step`, trains both nets on the same batch with the same loss:

.. math::
    g = \nabla_w \ell(f_{\hat Q}(w), \text{batch}),\qquad
    \tilde g = \nabla_{\tilde w} \ell(f_{STE}(\tilde w), \text{batch}),

then each optimizer (and scheduler) steps. The twin is :func:`~stequiv.qat.to_ste` of the
Q̂-net at construction (weights through M and lr × α under SGD-like optimizers; nothing changes
under Adam-like ones), so by the paper's theorem the two stay aligned: Ē and the agreement of the
quantized weights, read at any time with :meth:`Pair.alignment`, measure how well.

**Gradient clipping** (``clip_grad_norm = c``): the Q̂-net's gradients are scaled by
:math:`k = \min(1, c/(\lVert g\rVert + 10^{-6}))` (``torch.nn.utils.clip_grad_norm_``). With
``twin_clip="shared"`` the twin's gradients are scaled by the same k: a common positive factor on
both gradients keeps the twin's rule exact (SGD: both steps scale by k; Adam: the moments see
k·Q̂′∇f and k·∇f). With ``twin_clip="own"`` the twin clips by its own norm
:math:`\lVert\tilde g\rVert \ne \lVert g\rVert` — what a user training the STE net alone gets —
and the twins drift apart once clipping is active.

**Weight EMA** (``ema_decay = d``): after every step each net keeps
:math:`\bar w \leftarrow d\,\bar w + (1-d)\,w` of every parameter, in an eval copy of the net
(:attr:`Pair.ema_model`, :attr:`Pair.ema_twin`). Under SGD the twin's weights are M(w), and the
average of M(w) is M of the average only where M is affine over the path: the EMA pair is
aligned to first order, not exactly (``pair.alignment(ema=True)`` measures it).

Dropout and other random layers see the same random numbers in both nets: the twin's forward
runs from the RNG state the Q̂-net's forward started from.

:meth:`Pair.save` writes every state (both nets, optimizers, schedulers, EMA copies, the step
count and torch's CPU RNG state) atomically with a sha256 header; :meth:`Pair.load` verifies it and
restores, so a resumed loop continues bit-identically.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._atomic import write_atomic
from ._alignment import Alignment, alignment
from ._clip import clip_grad_norm_pair_
from ._config import QuantConfig
from ._lsq import LearnedStepFakeQuant
from ._optim import optimizer_kind
from ._quantize import quantize_, quantized_layers
from ._twin import to_ste

__all__ = ["Pair", "PairStep"]

Scheduler = torch.optim.lr_scheduler.LRScheduler
LossFn = Callable[[nn.Module, Any], torch.Tensor]
TWIN_CLIP = ("shared", "own")
FORMAT = 1
_MAGIC = b"stequiv-pair 1 "


@dataclass(frozen=True)
class PairStep:
    """What one :meth:`Pair.step` returns: the step count after it and both nets' losses."""

    step: int
    loss: float
    twin_loss: float


def _check_settings(clip_grad_norm: float | None, twin_clip: str, ema_decay: float | None) -> None:
    if clip_grad_norm is not None and not (isinstance(clip_grad_norm, int | float)
                                           and math.isfinite(clip_grad_norm) and clip_grad_norm > 0):
        raise ValueError(f"`clip_grad_norm` must be a positive number or None, got "
                         f"{clip_grad_norm!r}")
    if twin_clip not in TWIN_CLIP:
        raise ValueError(f"`twin_clip` must be one of {TWIN_CLIP}, got {twin_clip!r}")
    if ema_decay is not None and not (isinstance(ema_decay, int | float) and 0 <= ema_decay < 1):
        raise ValueError(f"`ema_decay` must be a number in [0, 1) or None, got {ema_decay!r}")


def _check_model(model: Any) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")
    layers = quantized_layers(model)
    if not layers:
        raise ValueError("`model` has no quantized layer: quantize it first "
                         "(stequiv.quantize_(model, config)) or use Pair.from_float")
    learned = [n for n, fq in layers.items() if isinstance(fq, LearnedStepFakeQuant)]
    if learned:
        raise ValueError(f"layers {learned} learn their Δ (learn_step=True); a Pair keeps Δ "
                         "fixed. Quantize with learn_step=False, or drive the twin with "
                         "stequiv.LearnedStepTwin in your own loop")


def _scalar(loss: Any, which: str) -> torch.Tensor:
    if not (isinstance(loss, torch.Tensor) and loss.numel() == 1 and loss.requires_grad):
        raise ValueError(f"`loss_fn` must return a scalar tensor that requires grad for the "
                         f"{which}, got {type(loss).__name__}"
                         + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""))
    if not torch.isfinite(loss.detach()).all():
        raise FloatingPointError(f"the {which}'s loss is {loss.item()}: lower the learning rate "
                                 "or check the batch")
    return loss.reshape(())


class Pair:
    """A quantized model and its STE twin, one :meth:`step` per batch (see the module docs).

    Args:
        model: a model with quantized layers (``stequiv.quantize_``), the Q̂-net.
        optimizer: the optimizer that trains ``model`` (SGD- or Adam-like, see ``to_ste``).
        scheduler: optional learning-rate scheduler of ``optimizer``; stepped once per
            :meth:`step`; the twin gets a scheduler of the same kind.
        clip_grad_norm: global-norm gradient clip of the Q̂-net (None: no clipping).
        twin_clip: ``"shared"`` (the twin's gradients are scaled by the Q̂-net's clip factor: the
            exact twin) or ``"own"`` (the twin clips by its own gradient norm).
        ema_decay: d of a weight EMA kept for both nets (None: no EMA).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: Scheduler | None = None, *, clip_grad_norm: float | None = None,
                 twin_clip: str = "shared", ema_decay: float | None = None):
        _check_model(model)
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"`optimizer` must be a torch.optim.Optimizer, got "
                            f"{type(optimizer).__name__}")
        _check_settings(clip_grad_norm, twin_clip, ema_decay)
        self.kind = optimizer_kind(optimizer)
        conversion = to_ste(model, optimizer, scheduler)
        assert conversion.optimizer is not None
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.twin, self.twin_optimizer = conversion.model, conversion.optimizer
        self.twin_scheduler = conversion.scheduler
        self.clip_grad_norm, self.twin_clip, self.ema_decay = clip_grad_norm, twin_clip, ema_decay
        self.ema_model = None if ema_decay is None else copy.deepcopy(model).eval()
        self.ema_twin = None if ema_decay is None else copy.deepcopy(self.twin).eval()
        self.steps = 0

    @classmethod
    def from_float(cls, model: nn.Module, config: QuantConfig,
                   optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
                   scheduler: Callable[[torch.optim.Optimizer], Scheduler] | None = None,
                   **kwargs: Any) -> Pair:
        """Quantize a float ``model`` in place with ``config``, then build the optimizer
        (``optimizer(list(model.parameters()))``), the scheduler (``scheduler(opt)``) and the pair.
        ``kwargs`` go to :class:`Pair`."""
        if not isinstance(config, QuantConfig):
            raise TypeError(f"`config` must be a stequiv.QuantConfig, got {type(config).__name__}")
        if quantized_layers(model):
            raise ValueError("`model` is already quantized; use Pair(model, optimizer) instead")
        quantize_(model, config)
        opt = optimizer(list(model.parameters()))
        return cls(model, opt, None if scheduler is None else scheduler(opt), **kwargs)

    def step(self, batch: Any, loss_fn: LossFn) -> PairStep:
        """Train both nets on ``batch``: ``loss_fn(net, batch)`` → scalar loss, backward, clip,
        optimizer and scheduler step, EMA. Returns both losses."""
        if not callable(loss_fn):
            raise TypeError(f"`loss_fn` must be callable as loss_fn(model, batch), got {loss_fn!r}")
        self.optimizer.zero_grad(set_to_none=True)
        self.twin_optimizer.zero_grad(set_to_none=True)
        rng = _rng_state()
        loss = _scalar(loss_fn(self.model, batch), "Q̂-net")
        loss.backward()
        after = _rng_state()
        _set_rng_state(rng)  # the twin sees the same dropout masks
        twin_loss = _scalar(loss_fn(self.twin, batch), "STE twin")
        twin_loss.backward()
        _set_rng_state(after)
        self._clip()
        for opt, sched in ((self.optimizer, self.scheduler), (self.twin_optimizer, self.twin_scheduler)):
            opt.step()
            if sched is not None:
                sched.step()
        self._update_ema()
        self.steps += 1
        return PairStep(self.steps, float(loss.detach()), float(twin_loss.detach()))

    def _clip(self) -> None:
        if self.clip_grad_norm is None:
            return
        if self.twin_clip == "shared":
            clip_grad_norm_pair_(self.model, self.twin, self.clip_grad_norm)
            return
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip_grad_norm)
        torch.nn.utils.clip_grad_norm_(self.twin.parameters(), self.clip_grad_norm)

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.ema_decay is None:
            return
        assert self.ema_model is not None and self.ema_twin is not None
        for live, ema in ((self.model, self.ema_model), (self.twin, self.ema_twin)):
            for p, e in zip(live.parameters(), ema.parameters(), strict=True):
                e.lerp_(p.detach(), 1.0 - self.ema_decay)

    def alignment(self, *, ema: bool = False, probe: Any = None) -> Alignment:
        """Ē, quantized-weight agreement and per-layer drift (``.layers``) between the Q̂-net and
        its twin now (``ema=True``: between their EMA copies). SGD-like: Ē compares M(w) with the
        twin's weights; Adam-like: w with the twin's. ``probe``: see :func:`stequiv.alignment`."""
        if ema:
            if self.ema_model is None or self.ema_twin is None:
                raise ValueError("`ema=True` needs a Pair built with ema_decay")
            return alignment(self.ema_model, self.ema_twin, remap=self.kind == "sgd", probe=probe)
        return alignment(self.model, self.twin, remap=self.kind == "sgd", probe=probe)

    def settings(self) -> dict[str, Any]:
        """The pair's options, as saved and checked on load."""
        return {"kind": self.kind, "clip_grad_norm": self.clip_grad_norm,
                "twin_clip": self.twin_clip, "ema_decay": self.ema_decay,
                "scheduler": self.scheduler is not None}

    def state_dict(self) -> dict[str, Any]:
        """Every state of the pair: both nets, optimizers, schedulers, EMA copies, step, RNG."""
        def sched(s: Scheduler | None) -> dict[str, Any] | None:
            return None if s is None else s.state_dict()
        return {"format": FORMAT, "settings": self.settings(), "steps": self.steps,
                "model": self.model.state_dict(), "twin": self.twin.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "twin_optimizer": self.twin_optimizer.state_dict(),
                "scheduler": sched(self.scheduler), "twin_scheduler": sched(self.twin_scheduler),
                "ema_model": None if self.ema_model is None else self.ema_model.state_dict(),
                "ema_twin": None if self.ema_twin is None else self.ema_twin.state_dict(),
                "rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a pair built the same way (same model, optimizer,
        scheduler kind and options); a pair built otherwise is refused, naming the difference."""
        if state.get("format") != FORMAT:
            raise ValueError(f"pair state of format {state.get('format')!r}; this stequiv reads "
                             f"format {FORMAT}")
        ours = self.settings()
        for key, value in state["settings"].items():
            if ours.get(key) != value:
                raise ValueError(f"the saved pair has {key}={value!r} but this one has "
                                 f"{key}={ours.get(key)!r}; build the Pair with the same options")
        self.model.load_state_dict(state["model"])
        self.twin.load_state_dict(state["twin"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.twin_optimizer.load_state_dict(state["twin_optimizer"])
        for sched, key in ((self.scheduler, "scheduler"), (self.twin_scheduler, "twin_scheduler")):
            if sched is not None:
                sched.load_state_dict(state[key])
        for ema, key in ((self.ema_model, "ema_model"), (self.ema_twin, "ema_twin")):
            if ema is not None:
                ema.load_state_dict(state[key])
        self.steps = state["steps"]
        torch.set_rng_state(state["rng"])

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`state_dict` to ``path`` atomically (a temporary file, fsync, rename) with a
        sha256 header; returns the path."""
        path = Path(path)
        buffer = io.BytesIO()
        torch.save(self.state_dict(), buffer)
        data = buffer.getvalue()
        return write_atomic(path, _MAGIC + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)

    def load(self, path: str | os.PathLike) -> Pair:
        """Verify and restore a :meth:`save` file into this pair (built as the saved one was)."""
        path = Path(path)
        header, _, data = path.read_bytes().partition(b"\n")
        if not header.startswith(_MAGIC):
            raise ValueError(f"{path} is not a stequiv pair file (written by Pair.save)")
        if hashlib.sha256(data).hexdigest().encode() != header[len(_MAGIC):]:
            raise ValueError(f"{path}: sha256 mismatch, the file is corrupt or truncated; save "
                             "it again")
        self.load_state_dict(torch.load(io.BytesIO(data), weights_only=True, map_location="cpu"))
        return self


def _rng_state() -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    return torch.get_rng_state(), cuda


def _set_rng_state(state: tuple[torch.Tensor, list[torch.Tensor] | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state_all(state[1])
