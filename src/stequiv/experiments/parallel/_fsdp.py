"""FSDP2 (``fully_shard``) for the nets of a pair: shard a built net, and see it whole again.

A net is built, quantized and paired (``quantize_``, ``to_ste``, the lr-tweak copy) unsharded,
exactly as in one process; :func:`shard_` then shards it in place. Each *unit* (a block of a
ResNet stage or of the transformer, or a quantized layer outside any block) is one FSDP2 group
and the root holds the rest (stem, BatchNorms, embeddings): rank r keeps the r-th chunk of every
parameter (``Shard(0)``); a unit's full weights are all-gathered just before its forward and
backward and freed after, and the gradients are reduce-scattered (averaged over ranks). The
fake-quant parametrization reads the gathered latent weight, so Q(w) and Q̂′(w)·g see the full
tensor, as in one process.

Everything that needs whole weights (Ē and agreement, ``weights.npz``, checkpoints, building a
partner mid-training) reads them through :func:`full`: each DTensor is all-gathered, so these are
collectives that every rank must call in the same order. They gather one tensor at a time
into CPU memory, so a rank's device never holds a whole net: checkpoints hold whole CPU tensors
(which :func:`load_` shards again), and each net keeps an unsharded *replica* in CPU memory for
the metrics and for building partners.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

from ... import qat
from ...qat import internal as _optim

__all__ = ["all_finite", "full", "full_state", "load_", "plain_copy", "refresh_", "shard_",
           "shard_units"]


def full(t: Any) -> Any:
    """The whole tensor of a DTensor (an all-gather); any other value as it is."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every element of every tensor is finite, on every rank that holds a shard.

    Each rank checks its own shards, and ranks vote (one all-reduce) when any tensor is sharded,
    so that every rank takes the same branch afterwards.
    """
    tensors = list(tensors)
    ok = torch.stack([_local(t).isfinite().all() for t in tensors]).all() if tensors else \
        torch.tensor(True)
    if any(isinstance(t, DTensor) for t in tensors):
        vote = ok.to(torch.int32).reshape(1).to(_local(tensors[0]).device)
        dist.all_reduce(vote, op=dist.ReduceOp.MIN)
        ok = vote[0] > 0
    return bool(ok)


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The modules sharded as one FSDP2 group each: every block of a top-level ``Sequential`` or
    ``ModuleList`` (ResNet stages, transformer blocks), then every quantized layer outside them."""
    blocks = [block for child in model.children() if isinstance(child, nn.Sequential | nn.ModuleList)
              for block in child.children() if any(True for _ in block.parameters())]
    inside = {id(m) for block in blocks for m in block.modules()}
    layers = [model.get_submodule(name.rpartition(".")[0]) if "." in name else model
              for name in qat.quantized_layers(model)]
    return blocks + [m for m in layers if id(m) not in inside and m is not model]


def _shard_state(opt: torch.optim.Optimizer) -> None:
    """Shard every whole per-parameter state tensor (momentum, Adam's moments) like its parameter."""
    for p, state in opt.state.items():
        if not isinstance(p, DTensor):
            continue
        for key, value in state.items():
            if torch.is_tensor(value) and not isinstance(value, DTensor) and value.shape == p.shape:
                state[key] = distribute_tensor(value.to(p.device), p.device_mesh, p.placements)


def shard_(model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
           device: torch.device) -> tuple[torch.optim.Optimizer, Any]:
    """Move ``model`` to ``device`` and shard it in place (units, then the root); returns its
    optimizer and schedule rebuilt on the sharded parameters (same groups, learning rates and
    state, the state sharded like the parameters)."""
    from torch.distributed.fsdp import fully_shard

    model.to(device)
    names = {id(p): n for n, p in model.named_parameters()}
    for unit in shard_units(model):
        fully_shard(unit)
    fully_shard(model)
    sharded = dict(model.named_parameters())
    param_map = {i: sharded[n] for i, n in names.items()}
    new_opt, origin = _optim.rebuild(opt, param_map, lambda p: 1.0)
    _optim.map_state(opt, new_opt, param_map, lambda p: None)
    _shard_state(new_opt)
    return new_opt, _optim.rebuild_scheduler(sched, new_opt, origin)


def _whole(v: Any) -> Any:
    """A DTensor gathered whole into CPU memory (one tensor at a time on the device); any other
    value as it is."""
    return v.full_tensor().cpu() if isinstance(v, DTensor) else v


def full_state(model: nn.Module, opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    """``model.state_dict()`` and ``opt.state_dict()`` with every DTensor gathered whole (into CPU
    memory); unsharded tensors stay where they are."""
    net = {k: _whole(v) for k, v in model.state_dict().items()}
    state = opt.state_dict()
    state["state"] = {i: {k: _whole(v) for k, v in s.items()} for i, s in state["state"].items()}
    return net, state


def load_(model: nn.Module, opt: torch.optim.Optimizer, net: Mapping[str, Any],
          state: Mapping[str, Any]) -> None:
    """Load whole-tensor state dicts (:func:`full_state`) into a model and optimizer, sharding
    each tensor like the parameter or buffer it replaces."""
    own = model.state_dict()
    model.load_state_dict({k: distribute_tensor(v.to(own[k].device), own[k].device_mesh,
                                                own[k].placements)
                           if isinstance(own.get(k), DTensor) else v for k, v in net.items()})
    opt.load_state_dict(state)
    _shard_state(opt)


def refresh_(replica: nn.Module, model: nn.Module) -> nn.Module:
    """Give ``replica`` (an unsharded model of the same structure) the whole state of ``model``."""
    device = next(replica.parameters()).device
    replica.load_state_dict({k: _whole(v).to(device) if torch.is_tensor(v) else v
                             for k, v in model.state_dict().items()})
    return replica


def plain_copy(model: nn.Module, opt: torch.optim.Optimizer, sched: Any,
               replica: nn.Module) -> tuple[nn.Module, torch.optim.Optimizer, Any]:
    """An unsharded copy of a sharded net (``replica``, an unsharded model of the same structure,
    receives the whole weights), with its optimizer (whole state) and schedule: what ``to_ste``
    and the lr-tweak copy start from when a partner is made mid-training."""
    state = full_state(model, opt)[1]
    plain = copy.deepcopy(refresh_(replica, model))
    mine = dict(plain.named_parameters())
    param_map = {id(p): mine[n] for n, p in model.named_parameters()}
    plain_opt, origin = _optim.rebuild(opt, param_map, lambda p: 1.0)
    plain_opt.load_state_dict(state)
    return plain, plain_opt, _optim.rebuild_scheduler(sched, plain_opt, origin)
