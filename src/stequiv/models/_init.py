"""He-uniform (Keras ``HeUniform``) initialisation for convolutional and linear layers.

The experiments take the quantizer's clipping range from the initialisation bound, so the
bound is exposed on its own (:func:`he_uniform_bound`) next to the in-place initialiser
(:func:`he_uniform_`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["he_uniform_", "he_uniform_bound"]

#: Layer types whose ``weight`` is laid out ``(out, in / groups, *kernel)``.
_INIT_TYPES: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def _fan_in(weight: torch.Tensor) -> int:
    if weight.dim() < 2:
        raise ValueError(
            f"fan_in needs a weight of at least 2 dimensions (out, in, *kernel), "
            f"got shape {tuple(weight.shape)}"
        )
    return int(weight.shape[1] * math.prod(weight.shape[2:]))


def he_uniform_bound(weight: torch.Tensor) -> float:
    r"""Return the He-uniform (Keras ``HeUniform``) limit for ``weight``.

    .. math::

        \text{bound} = \sqrt{\frac{6}{\text{fan\_in}}},

    where :math:`\text{fan\_in} = C_\text{in} / \text{groups} \cdot \prod_i k_i` for a
    convolution weight of shape ``(C_out, C_in / groups, k_1, ..., k_d)`` and
    :math:`\text{fan\_in} = \text{in\_features}` for a linear weight ``(out, in)``.
    A weight drawn from :math:`\mathcal U(-\text{bound}, \text{bound})` has variance
    :math:`\text{bound}^2 / 3 = 2 / \text{fan\_in}` (He et al., 2015).
    """
    return math.sqrt(6.0 / _fan_in(weight))


@torch.no_grad()
def he_uniform_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    r"""Initialise every Conv/Linear layer of ``module`` in place, Keras style.

    Each ``weight`` of an ``nn.Conv1d``/``nn.Conv2d``/``nn.Conv3d``/``nn.Linear`` submodule
    (``module`` itself included) is drawn from :math:`\mathcal U(-b, b)` with
    :math:`b = \sqrt{6 / \text{fan\_in}}` (:func:`he_uniform_bound`), and its ``bias``, if
    any, is set to zero (the Keras default ``bias_initializer="zeros"``). Other layers are
    left untouched.

    Parameters
    ----------
    module:
        The model (or layer) to initialise.
    generator:
        Source of randomness; layers are visited in ``module.modules()`` order, so the same
        seed gives bit-identical weights. ``None`` uses PyTorch's global generator.

    Returns
    -------
    The same ``module``, for chaining.
    """
    for layer in module.modules():
        if isinstance(layer, _INIT_TYPES):
            bound = he_uniform_bound(layer.weight)
            layer.weight.uniform_(-bound, bound, generator=generator)
            if layer.bias is not None:
                layer.bias.zero_()
    return module
