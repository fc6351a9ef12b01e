"""Paired training: the Q̂-net and its partner in lockstep on one data stream.

Both nets see identical batches in identical order (one seeded ``DistributedSampler``
permutation per epoch, sharded over torchrun ranks so that the global batch is the same for any
number of processes), with identical seeds. Ē and agreement are recorded every ``eval_every``
steps. A checkpoint (both nets, optimizers, schedules, history, the config) is written atomically
by rank 0 every ``checkpoint_every`` steps; a resumed run (same config, same number of processes)
skips the batches already seen and continues bit-identically.

The data is any :class:`~stequiv.data.Split` (in-memory arrays or an image folder): the engine
deals out indices and asks the split for ``batches(index_lists, epoch, workers)``; tensors move
to ``dist.device`` here, so the same code runs on CPU and CUDA.

With ``switch_fraction = p > 0`` (the paper's ImageNet protocol) only the Q̂-net trains for the
first p of the steps; then the partner is built from its weights *and optimizer state* and both
continue. Alignment is reported from the switch on.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from dataclasses import dataclass
from math import nan
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import BatchSampler, DistributedSampler
from tqdm.auto import tqdm

from .. import qat
from ..data import Split
from ._config import IMAGE_FOLDER, ExperimentConfig
from ._distributed import Dist
from ._setup import PairSpec, build_partner, build_qnet, describe_partner, make_optimizer

__all__ = ["TrainData", "run_pair"]


@dataclass(frozen=True)
class TrainData:
    """The train and validation splits."""

    train: Split
    val: Split


def atomic_write(path: Path, data: bytes | str) -> None:
    """Write via a temporary file in the same folder and ``os.replace`` (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def _index_batches(n: int, config: ExperimentConfig, dist: Dist, epoch: int) -> list[list[int]]:
    """This rank's share of each global batch of ``epoch`` (same global batches for any world size)."""
    if config.batch_size % dist.world_size:
        raise ValueError(f"`batch_size` {config.batch_size} must be divisible by the number of "
                         f"processes {dist.world_size}")
    per_rank = config.batch_size // dist.world_size
    # One permutation of the data per epoch, dealt out to ranks round-robin: rank r's k-th
    # local batch holds positions r, r+W, ... of global batch k.
    sampler = DistributedSampler(range(n), num_replicas=dist.world_size, rank=dist.rank,
                                 shuffle=True, seed=config.seed, drop_last=True)
    sampler.set_epoch(epoch)
    return list(BatchSampler(sampler, per_rank, drop_last=True))


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: Split, dist: Dist, batch: int = 1000,
             workers: int = 0) -> dict[str, float]:
    """Accuracy and mean cross-entropy over ``data`` (sharded over ranks, then summed).

    BatchNorm buffers are first taken from rank 0 (under DDP each rank's running statistics
    drift by its own last local update), so every shard is evaluated by the same model.
    """
    was_training = model.training
    model.eval()
    dist.broadcast_buffers(model)
    loss = correct = 0.0
    shards = [list(range(start, min(start + batch, len(data))))
              for start in range(dist.rank * batch, len(data), batch * dist.world_size)]
    for x, y in data.batches(shards, 0, workers):
        x, y = x.to(dist.device), y.to(dist.device)
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
    loss, correct = dist.all_sum([loss, correct])
    model.train(was_training)
    return {"acc": correct / len(data), "loss": loss / len(data)}


class _Pair:
    """The mutable state of one paired run."""

    def __init__(self, config: ExperimentConfig, spec: PairSpec, data: TrainData, dist: Dist):
        self.config, self.spec, self.data, self.dist = config, spec, data, dist
        self.steps_per_epoch = len(data.train) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"`batch_size` {config.batch_size} exceeds the {len(data.train)} "
                             "training images")
        self.total = self.steps_per_epoch * config.epochs
        self.switch_step = round(self.total * config.switch_fraction)
        self.a = build_qnet(config, data.train.in_channels, data.train.num_classes, dist.device)
        self.opt_a, self.sched_a = make_optimizer(config, spec.optimizer, self.a, spec.lr_factor,
                                                  self.total)
        self.b = self.opt_b = self.sched_b = None
        self.step = 0
        self.history: list[dict[str, float]] = []
        self.loss_sum, self.loss_steps = [0.0, 0.0], [0, 0]  # Q̂-net, partner: since last measure
        if self.switch_step == 0:
            self._switch()
        self.ddp_a, self.ddp_b = dist.wrap(self.a), (dist.wrap(self.b) if self.b else None)

    def _switch(self) -> None:
        self.b, self.opt_b, self.sched_b = build_partner(self.config, self.spec, self.a,
                                                         self.opt_a, self.sched_a)

    def state(self) -> dict[str, Any]:
        s = {"step": self.step, "history": self.history, "world_size": self.dist.world_size,
             "config": self.config.to_dict(), "run_id": self.spec.run_id,
             "a": self.a.state_dict(), "opt_a": self.opt_a.state_dict(),
             "sched_a": self.sched_a.state_dict(), "loss_sum": self.loss_sum,
             "loss_steps": self.loss_steps}
        if self.b is not None:
            s.update(b=self.b.state_dict(), opt_b=self.opt_b.state_dict(),
                     sched_b=self.sched_b.state_dict())
        return s

    def load(self, s: dict[str, Any], path: Path) -> None:
        self._check_origin(s, path)
        if s["world_size"] != self.dist.world_size:
            raise ValueError(f"the checkpoint was written by {s['world_size']} process(es) but this "
                             f"run has {self.dist.world_size}; resume with the same --nproc-per-node")
        self.a.load_state_dict(s["a"])
        self.opt_a.load_state_dict(s["opt_a"])
        self.sched_a.load_state_dict(s["sched_a"])
        self.step, self.history = s["step"], s["history"]
        self.loss_sum, self.loss_steps = s["loss_sum"], s["loss_steps"]
        if "b" in s:
            if self.b is None:
                self._switch()
                self.ddp_b = self.dist.wrap(self.b)
            self.b.load_state_dict(s["b"])
            self.opt_b.load_state_dict(s["opt_b"])
            self.sched_b.load_state_dict(s["sched_b"])

    def _check_origin(self, s: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another run or config (its tensors would not fit, or mislead)."""
        ours = json.loads(json.dumps(self.config.to_dict()))
        theirs = json.loads(json.dumps(s.get("config", ours)))
        if theirs != ours or s.get("run_id", self.spec.run_id) != self.spec.run_id:
            keys = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            raise ValueError(f"checkpoint {str(path)!r} was written by another run or config "
                             f"(run {s.get('run_id')!r}, keys that differ: {keys}); delete it to "
                             "start this pair afresh, or resume with the config that wrote it")

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = (t.to(self.dist.device) for t in batch)
        nets = [(self.ddp_a, self.opt_a, self.sched_a)]
        if self.b is not None:
            nets.append((self.ddp_b, self.opt_b, self.sched_b))
        for i, (net, opt, sched) in enumerate(nets):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            sched.step()
            self.loss_sum[i] += loss.item()
            self.loss_steps[i] += 1
        self.step += 1
        if self.step == self.switch_step:
            self._switch()
            self.ddp_b = self.dist.wrap(self.b)

    def measure(self) -> dict[str, float]:
        """One row of ``metrics.csv``: each net's mean training loss over the steps it trained since
        the last row (the partner's row has no loss before the switch), and Ē/agreement."""
        means = [total / max(n, 1) for total, n in zip(self.loss_sum, self.loss_steps, strict=True)]
        la, lb = (m / self.dist.world_size for m in self.dist.all_sum(means))
        row = {"step": self.step, "epoch": self.step / self.steps_per_epoch, "loss_a": la,
               "lr": self.opt_a.param_groups[0]["lr"]}
        if self.loss_steps[1]:
            row["loss_b"] = lb
        if self.b is not None:
            al = qat.alignment(self.a, self.b, remap=self.spec.remap)
            row.update(ebar=al.ebar, agreement=al.agreement)
        self.loss_sum, self.loss_steps = [0.0, 0.0], [0, 0]
        self.history.append(row)
        return row


def _metrics_csv(history: list[dict[str, float]]) -> str:
    buf = io.StringIO()
    cols = ["step", "epoch", "ebar", "agreement", "loss_a", "loss_b", "lr"]
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({c: row.get(c, "") for c in cols})
    return buf.getvalue()


def _weights_npz(pair: _Pair) -> bytes:
    layers_a = qat.quantized_layers(pair.a)
    xs, ys, idx, names, extra = [], [], [], [], {}
    for i, (name, fq) in enumerate(layers_a.items()):
        w_a = qat.latent_weight(pair.a, name).detach().cpu().numpy()
        if pair.spec.remap:
            from ..core import remap

            w_a = remap(fq.estimator, fq.quantizer(), w_a)
        xs.append(w_a.ravel().astype(np.float32))
        ys.append(qat.latent_weight(pair.b, name).detach().cpu().numpy().ravel().astype(np.float32))
        idx.append(np.full(w_a.size, i, dtype=np.int16))
        names.append(name)
        extra[f"boundaries_{i}"] = fq.quantizer().boundary_points().astype(np.float64)
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.concatenate(xs), y=np.concatenate(ys),
                        layer=np.concatenate(idx), layer_names=np.array(names), **extra)
    return buf.getvalue()


def run_pair(config: ExperimentConfig, spec: PairSpec, data: TrainData, out_dir: Path,
             dist: Dist, *, progress: bool = True) -> dict[str, Any]:
    """Train one pair (resuming from ``out_dir/checkpoint.pt`` if present); returns final.json."""
    out_dir = Path(out_dir)
    final_path = out_dir / "final.json"
    if final_path.exists():
        return json.loads(final_path.read_text())
    torch.manual_seed(config.seed)
    pair = _Pair(config, spec, data, dist)
    ckpt = out_dir / "checkpoint.pt"
    if ckpt.exists():
        pair.load(torch.load(ckpt, map_location=dist.device, weights_only=False), ckpt)
    started = time.perf_counter()
    bar = tqdm(total=pair.total, initial=pair.step, desc=spec.run_id, leave=False,
               disable=not (progress and dist.is_main), dynamic_ncols=True)
    while pair.step < pair.total:
        epoch, skip = divmod(pair.step, pair.steps_per_epoch)
        todo = _index_batches(len(data.train), config, dist, epoch)[skip:]
        for batch in data.train.batches(todo, epoch, config.workers):
            pair.train_step(batch)
            bar.update(1)
            if pair.step % config.eval_every == 0 or pair.step == pair.total:
                row = pair.measure()
                bar.set_postfix(loss_q=f"{row['loss_a']:.3f}", loss_b=f"{row.get('loss_b', nan):.3f}",
                                ebar=f"{row.get('ebar', nan):.2e}")
            if pair.step % config.checkpoint_every == 0 and pair.step < pair.total:
                if dist.is_main:
                    buf = io.BytesIO()
                    torch.save(pair.state(), buf)
                    atomic_write(ckpt, buf.getvalue())
                dist.barrier()
            if pair.step == pair.total:
                break
    bar.close()
    final = _finish(pair, spec, time.perf_counter() - started)
    if dist.is_main:
        atomic_write(out_dir / "metrics.csv", _metrics_csv(pair.history))
        atomic_write(out_dir / "weights.npz", _weights_npz(pair))
        atomic_write(final_path, json.dumps(final, indent=2))
        ckpt.unlink(missing_ok=True)
    dist.barrier()
    return final


def _finish(pair: _Pair, spec: PairSpec, seconds: float) -> dict[str, Any]:
    al = qat.alignment(pair.a, pair.b, remap=spec.remap)
    lr = pair.config.lr_sgd if spec.optimizer == "sgd" else pair.config.lr_adam
    nets = {}
    # Decoded image-folder batches are large (3 x 224 x 224 floats each) and the DataLoader
    # workers prefetch several: evaluate those in training-size batches.
    batch = pair.config.batch_size if pair.config.dataset == IMAGE_FOLDER else 1000
    opts = {"batch": batch, "workers": pair.config.workers}
    for key, model, label in (("a", pair.a, f"Q̂ ({pair.config.estimator})"),
                              ("b", pair.b, describe_partner(spec, pair.a))):
        tr = evaluate(model, pair.data.train.eval_view(), pair.dist, **opts)
        va = evaluate(model, pair.data.val, pair.dist, **opts)
        nets[key] = {"label": label, "train_acc": tr["acc"], "train_loss": tr["loss"],
                     "val_acc": va["acc"], "val_loss": va["loss"]}
    final: dict[str, Any] = {
        "run_id": spec.run_id, "optimizer": spec.optimizer, "experiment": spec.experiment,
        "partner": spec.partner, "lr": lr * spec.lr_factor, "lr_factor": spec.lr_factor,
        "remap": spec.remap, "ebar": al.ebar, "agreement": al.agreement,
        "layers": {k: vars(v) for k, v in al.layers.items()}, "nets": nets,
        "steps": pair.total, "switch_step": pair.switch_step, "seconds": seconds,
        "world_size": pair.dist.world_size,
    }
    return final
