r"""Many independent small nets trained at once: one vmapped forward and backward per step.

N fake-quantized nets of one architecture (different estimators, bit widths, Δ, optimizers and
learning rates allowed) see the same batch. Their latent weights are stacked
(``torch.stack``, so the gradient flows back to each net's own parameters), fake-quantized all at
once (Δ, l, u, z stacked to broadcast over the nets), and evaluated with the architecture's stacked
forward (:mod:`._stacked`, the ConvNet) or else with ``vmap`` over ``functional_call`` of one float
copy of the architecture. Each net then
takes its own optimizer and schedule step (any torch optimizer, with the state and per-layer learning
rates ``to_ste`` gave it), so optimizer numbers are those of the one-net path.

Fake quantization in functional form, per quantized layer of net i (forward Q, backward Q̂′):

.. math:: W_i = \operatorname{sg}\big[Q_i(w_i)\big] + (w_i - \operatorname{sg}[w_i])\cdot H_i,
          \qquad H_i = \hat Q_i'(x_i)\ (\text{times the layer's grad scale}),

where sg stops gradients, :math:`Q_i` is Eq. 1 with net i's Δ, l, u, z evaluated by the same
operations in the same order as :class:`~stequiv.qat.WeightFakeQuant` (on the layer's
``layout.view`` of the weight, which every net must share), and :math:`H_i` is computed before the
forward by that layer's own ``gradient`` (the NumPy path of the one-net backward), at
:math:`x_i = w_i/\Delta_i - z_i` (bin units: the grid coordinate that Q is then computed from) or
:math:`w_i` (weight units); :math:`H_i = 1` for a plain STE layer, whose one-net backward passes the
gradient through. One autograd function returns :math:`Q_i(w_i)` and multiplies the upstream
gradient by :math:`H_i` (the sg form above, without its zero term). The forward value is exactly
:math:`Q_i(w_i)` and the gradient exactly :math:`\partial L/\partial W_i \cdot H_i`, as in the
one-net backward; only the convolutions' summation order may differ (measured in
tests/test_study.py).

Buffers (BatchNorm's running statistics) are stacked like the weights and passed to vmap as
batched inputs: in training mode BatchNorm updates them in place, which vmap allows on a batched
tensor (each net's slice gets its own update), and the updated slices are copied back into each
net's buffers after the forward. Evaluation runs the skeleton in eval mode (running statistics),
as the one-net path does.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F
from torch.nn.utils import parametrize

from ... import qat
from ...core.estimators._basic import STE
from ...qat import WeightFakeQuant
from ._stacked import stacked_forward

__all__ = ["BatchedNets", "NetState"]


@dataclass
class NetState:
    """One net of a batch: the module (fake-quantized), its optimizer and its schedule."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Any


def _is_model_buffer(name: str) -> bool:
    """A buffer of the float model (BatchNorm statistics), not one of a fake-quant module (Δ)."""
    return ".parametrizations." not in f".{name}"


_ORIGINAL = re.compile(r"^(?:(.*)\.)?parametrizations\.([^.]+)\.original$")


def _plain_name(name: str) -> tuple[str, str | None]:
    """(name in the float skeleton, quantized-weight name of ``qat.quantized_layers`` or None)."""
    match = _ORIGINAL.match(name)
    if match is None:
        return name, None
    module, param = match.group(1) or "", match.group(2)
    plain = f"{module}.{param}" if module else param
    return plain, module if param == "weight" else plain


def _float_skeleton(net: nn.Module) -> nn.Module:
    """A float copy of ``net`` (parametrizations removed) whose forward ``functional_call`` drives.

    ``deepcopy`` keeps the class that ``parametrize`` injected (``ParametrizedConv2d``), shared with
    ``net``'s module; removing the copy's parametrization deletes the weight property from that
    class, and ``net`` could no longer run its forward. Each copied module gets its own class first.
    """
    skeleton = copy.deepcopy(net)
    for module in skeleton.modules():
        if parametrize.is_parametrized(module):
            cls = type(module)
            module.__class__ = type(cls.__name__, cls.__bases__, {
                k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__")})
    qat.dequantize_(skeleton)
    for p in skeleton.parameters():
        p.requires_grad_(False)
    return skeleton


class _FakeQuant(torch.autograd.Function):
    """Q(w) forward from the grid coordinate v, H·upstream backward (module docstring); v, H and
    the limits broadcast over the stacked nets."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, v: torch.Tensor, h: torch.Tensor,
                q: dict[str, torch.Tensor]) -> torch.Tensor:
        ctx.save_for_backward(h)
        return v.clamp(q["lower"], q["upper"]).round_().add_(q["offset"]).mul_(q["delta"].to(w.dtype))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (h,) = ctx.saved_tensors
        return grad * h, None, None, None


class BatchedNets:
    """N nets stepped together (module docstring). ``states`` must share one architecture.

    ``stacked``: use the architecture's stacked forward where :mod:`._stacked` has one (the same
    numbers up to float summation order, faster on CPU); False forces the vmap path."""

    def __init__(self, states: Sequence[NetState], *, stacked: bool = True):
        if not states:
            raise ValueError("BatchedNets needs at least one net")
        self.states = list(states)
        first = self.states[0].net
        self.skeleton = _float_skeleton(first)
        self.buffer_names = [n for n, _ in first.named_buffers() if _is_model_buffer(n)]
        shapes = [(n, tuple(p.shape)) for n, p in first.named_parameters()]
        for s in self.states[1:]:
            if [(n, tuple(p.shape)) for n, p in s.net.named_parameters()] != shapes:
                raise ValueError("BatchedNets: every net must have the same parameters and shapes")
        self.names = [n for n, _ in shapes]
        self.plain = {n: _plain_name(n) for n in self.names}
        self.layers = {q: n for n, (_, q) in self.plain.items() if q is not None}
        self.fqs = [qat.quantized_layers(s.net) for s in self.states]
        self.quant = {layer: self._stack_quantizers(layer) for layer in self.layers}
        self.stacked = stacked_forward(self.skeleton) if stacked else None

    def _stack_quantizers(self, layer: str) -> dict[str, torch.Tensor]:
        fqs: list[WeightFakeQuant] = [f[layer] for f in self.fqs]
        if len({json.dumps(fq.layout.to_dict(), sort_keys=True) for fq in fqs}) != 1:
            raise ValueError(f"layer {layer!r}: every net must lay its Δ out the same way")
        dtype = self.states[0].net.get_parameter(self.layers[layer]).dtype
        layout = fqs[0].layout
        dims = layout.view(torch.empty(layout.shape, device="meta")).dim()  # of one net's view

        def stacked(values: list[torch.Tensor]) -> torch.Tensor:  # (N, ...) against (N, *view)
            out = torch.stack(values)
            return out.reshape(len(values), *(1,) * (1 + dims - out.dim()), *out.shape[1:])

        return {"delta": stacked([fq.delta for fq in fqs]),
                "inv_delta": stacked([fq.inv_delta for fq in fqs]),
                **{k: stacked([torch.tensor(float(getattr(fq, k)), dtype=dtype) for fq in fqs])
                   for k in ("lower", "upper", "offset")}}

    @torch.no_grad()
    def _slopes(self, layer: str, w: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """H of every net for one layer (w, v: (N, *view)), by each layer's own backward
        evaluation; 1 for a plain STE layer, whose backward passes the gradient through."""
        out = []
        for fqs, wi, vi in zip(self.fqs, w, v, strict=True):
            fq = fqs[layer]
            if isinstance(fq.estimator, STE) and type(fq).gradient is WeightFakeQuant.gradient:
                out.append(torch.ones_like(wi))
            else:
                x = wi if fq.estimator.units == "weight" else vi
                out.append(fq.gradient(x, torch.ones((), dtype=wi.dtype)))
        return torch.stack(out)

    def _weights(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The float-model tensors of all nets, stacked: biases as they are, quantized weights
        fake-quantized (Q forward, H backward)."""
        tensors = {}
        for name, p in params.items():
            plain, layer = self.plain[name]
            if layer is None:
                tensors[plain] = p
                continue
            layout, q = self.fqs[0][layer].layout, self.quant[layer]
            w = vmap(layout.view)(p) if layout.rowwise else p
            with torch.no_grad():
                v = torch.mul(w, q["inv_delta"].to(w.dtype)).sub_(q["offset"])
                h = self._slopes(layer, w.detach(), v)
            out = _FakeQuant.apply(w, v, h, q)
            tensors[plain] = vmap(layout.unview)(out) if layout.rowwise else out
        return tensors

    def _call(self, tensors: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
              x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.skeleton, {**tensors, **buffers}, (x,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every net, shape (N, batch, classes); differentiable w.r.t. each net. In
        training mode each net's BatchNorm statistics are updated, as its own forward would."""
        per_net = [dict(s.net.named_parameters()) for s in self.states]
        params = {n: torch.stack([p[n] for p in per_net]) for n in self.names}
        per_buf = [dict(s.net.named_buffers()) for s in self.states]
        buffers = {n: torch.stack([b[n] for b in per_buf]) for n in self.buffer_names}
        tensors = self._weights(params)
        if self.stacked is not None and not buffers:
            out = self.stacked(self.skeleton, tensors, x)
        else:
            out = vmap(self._call, in_dims=(0, 0, None))(tensors, buffers, x)
        if self.skeleton.training:
            with torch.no_grad():
                for name, stacked in buffers.items():
                    for b, new in zip(per_buf, stacked, strict=True):
                        b[name].copy_(new)
        return out

    def train_step(self, x: torch.Tensor, y: torch.Tensor,
                   before_step: Sequence[Callable[[], None]] = ()) -> torch.Tensor:
        """One step of every net on (x, y); returns each net's mean cross-entropy (N,).
        ``before_step``: called after the backward, before the optimizers step (clipping)."""
        for s in self.states:
            s.optimizer.zero_grad(set_to_none=True)
        out = self.forward(x)
        losses = F.cross_entropy(out.flatten(0, 1), y.repeat(len(self.states)),
                                 reduction="none").view(len(self.states), -1).mean(1)
        losses.sum().backward()
        for call in before_step:
            call()
        for s in self.states:
            s.optimizer.step()
            s.schedule.step()
        return losses.detach()

    @torch.no_grad()
    def evaluate(self, batches: Any) -> list[dict[str, float]]:
        """Accuracy and mean cross-entropy of every net over ``(x, y)`` batches (eval mode)."""
        self.skeleton.eval()
        try:
            return self._evaluate(batches)
        finally:
            self.skeleton.train()

    def _evaluate(self, batches: Any) -> list[dict[str, float]]:
        loss = torch.zeros(len(self.states), dtype=torch.float64)
        correct = torch.zeros(len(self.states), dtype=torch.float64)
        count = 0
        for x, y in batches:
            out = self.forward(x)
            loss += F.cross_entropy(out.flatten(0, 1), y.repeat(len(self.states)),
                                    reduction="none").view(len(self.states), -1).double().sum(1)
            correct += (out.argmax(-1) == y).double().sum(1)
            count += len(y)
        return [{"acc": float(c) / count, "loss": float(v) / count}
                for c, v in zip(correct, loss, strict=True)]
