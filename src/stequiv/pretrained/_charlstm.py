r"""textgenrnn's character-level language model, in plain torch, with its trained weights.

Architecture (textgenrnn's ``model.py``, ``AttentionWeightedAverage.py``), for a window of the
last T = 40 tokens (front-padded with 0; token 464 is the meta token ``<s>`` that starts a text):

.. math::
    e = \mathrm{Emb}(x)\in\mathbb R^{T\times 100},\quad h_1 = \mathrm{LSTM}_1(e),\quad
    h_2 = \mathrm{LSTM}_2(h_1),\quad z = [e; h_1; h_2]\in\mathbb R^{T\times 356},

    a = \mathrm{softmax}_t(z\,W)\ \text{(divided by } \textstyle\sum + 10^{-7}),\quad
    p(\text{next}) = \mathrm{softmax}(V\,\textstyle\sum_t a_t z_t + c).

The weights were saved by Keras' CuDNNLSTM: ``kernel`` (in, 4H) and ``recurrent_kernel`` (H, 4H)
hold the gates in Keras' order i, f, c, o — the same order as torch's i, f, g, o (c, the cell
candidate, is torch's g) — but each gate block k (in, H) is the row-major buffer of cuDNN's
(H, in) matrix, so torch's block is ``k.reshape(H, in)``, not ``k.T`` (with ``k.T`` the model
scores ~70 bits per character). ``bias`` (8H) holds the input biases, then the recurrent biases:
torch's ``bias_ih`` and ``bias_hh``. Gates use σ, the cell tanh.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .._optional import require
from ._files import weight_file

__all__ = ["CharLSTM", "bits_per_char", "char_lstm", "encode", "fortunes", "in_vocabulary",
           "text_windows", "windows"]

CONTEXT = 40
META = "<s>"
KERAS_EPSILON = 1e-7
FORTUNES = Path("/usr/share/games/fortunes")


class CharLSTM(nn.Module):
    """Embedding + 2 LSTMs + attention-weighted average + linear: windows (N, 40) → logits (N, V)."""

    def __init__(self, vocab_size: int = 465, embed: int = 100, hidden: int = 128):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed)
        self.rnn_1 = nn.LSTM(embed, hidden, batch_first=True)
        self.rnn_2 = nn.LSTM(hidden, hidden, batch_first=True)
        self.attention = nn.Linear(embed + 2 * hidden, 1, bias=False)
        self.output = nn.Linear(embed + 2 * hidden, vocab_size)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        e = self.embedding(tokens)
        h1, _ = self.rnn_1(e)
        h2, _ = self.rnn_2(h1)
        z = torch.cat([e, h1, h2], dim=-1)
        logits = self.attention(z).squeeze(-1)
        a = torch.exp(logits - logits.amax(dim=1, keepdim=True))
        a = a / (a.sum(dim=1, keepdim=True) + KERAS_EPSILON)
        return self.output((a.unsqueeze(-1) * z).sum(dim=1))


def _cudnn_blocks(kernel: torch.Tensor) -> torch.Tensor:
    """torch's (4H, in) weight from a CuDNNLSTM kernel (in, 4H): per gate block k (in, H), cuDNN
    reads k's row-major buffer as its (H, in) matrix, so the block is ``k.reshape(H, in)`` (not
    ``k.T``; Keras' own converter does the same, ``k.T.reshape(k.shape, order='F')``)."""
    fan_in, four_h = kernel.shape
    h = four_h // 4
    return torch.cat([kernel[:, j * h:(j + 1) * h].contiguous().reshape(h, fan_in)
                      for j in range(4)])


def _lstm_state(group: Any, prefix: str) -> dict[str, torch.Tensor]:
    kernel = torch.from_numpy(group[f"{prefix}/kernel:0"][()])
    recurrent = torch.from_numpy(group[f"{prefix}/recurrent_kernel:0"][()])
    bias = torch.from_numpy(group[f"{prefix}/bias:0"][()])
    four_h = kernel.shape[1]
    return {"weight_ih_l0": _cudnn_blocks(kernel), "weight_hh_l0": _cudnn_blocks(recurrent),
            "bias_ih_l0": bias[:four_h].clone(), "bias_hh_l0": bias[four_h:].clone()}


def char_lstm() -> tuple[CharLSTM, dict[str, int]]:
    """textgenrnn's pretrained model (sha256-checked weights, read with h5py) and its vocabulary
    (character → token; 0 is padding, ``<s>`` the meta token), in eval mode."""
    h5py = require("h5py", "pretrained", feature="the textgenrnn port")
    vocab = json.loads(weight_file("textgenrnn-vocab").read_text(encoding="utf-8"))
    model = CharLSTM(vocab_size=len(vocab) + 1)
    with h5py.File(weight_file("textgenrnn-weights"), "r") as f:
        state = {"embedding.weight": torch.from_numpy(f["embedding/embedding/embeddings:0"][()]),
                 "attention.weight": torch.from_numpy(f["attention/attention/attention_W:0"][()]).T,
                 "output.weight": torch.from_numpy(f["output/output/kernel:0"][()]).T,
                 "output.bias": torch.from_numpy(f["output/output/bias:0"][()])}
        for name in ("rnn_1", "rnn_2"):
            state |= {f"{name}.{k}": v for k, v in _lstm_state(f[name], name).items()}
    model.load_state_dict({k: v.contiguous() for k, v in state.items()})
    return model.eval(), vocab


def fortunes(name: str = "fortunes", folder: Path = FORTUNES) -> list[str]:
    """The texts of one of Debian's fortune files (separated by lines holding ``%``)."""
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: install Debian's `fortunes` package "
                                "(apt-get install fortunes) or pass `folder`")
    text = path.read_text(encoding="utf-8", errors="strict")
    return [t.strip("\n") for t in text.split("\n%\n") if t.strip()]


def encode(text: str, vocab: dict[str, int]) -> list[int]:
    """``<s>`` followed by the text's tokens; a character outside the vocabulary is an error."""
    missing = sorted({c for c in text if c not in vocab})
    if missing:
        raise ValueError(f"characters {missing} are not in the vocabulary; keep texts whose every "
                         "character is (see bits_per_char's `texts`)")
    return [vocab[META], *(vocab[c] for c in text)]


def windows(tokens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (window of the previous ≤ 40 tokens, front-padded with 0; next token) of a text."""
    padded = [0] * CONTEXT + tokens
    x = torch.tensor([padded[i:i + CONTEXT] for i in range(1, len(tokens))])
    y = torch.tensor(tokens[1:])
    return x, y


def in_vocabulary(texts: list[str], vocab: dict[str, int]) -> list[str]:
    """The texts whose every character is in ``vocab`` (textgenrnn would map others to padding)."""
    return [t for t in texts if all(c in vocab for c in t)]


def text_windows(texts: list[str], vocab: dict[str, int],
                 max_chars: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows and targets of whole texts, in order, until ``max_chars`` targets are reached."""
    xs, ys, total = [], [], 0
    for t in texts:
        if total >= max_chars:
            break
        x, y = windows(encode(t, vocab))
        xs.append(x)
        ys.append(y)
        total += len(y)
    if not xs:
        raise ValueError("no text to evaluate: `texts` is empty")
    return torch.cat(xs)[:max_chars], torch.cat(ys)[:max_chars]


@torch.no_grad()
def bits_per_char(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    """Mean −log₂ p(next character) over the windows ``x`` and targets ``y`` (from
    :func:`text_windows`)."""
    was = model.training
    model.eval()
    try:
        nats = sum(F.cross_entropy(model(x[i:i + batch]), y[i:i + batch], reduction="sum").item()
                   for i in range(0, len(y), batch))
    finally:
        model.train(was)
    return nats / len(y) / math.log(2)
