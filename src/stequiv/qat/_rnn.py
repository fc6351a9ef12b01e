"""Quantized RNN/LSTM/GRU modules that ``copy.deepcopy`` (and so ``to_ste``) can copy.

``nn.RNNBase`` caches its weights in ``_flat_weights`` and refreshes the cache on every forward and
every ``.to()``. Under a parametrization the cached tensors are the *computed* quantized weights:
non-leaf tensors with a ``grad_fn``, which ``copy.deepcopy`` refuses ("Only Tensors created
explicitly by the user (graph leaves) support the deepcopy protocol"). The cache is derived state:
the copy gets it detached, and its next forward sees that the references are stale and rebuilds it
from the copied latent weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["make_copyable"]


def _detached(weights: list[Any]) -> list[Any]:
    return [w.detach() if isinstance(w, torch.Tensor) and w.grad_fn is not None else w
            for w in weights]


def make_copyable(module: nn.Module) -> None:
    """Wrap the ``__deepcopy__`` of a parametrized RNN module's own class (torch makes one class
    per parametrized module) so that the cached computed weights are copied detached."""
    cls = type(module)
    if not isinstance(module, nn.RNNBase) or getattr(cls, "_stequiv_copyable", False):
        return
    copy_parametrized = cls.__deepcopy__  # type: ignore[attr-defined]  (torch adds it to the class)

    def deepcopy(self: nn.RNNBase, memo: dict[int, Any]) -> nn.RNNBase:
        cached = self.__dict__["_flat_weights"]
        self.__dict__["_flat_weights"] = _detached(cached)
        try:
            return copy_parametrized(self, memo)
        finally:
            self.__dict__["_flat_weights"] = cached

    cls.__deepcopy__ = deepcopy  # type: ignore[method-assign]
    cls._stequiv_copyable = True  # type: ignore[attr-defined]
