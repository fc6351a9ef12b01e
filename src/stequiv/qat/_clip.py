r"""Global-norm gradient clipping for a Q̂-net and its STE twin, with one coefficient.

``torch.nn.utils.clip_grad_norm_`` scales the gradients by :math:`c = \min(1, \tau/(\lVert G\rVert
+ 10^{-6}))`. The Q̂-net's gradient is :math:`\hat Q'(w)\,g`, the twin's g, so their norms differ
and each net clipping by its own norm scales the two steps differently: a first-order difference
(docs/optimizers.md). Scaling the twin by the Q̂-net's coefficient keeps the twin: through M its
step is :math:`\alpha\eta\,c\,g`, the Q̂-net's (SGD); the moments keep :math:`m/\hat Q'` (Adam).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["clip_grad_norm_pair_"]


@torch.no_grad()
def clip_grad_norm_pair_(qnet: nn.Module, twin: nn.Module | Sequence[nn.Module],
                         max_norm: float) -> torch.Tensor:
    """Clip ``qnet``'s gradients to global norm ``max_norm`` and scale ``twin``'s (or every twin's
    of a sequence) by the same coefficient (not by its own norm). Returns the Q̂-net's total norm
    before clipping."""
    if not max_norm > 0:
        raise ValueError(f"`max_norm` must be > 0, got {max_norm!r}")
    norm = nn.utils.clip_grad_norm_(qnet.parameters(), max_norm)
    coefficient = torch.clamp(max_norm / (norm + 1e-6), max=1.0)  # clip_grad_norm_'s own
    twins = [twin] if isinstance(twin, nn.Module) else list(twin)
    for p in (p for t in twins for p in t.parameters()):
        if p.grad is not None:
            p.grad.mul_(coefficient.to(p.grad.device, p.grad.dtype))
    return norm
