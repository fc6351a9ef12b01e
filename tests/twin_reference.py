"""Shared by the twin tests: how far a twin's step is from the Q̂-net's step seen through M."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import stequiv as sq


def mismatch_per_movement(model: nn.Module, twin: nn.Module, start: dict[str, torch.Tensor],
                          remap: bool) -> float:
    """Σ|M(w_Q̂) − w_twin| / Σ|w_twin − w_twin(start)| over the quantized weights (M the identity
    when ``remap`` is false, the Adam form)."""
    layers = sq.quantized_layers(model)
    step = residual = 0.0
    for n, w0 in start.items():
        w_q = sq.latent_weight(model, n).detach().numpy()
        mapped = sq.remap(layers[n].estimator, layers[n].quantizer(), w_q) if remap else w_q
        w_twin = sq.latent_weight(twin, n).detach().numpy()
        step += np.abs(w_twin - w0.numpy()).sum()
        residual += np.abs(mapped - w_twin).sum()
    assert step > 0
    return residual / step
