r"""A small decoder-only transformer over byte tokens (GPT-2 layout, pre-norm), head tied to the embedding.

.. math::

    h_0 = E[x_t] + P[t],\qquad
    h \leftarrow h + W_o\,\mathrm{attn}(W_q\,\mathrm{LN}(h), W_k\,\mathrm{LN}(h), W_v\,\mathrm{LN}(h)),\qquad
    h \leftarrow h + W_2\,\mathrm{GELU}(W_1\,\mathrm{LN}(h)),

and the logits are :math:`\mathrm{LN}(h)\,E^\top` (the head *is* the embedding matrix E, as in
GPT-2 and nanoGPT). Attention is causal and multi-head, written with plain ``nn.Linear``
projections ``q``, ``k``, ``v``, ``o`` so that every projection is a layer of its own for
:func:`~stequiv.qat.quantize_`; the projections have no bias.

Initialisation: every projection He-uniform (:func:`~stequiv.models.he_uniform_`, the bound that
the experiments take as the quantizer's range), the token and position embeddings
:math:`\mathcal N(0, 0.02^2)` (GPT-2's), LayerNorms at (1, 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ._init import he_uniform_

__all__ = ["LM_SIZES", "LMSize", "TransformerLM"]

_EMBED_STD = 0.02


@dataclass(frozen=True)
class LMSize:
    """Depth, width, heads and context (the longest input, in tokens) of a :class:`TransformerLM`."""

    layers: int
    width: int
    heads: int
    context: int

    def __post_init__(self) -> None:
        for name in ("layers", "width", "heads", "context"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"`width` {self.width} must be a multiple of `heads` {self.heads}")


#: The registered sizes (see :func:`~stequiv.models.build_model`).
LM_SIZES: dict[str, LMSize] = {
    "transformer-tiny": LMSize(layers=2, width=64, heads=2, context=64),
    "transformer-small": LMSize(layers=4, width=128, heads=4, context=128),
}


class CausalSelfAttention(nn.Module):
    r"""Multi-head causal attention: :math:`W_o\,\mathrm{softmax}(QK^\top/\sqrt{d_h} + \text{mask})\,V`."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width, bias=False)
        self.k = nn.Linear(width, width, bias=False)
        self.v = nn.Linear(width, width, bias=False)
        self.o = nn.Linear(width, width, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n, t, width = h.shape

        def split(x: torch.Tensor) -> torch.Tensor:  # N x T x D -> N x heads x T x D/heads
            return x.view(n, t, self.heads, width // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(split(self.q(h)), split(self.k(h)), split(self.v(h)),
                                           is_causal=True)
        return self.o(y.transpose(1, 2).reshape(n, t, width))


class Block(nn.Module):
    """One pre-norm transformer block: attention, then a 4×-wide GELU MLP, each residual."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 4 * width, bias=False)
        self.fc2 = nn.Linear(4 * width, width, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln1(h))
        return h + self.fc2(F.gelu(self.fc1(self.ln2(h))))


class TransformerLM(nn.Module):
    """Decoder-only byte-level language model; ``forward(tokens)`` gives N x T x vocab logits.

    Attributes
    ----------
    quantizable_layers:
        Names of every attention and MLP projection (what the experiments quantize).
    classifier:
        ``"head"``, the output layer, whose weight is the embedding's (tied): kept float by the
        experiments unless ``quantize_classifier`` is set.
    """

    first_conv: ClassVar[None] = None
    classifier: ClassVar[str] = "head"

    def __init__(self, size: LMSize, vocab_size: int = 256, *,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(vocab_size, int) or vocab_size < 1:
            raise ValueError(f"`vocab_size` must be a positive int, got {vocab_size!r}")
        self.size = size
        self.embed = nn.Embedding(vocab_size, size.width)
        self.pos = nn.Embedding(size.context, size.width)
        self.blocks = nn.ModuleList(Block(size.width, size.heads) for _ in range(size.layers))
        self.ln_f = nn.LayerNorm(size.width)
        self.head = nn.Linear(size.width, vocab_size, bias=False)
        self.head.weight = self.embed.weight
        he_uniform_(self.blocks, generator)
        with torch.no_grad():
            self.embed.weight.normal_(0.0, _EMBED_STD, generator=generator)
            self.pos.weight.normal_(0.0, _EMBED_STD, generator=generator)

    @property
    def quantizable_layers(self) -> tuple[str, ...]:
        return tuple(f"blocks.{i}.{p}" for i in range(self.size.layers)
                     for p in ("attn.q", "attn.k", "attn.v", "attn.o", "fc1", "fc2"))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 2 or tokens.shape[1] > self.size.context:
            raise ValueError(f"`tokens` must be N x T with T <= {self.size.context} (the context), "
                             f"got shape {tuple(tokens.shape)}")
        h = self.embed(tokens) + self.pos.weight[: tokens.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.head(self.ln_f(h))


def lm_factory(name: str):
    """The :func:`~stequiv.models.build_model` constructor of size ``LM_SIZES[name]``."""
    size = LM_SIZES[name]

    def build(num_classes: int = 256, in_channels: int = 1, *,
              generator: torch.Generator | None = None) -> TransformerLM:
        if in_channels != 1:
            raise ValueError(f"model {name!r} reads one token per position: `in_channels` must be "
                             f"1, got {in_channels!r}")
        return TransformerLM(size, vocab_size=num_classes, generator=generator)

    build.__name__ = build.__qualname__ = name.replace("-", "_")
    build.__doc__ = f"{name}: :class:`TransformerLM` of {size}; ``num_classes`` is the vocabulary."
    return build
