"""The pretrained networks of the recovery protocol: model, fine-tuning data, loss and metric.

Each :class:`Network` gives the float model, a deterministic stream of fine-tuning batches, the
loss that fine-tunes it and the metric it is scored by (with the metric's direction):

- ``crepe-tiny``: raw pitch accuracy on held-out tones (1–4 harmonics, 33–1950 Hz) in white noise
  at 0 dB SNR (on clean tones every bit width of 4 or more scores 1.0, so there would be no gap to
  recover); fine-tuned on fresh clean tones (no noise: the fine-tuning restores the network, it does
  not teach it the noisy test) against CREPE's training target, a Gaussian over the 360 bins
  (σ = 25 cents), with binary cross-entropy. BatchNorm stays in eval mode (its
  recorded statistics are kept).
- ``char-lstm``: bits per character on the first texts of Debian's ``fortunes`` file; fine-tuned on
  40-character windows of other fortune files (``wisdom``, ``humorists``, ``literature``) with
  cross-entropy on the next character.
- ``transformer``: stequiv's byte-level ``transformer-tiny``, standing in for an LLM: pretrained in
  float on the train split of :func:`stequiv.data.load_text` ``("fortunes")`` (AdamW, one-cycle,
  800 steps of 32 windows of 64 bytes; cached in the run folder as a verified checkpoint and
  reused), scored by bits per byte on evenly spaced windows of the validation split, fine-tuned on
  train windows.

Layers are quantized with one Δ per group of 32 input elements where 32 divides the layer's input
size, else one Δ per output channel, on a grid with a zero level (offset 0, Δ from the absmax;
:func:`layer_configs`). On the paper's offset-½ grid, which has no zero level, the char-LSTM's
attention vector (one Δ for its 356 weights) loses its near-zero weights: 4-bit PTQ scores
7.1 bits per character there, against 2.8 with a zero level and 2.3 in float.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .. import pretrained as sp
from ..data import load_text
from ..models import build_model
from ..qat import QuantConfig, load, save

__all__ = ["NETWORKS", "Network", "layer_configs"]

GROUP = 32
PITCH_SIGMA_CENTS = 25.0
EVAL_NOISE_SEED = 12345
TRAIN_FILES = ("wisdom", "humorists", "literature")
TRAIN_CHARS = 60_000  # fine-tuning windows drawn from the first 60k characters of TRAIN_FILES
QUANTIZED_KINDS = (nn.Linear, nn.Conv1d, nn.Embedding)


def layer_configs(model: nn.Module, estimator: Any, bits: int) -> dict[str, QuantConfig]:
    """One QuantConfig per weight of Linear, Conv1d, Embedding and LSTM layers: groups of 32 where
    32 divides the input size per output channel, else per channel; Δ from the absmax; offset 0."""
    out: dict[str, QuantConfig] = {}
    for name, module in model.named_modules():
        if isinstance(module, QUANTIZED_KINDS):
            weights = {name: module.weight}
        elif isinstance(module, nn.LSTM):
            weights = {f"{name}.{p}": getattr(module, p) for p in ("weight_ih_l0", "weight_hh_l0")}
        else:
            continue
        for key, w in weights.items():
            fan_in = w.numel() // w.shape[0]
            grouped = fan_in % GROUP == 0
            out[key] = QuantConfig(estimator=estimator, bits=bits, scale="absmax", offset=0.0,
                                   per_channel=not grouped, group_size=GROUP if grouped else None)
    return out


def select(module: nn.Module, name: str) -> bool:
    """The filter for :func:`stequiv.quantize_`: the layers :func:`layer_configs` configures."""
    return isinstance(module, (*QUANTIZED_KINDS, nn.LSTM))


@dataclass(frozen=True)
class Network:
    """A pretrained network as the protocol uses it."""

    name: str
    metric: str
    higher_is_better: bool
    build: Callable[[Path | None], nn.Module]  # (cache folder or None) → the float model
    batches: Callable[[int, int, int], Iterator[Any]]  # (steps, batch size, seed) → batches
    loss: Callable[[nn.Module, Any], torch.Tensor]
    evaluate: Callable[[nn.Module, int], float]  # (model, eval size) → metric
    lr: dict[str, float]  # per optimizer name


# --- crepe-tiny -----------------------------------------------------------------------------

def _crepe_target(f0: torch.Tensor) -> torch.Tensor:
    bins = sp.CENTS_OFFSET + sp.CENTS_PER_BIN * torch.arange(360, dtype=torch.float64)
    diff = bins[None, :] - 1200.0 * torch.log2(f0[:, None] / 10.0)
    return torch.exp(-diff**2 / (2 * PITCH_SIGMA_CENTS**2)).float()


def _noisy(audio: torch.Tensor, snr_db: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``audio`` plus white noise at ``snr_db`` (per frame) dB below each frame's power."""
    noise = torch.randn(audio.shape, generator=g)
    return audio + noise * audio.std(dim=1, keepdim=True) * 10 ** (-snr_db[:, None] / 20)


def _crepe_batches(steps: int, size: int, seed: int) -> Iterator[Any]:
    for step in range(steps):
        audio, f0 = sp.synthetic_tones(size, seed=10_000 + seed * 1_000 + step, low=33.0,
                                       high=1950.0, harmonics=1 + step % 4)
        yield sp.frame(audio), _crepe_target(f0)


def _crepe_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    frames, target = batch
    return F.binary_cross_entropy_with_logits(model.logits(frames), target)  # type: ignore[operator]


def _crepe_eval(model: nn.Module, size: int) -> float:
    audio, f0 = zip(*(sp.synthetic_tones(size // 4, seed=h, low=33.0, high=1950.0, harmonics=h)
                      for h in range(1, 5)), strict=True)
    clean = torch.cat(audio)
    noisy = _noisy(clean, torch.zeros(len(clean)), torch.Generator().manual_seed(EVAL_NOISE_SEED))
    return sp.crepe_pitch_accuracy(model, noisy, torch.cat(f0))


def _crepe(cache: Path | None) -> nn.Module:
    return sp.crepe("tiny").eval()  # BatchNorm keeps its recorded statistics while fine-tuning


# --- char-lstm ------------------------------------------------------------------------------

@functools.cache
def _lstm_vocab() -> dict[str, int]:
    return sp.char_lstm()[1]


@functools.cache
def _lstm_train_windows() -> tuple[torch.Tensor, torch.Tensor]:
    vocab = _lstm_vocab()
    texts = [t for name in TRAIN_FILES for t in sp.in_vocabulary(sp.fortunes(name), vocab)]
    return sp.text_windows(texts, vocab, TRAIN_CHARS)


def _lstm_batches(steps: int, size: int, seed: int) -> Iterator[Any]:
    x, y = _lstm_train_windows()
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        pick = torch.randint(0, len(y), (size,), generator=g)
        yield x[pick], y[pick]


def _lstm_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def _lstm_eval(model: nn.Module, size: int) -> float:
    vocab = _lstm_vocab()
    x, y = sp.text_windows(sp.in_vocabulary(sp.fortunes("fortunes"), vocab), vocab, size)
    return sp.bits_per_char(model, x, y)


# --- transformer ----------------------------------------------------------------------------

LM = "transformer-tiny"
LM_CONTEXT = 64
LM_PRETRAIN_STEPS, LM_PRETRAIN_BATCH, LM_PRETRAIN_LR = 800, 32, 3e-3
LM_CHECKPOINT = "transformer-fortunes-float.ckpt"


@functools.cache
def _lm_split(split: str) -> Any:
    return load_text("fortunes", split, context=LM_CONTEXT)


def _lm_batches(steps: int, size: int, seed: int) -> Iterator[Any]:
    train = _lm_split("train")
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        yield train.batch(torch.randint(0, len(train), (size,), generator=g))


def _lm_loss(model: nn.Module, batch: Any) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


@torch.no_grad()
def _lm_eval(model: nn.Module, size: int) -> float:
    x, y = _lm_split("val").subset(size).batch(range(size))
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item() / math.log(2)


def _pretrain_lm() -> nn.Module:
    model = build_model(LM, num_classes=256, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=LM_PRETRAIN_LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LM_PRETRAIN_LR,
                                                total_steps=LM_PRETRAIN_STEPS)
    for batch in _lm_batches(LM_PRETRAIN_STEPS, LM_PRETRAIN_BATCH, seed=99):
        opt.zero_grad(set_to_none=True)
        _lm_loss(model, batch).backward()
        opt.step()
        sched.step()
    return model


def _lm(cache: Path | None) -> nn.Module:
    """The float transformer: loaded from ``cache`` (sha256-verified) or pretrained and saved."""
    path = None if cache is None else Path(cache) / LM_CHECKPOINT
    if path is not None and path.is_file():
        return load(path, build_model(LM, num_classes=256)).eval()
    model = _pretrain_lm()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        save(model, path)
    return model.eval()


NETWORKS: dict[str, Network] = {
    "crepe-tiny": Network("crepe-tiny", "raw pitch accuracy", True, _crepe, _crepe_batches,
                          _crepe_loss, _crepe_eval, {"sgd": 0.03, "adamw": 1e-3}),
    "char-lstm": Network("char-lstm", "bits per character", False,
                         lambda cache: sp.char_lstm()[0], _lstm_batches, _lstm_loss, _lstm_eval,
                         {"sgd": 0.005, "adamw": 2e-3}),
    "transformer": Network("transformer", "bits per byte", False, _lm, _lm_batches, _lm_loss,
                           _lm_eval, {"sgd": 0.05, "adamw": 1e-3}),
}
