"""Models used in the experiments, and a small name -> constructor registry.

:func:`build_model` builds any registered network by name with He-uniform weights drawn
from an optional :class:`torch.Generator` (same seed, bit-identical weights);
:func:`list_models` lists the names.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

import torch
from torch import nn

from ._convnet import ConvNet as ConvNet
from ._init import he_uniform_ as he_uniform_
from ._init import he_uniform_bound as he_uniform_bound
from ._resnet import BasicBlock as BasicBlock
from ._resnet import Bottleneck as Bottleneck
from ._resnet import CifarResNet as CifarResNet
from ._resnet import ResNet as ResNet
from ._resnet import resnet18 as resnet18
from ._resnet import resnet20 as resnet20
from ._resnet import resnet34 as resnet34
from ._resnet import resnet50 as resnet50
from ._transformer import LM_SIZES as LM_SIZES
from ._transformer import LMSize as LMSize
from ._transformer import TransformerLM as TransformerLM
from ._transformer import lm_factory

__all__ = [
    "LM_SIZES",
    "BasicBlock",
    "Bottleneck",
    "CifarResNet",
    "ConvNet",
    "LMSize",
    "ResNet",
    "TransformerLM",
    "build_model",
    "he_uniform_",
    "he_uniform_bound",
    "list_models",
    "resnet18",
    "resnet20",
    "resnet34",
    "resnet50",
]

_Factory = Callable[..., nn.Module]

_REGISTRY: dict[str, _Factory] = {
    "convnet": ConvNet,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet20": resnet20,
    **{name: lm_factory(name) for name in LM_SIZES},
}


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, sorted."""
    return sorted(_REGISTRY)


def build_model(
    name: str,
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """Build the model registered as ``name`` (case-insensitive).

    Parameters
    ----------
    name:
        One of :func:`list_models`: ``"convnet"``, ``"resnet18"``, ``"resnet34"``,
        ``"resnet50"``, ``"resnet20"``, ``"transformer-tiny"``, ``"transformer-small"`` (byte-level
        :class:`TransformerLM` of :data:`LM_SIZES`).
    num_classes, in_channels:
        Output classes and input channels (defaults suit MNIST-type data); for the language
        models the vocabulary (256 bytes) and 1 (one token per position).
    generator:
        Randomness for the He-uniform initialisation; the same seed gives bit-identical
        weights. ``None`` uses PyTorch's global generator.

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the valid names and the closest one.
    """
    key = name.strip().lower()
    try:
        factory = _REGISTRY[key]
    except KeyError:
        valid = list_models()
        close = difflib.get_close_matches(key, valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}; valid names are: {', '.join(valid)}.{hint}"
        ) from None
    return factory(num_classes=num_classes, in_channels=in_channels, generator=generator)
