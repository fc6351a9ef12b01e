"""The experiments' one loss: cross-entropy of every target, for images and byte sequences alike.

An image batch gives N x C logits for N labels; a language-model batch gives N x T x V logits
for N x T next-token targets. Both are "classify every target": the logits are flattened to
(number of targets) x C, so that

.. math::

    \\ell = \\frac{1}{|Y|} \\sum_{y \\in Y} -\\log \\operatorname{softmax}(z_y)_{y}

is the mean over every target (every image, or every position of every sequence), and the
accuracy counts the targets whose arg-max logit is right. On an image batch the flattening is
the identity, so the numbers are those of ``F.cross_entropy(logits, labels)``, bit for bit. A
language model's perplexity is :math:`\\exp \\ell` of its mean validation loss.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["correct", "cross_entropy"]


def _flat(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits of shape {tuple(logits.shape)} do not fit targets of shape "
                         f"{tuple(targets.shape)}: expected targets.shape + (classes,)")
    return logits.flatten(0, -2), targets.flatten()


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``F.cross_entropy`` over every target (``"mean"`` or ``"sum"``)."""
    return F.cross_entropy(*_flat(logits, targets), reduction=reduction)


def correct(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """How many targets the arg-max of the logits gets right (a 0-D integer tensor)."""
    flat, flat_targets = _flat(logits, targets)
    return (flat.argmax(1) == flat_targets).sum()
