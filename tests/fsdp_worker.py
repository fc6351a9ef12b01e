"""A Q̂-net and its STE twin trained side by side for a few SGD steps, under FSDP2 or in one process.

``python tests/fsdp_worker.py OUT`` trains in one process; ``torchrun --nproc-per-node 2
tests/fsdp_worker.py OUT`` shards both nets with ``torch.distributed.fsdp.fully_shard`` (gloo, CPU),
each rank taking its half of every global batch. Rank 0 writes both nets' full latent weights
after the last step, and each quantized layer's grid (Δ, z, l, u), to ``OUT`` (``.npz``). Not collected by pytest; tests/test_fsdp.py launches it.

The pair is made as the experiments make it: ``quantize_`` the ConvNet (HTGE, 2 bits), then
``to_ste`` with its SGD optimizer (weights M(w), learning rates α·η on the quantized weights) before
sharding; FSDP2 replaces the parameters, so each optimizer is rebuilt on the sharded ones with the
same per-parameter learning rates.
"""

import sys

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F

import stequiv as sq
from stequiv.experiments import end_worker_process, setup_distributed
from stequiv.models import ConvNet

STEPS = 6
BATCH = 16
LR = 0.05


def _pair() -> tuple[torch.nn.Module, torch.nn.Module, dict[str, float], dict[str, float]]:
    """The Q̂-net, its STE twin, and each one's learning rate per parameter name."""
    qnet = sq.quantize_(ConvNet(generator=torch.Generator().manual_seed(0)),
                        sq.QuantConfig(estimator="htge", bits=2, scale="absmax"),
                        filter_fn=lambda m, name: name in ConvNet.quantizable_layers)
    opt = torch.optim.SGD(qnet.parameters(), lr=LR)
    twin, twin_opt = sq.to_ste(qnet, opt)
    lrs = {}
    for net, o in ((qnet, opt), (twin, twin_opt)):
        by_id = {id(p): g["lr"] for g in o.param_groups for p in g["params"]}
        lrs[id(net)] = {name: by_id[id(p)] for name, p in net.named_parameters()}
    return qnet, twin, lrs[id(qnet)], lrs[id(twin)]


def _optimizer(net: torch.nn.Module, lrs: dict[str, float]) -> torch.optim.SGD:
    return torch.optim.SGD([{"params": [p], "lr": lrs[name]} for name, p in net.named_parameters()],
                           lr=LR)


def _shard(net: torch.nn.Module) -> None:
    from torch.distributed.fsdp import fully_shard

    for name in ConvNet.quantizable_layers:
        fully_shard(net.get_submodule(name))
    fully_shard(net)


def _full(p: torch.Tensor) -> np.ndarray:
    full = p.full_tensor() if hasattr(p, "full_tensor") else p  # DTensor under FSDP2
    return full.detach().numpy().copy()


def main(out: str) -> None:
    env = setup_distributed("cpu")
    qnet, twin, q_lrs, t_lrs = _pair()
    if env.enabled:
        _shard(qnet)
        _shard(twin)
    opts = [_optimizer(qnet, q_lrs), _optimizer(twin, t_lrs)]
    gen = torch.Generator().manual_seed(1)
    half = BATCH // env.world_size
    for _ in range(STEPS):
        x, y = torch.randn(BATCH, 1, 28, 28, generator=gen), torch.randint(0, 10, (BATCH,), generator=gen)
        mine = slice(env.rank * half, (env.rank + 1) * half)
        for net, opt in zip((qnet, twin), opts, strict=True):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x[mine]), y[mine]).backward()
            opt.step()
    weights = {f"{tag}/{name}": _full(p) for tag, net in (("q", qnet), ("ste", twin))
               for name, p in net.named_parameters()}
    weights |= {f"grid/{name}": np.array([fq.delta.reshape(-1)[0], fq.offset, fq.lower, fq.upper])
                for name, fq in sq.quantized_layers(qnet).items()}  # per-tensor Δ, z, l, u
    if env.is_main:
        np.savez(out, **weights)
    if env.enabled:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    end_worker_process()  # under torchrun: exit without gloo's teardown (see its docstring)
