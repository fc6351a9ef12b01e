"""Paired training: the Q̂-net and its partners in lockstep on one data stream.

A *pair* is the Q̂-net and one partner (its STE twin, or an lr-tweaked copy, ...). Pairs that
train the same Q̂-net form a *group* (``run_group``): the Q̂-net trains once and every partner
steps beside it, which gives each pair's numbers to the bit at a fraction of the cost.

All nets see identical batches in identical order (one seeded ``DistributedSampler``
permutation per epoch, sharded over torchrun ranks so that the global batch is the same for any
number of processes), with identical seeds. Ē and agreement are recorded every ``eval_every``
steps. A checkpoint (all nets, optimizers, schedules, histories, the config) is written atomically
by rank 0 every ``checkpoint_every`` steps; a resumed run (same config, same number of processes)
skips the batches already seen and continues bit-identically.

The data is any :class:`~stequiv.data.Split` (in-memory arrays or an image folder): the engine
deals out indices and asks the split for ``batches(index_lists, epoch, workers)``; tensors move
to ``dist.device`` here, so the same code runs on CPU and CUDA.

With ``switch_fraction = p > 0`` (the paper's ImageNet protocol) only the Q̂-net trains for the
first p of the steps; then the partners are built from its weights *and optimizer state* and
all continue. Alignment is reported from the switch on.

Training-loop habits (``clip_grad_norm``, ``ema_decay``, as :class:`stequiv.qat.Pair` has them):
every net computes its gradients, then the Q̂-net clips by its own norm and every STE partner is
scaled by the Q̂-net's coefficient (:func:`stequiv.qat.clip_grad_norm_pair_`; a Q̂-net partner
clips by its own norm), then every net steps. A weight EMA of every net starts at the switch;
final.json gives Ē and agreement between the EMA copies (``ebar_ema``, ``agreement_ema``) beside
the nets' own.
"""

from __future__ import annotations

import copy
import json
import sys
import time
from collections.abc import Sequence
from math import nan
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ... import qat
from ...qat.internal import slope_spread
from ..config import IMAGE_FOLDER, STE, ExperimentConfig, PairSpec
from ..parallel import Dist, plain_copy, shard_
from ..results import (
    config_diff,
    json_text,
    metrics_csv,
    read_verified,
    remove_partial_writes,
    remove_unlisted,
    results_remedy,
    weights_npz,
    write_with_manifest,
)
from ._batches import TrainData, evaluate, index_batches
from ._checkpoint import load_checkpoint, save_checkpoint
from ._net import Net, NonFiniteError
from ._partners import build_partner, describe_partner, follower, partner_role
from ._setup import build_qnet, estimator_schedule, make_optimizer
from ._timings import PhaseTimes

__all__ = ["check_builds", "run_group", "run_pair", "seconds_per_net_step"]

CHECKPOINT_FORMAT = 2  # one Q̂-net and a list of partners (format 1, unnumbered: one partner)


class _Group:
    """The mutable state of one Q̂-net and its partners (one per spec), trained in lockstep.

    Every spec of a group trains the same Q̂-net (same optimizer and learning-rate factor, same
    seed and data), so the Q̂-net is trained once and each partner follows it: the Q̂-net's
    trajectory, and hence every number, is the one a separate pair would give.
    """

    def __init__(self, config: ExperimentConfig, specs: Sequence[PairSpec], data: TrainData,
                 dist: Dist):
        if len({(s.optimizer, s.lr_factor) for s in specs}) != 1:
            raise ValueError("a group's specs must share the Q̂-net's optimizer and lr factor, got "
                             f"{[(s.run_id, s.optimizer, s.lr_factor) for s in specs]}")
        self.config, self.specs, self.data, self.dist = config, list(specs), data, dist
        self.sharded = config.parallel == "fsdp" and dist.enabled
        self.run_id = "+".join(s.run_id for s in specs)
        self.steps_per_epoch = len(data.train) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"`batch_size` {config.batch_size} exceeds the {len(data.train)} "
                             "training images")
        self.total = self.steps_per_epoch * config.epochs
        self.switch_step = round(self.total * config.switch_fraction)
        model = build_qnet(config, data.train.in_channels, data.train.num_classes, dist.device)
        opt, sched = make_optimizer(config, specs[0].optimizer, model, specs[0].lr_factor,
                                    self.total)
        self.schedule = estimator_schedule(config, self.total)
        # ρ = max/min Q̂′ over the initial weights (every stage): ≤ 1.01 cannot test Point B
        self.slope_spread = slope_spread(
            model, None if self.schedule is None else [e for _, e in self.schedule.stages])
        self.qnet = Net(f"net a (the Q̂-net, {config.estimator}, {specs[0].optimizer})", model,
                        opt, sched, model, follower(self.schedule, None, model, opt, sched, 0))
        self.saved_step: int | None = None  # of the last checkpoint written or resumed from
        self.partners: list[Net] = []
        self.ema: list[torch.nn.Module] = []  # the EMA copies of [Q̂-net, *partners], from the switch
        self.step = 0
        self.histories: list[list[dict[str, float]]] = [[] for _ in self.specs]
        # mean-loss accumulators since the last row: the Q̂-net first, then each partner
        self.loss_sum, self.loss_steps = [0.0] * (1 + len(specs)), [0] * (1 + len(specs))
        if self.switch_step == 0:
            self._switch()
        self._parallelize(self.qnet)

    def _parallelize(self, net: Net) -> None:
        """Several processes: DDP-wrap ``net``, or shard it with FSDP2 (``parallel``: its
        optimizer and schedule are rebuilt on the shards, an unsharded CPU replica kept for
        metrics); then compile its training forward (``compile``)."""
        if self.sharded:
            net.replica = copy.deepcopy(net.model).cpu()
            net.optimizer, net.scheduler = shard_(net.model, net.optimizer, net.scheduler,
                                                  self.dist.device)
            net.wrapped = net.model
        else:
            net.wrapped = self.dist.wrap(net.model)
        if self.config.compile:
            net.wrapped = torch.compile(net.wrapped)

    def _switch(self) -> None:
        q = self.qnet
        source = (q.model, q.optimizer, q.scheduler) if q.replica is None else \
            plain_copy(q.model, q.optimizer, q.scheduler, q.replica)  # whole, on the CPU
        for spec in self.specs:
            model, opt, sched = build_partner(self.config, spec, *source)
            net = Net(f"net b of {spec.run_id} ({partner_role(self.config, spec)})", model, opt, sched, model,
                      follower(self.schedule, spec, model, opt, sched, self.step))
            self._parallelize(net)
            self.partners.append(net)
        if self.config.ema_decay is not None:
            self.ema = [copy.deepcopy(n.view()).eval().requires_grad_(False)
                        for n in (self.qnet, *self.partners)]

    def state(self) -> dict[str, Any]:
        q = self.qnet.state_dict()
        return {"format": CHECKPOINT_FORMAT, "step": self.step, "histories": self.histories,
                "world_size": self.dist.world_size, "config": self.config.to_dict(),
                "run_id": self.run_id, "a": q["net"], "opt_a": q["opt"], "sched_a": q["sched"],
                "loss_sum": self.loss_sum, "loss_steps": self.loss_steps,
                "partners": [net.state_dict() for net in self.partners],
                "ema": [m.state_dict() for m in self.ema]}

    def load(self, s: dict[str, Any], path: Path) -> None:
        if s.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"checkpoint {str(path)!r} has format {s.get('format', 1)}, this stequiv "
                             f"reads format {CHECKPOINT_FORMAT} (one Q̂-net, a list of partners); "
                             "delete it to start this run afresh")
        self._check_origin(s, path)
        if s["world_size"] != self.dist.world_size:
            raise ValueError(f"the checkpoint was written by {s['world_size']} process(es) but this "
                             f"run has {self.dist.world_size}; resume with the same --nproc-per-node")
        self.qnet.follow_to(s["step"])
        self.qnet.load_state_dict({"net": s["a"], "opt": s["opt_a"], "sched": s["sched_a"]})
        self.step, self.histories = s["step"], s["histories"]
        self.saved_step = self.step
        self.loss_sum, self.loss_steps = s["loss_sum"], s["loss_steps"]
        if s["partners"] and not self.partners:
            self._switch()  # from the Q̂-net at the saved step, followers at that step
        for net, saved in zip(self.partners, s["partners"], strict=True):
            net.follow_to(s["step"])
            net.load_state_dict(saved)
        for ema, saved in zip(self.ema, s["ema"], strict=True):
            ema.load_state_dict(saved)

    def _check_origin(self, s: dict[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another run or config (its tensors would not fit, or mislead)."""
        ours = self.config.to_dict()
        keys = config_diff(s.get("config", ours), ours)
        if keys or s.get("run_id", self.run_id) != self.run_id:
            raise ValueError(f"checkpoint {str(path)!r} was written by another run or config "
                             f"(run {s.get('run_id')!r}, keys that differ: {keys}); delete it to "
                             "start this run afresh, or resume with the config that wrote it")

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = (t.to(self.dist.device) for t in batch)
        nets = [self.qnet, *self.partners]
        for i, net in enumerate(nets):
            try:
                self.loss_sum[i] += net.backward(x, y)
            except NonFiniteError as err:
                raise NonFiniteError(self._stopped(f"step {self.step + 1}: {err}", net)) from None
            self.loss_steps[i] += 1
        if self.config.clip_grad_norm is not None:
            self._clip(self.config.clip_grad_norm)
        for net in nets:  # every net's step size checked before any net steps
            try:
                net.check_step_size()
            except NonFiniteError as err:
                raise NonFiniteError(self._stopped(f"step {self.step + 1}: {err}", net)) from None
        for net in nets:
            net.step()
        self._update_ema()
        self.step += 1
        if self.step == self.switch_step:
            self._switch()

    def _clip(self, max_norm: float) -> None:
        """The Q̂-net clipped by its norm, every STE partner by the Q̂-net's coefficient (Pair's
        rule, which keeps the twin), every Q̂-net partner by its own norm."""
        twins = [n.model for n, s in zip(self.partners, self.specs, strict=False) if s.partner == STE]
        qat.clip_grad_norm_pair_(self.qnet.model, twins, max_norm)
        for net, spec in zip(self.partners, self.specs, strict=False):
            if spec.partner != STE:
                torch.nn.utils.clip_grad_norm_(net.model.parameters(), max_norm)

    @torch.no_grad()
    def _update_ema(self) -> None:
        """w̄ ← d·w̄ + (1 − d)·w for every net's EMA copy (none before the switch or without EMA)."""
        decay = self.config.ema_decay
        if decay is None:
            return
        for net, ema in zip((self.qnet, *self.partners), self.ema, strict=False):
            for p, e in zip(net.view().parameters(), ema.parameters(), strict=True):
                e.lerp_(p.detach(), 1.0 - decay)

    def _stopped(self, what: str, net: Net) -> str:
        """The error of a non-finite value: where, what is kept, and the likely causes."""
        kept = ("no checkpoint was written yet" if self.saved_step is None else
                f"the last checkpoint (step {self.saved_step}) is kept, unchanged")
        lr = net.optimizer.param_groups[0]["lr"]
        return (f"{self.run_id}, {what}: the run stops here and {kept}. Likely cause: a learning "
                f"rate too large for this net (its lr is {lr:.3g} now: try a smaller `lr_sgd` / "
                f"`lr_adam` / `lr_tweak`), or an estimator whose gradient is not finite "
                f"({self.config.estimator_spec()}); a NaN in the data gives this too")

    def save(self, path: Path) -> None:
        """Checkpoint to ``path`` (every rank gathers the state, rank 0 writes it), refusing
        weights that are no longer finite."""
        for net in (self.qnet, *self.partners):
            if (name := net.bad_weight()) is not None:
                raise NonFiniteError(self._stopped(
                    f"step {self.step}: the weights of {net.name} are not finite in `{name}`", net))
        state = self.state()
        if self.dist.is_main:
            save_checkpoint(path, state)
        self.saved_step = self.step

    def measure(self) -> list[dict[str, float]]:
        """One ``metrics.csv`` row per partner: each net's mean training loss over the steps it
        trained since the last row (no partner loss before the switch), and Ē/agreement."""
        means = [total / max(n, 1) for total, n in zip(self.loss_sum, self.loss_steps, strict=True)]
        means = [m / self.dist.world_size for m in self.dist.all_sum(means)]
        shared = {"step": self.step, "epoch": self.step / self.steps_per_epoch,
                  "loss_a": means[0], "lr": self.qnet.optimizer.param_groups[0]["lr"]}
        rows = []
        qnet = self.qnet.view() if self.partners else None
        for k, spec in enumerate(self.specs):
            row = dict(shared)
            if self.loss_steps[1 + k]:
                row["loss_b"] = means[1 + k]
            if self.partners:
                al = qat.alignment(qnet, self.partners[k].view(), remap=spec.remap)
                row.update(ebar=al.ebar, agreement=al.agreement)
            self.histories[k].append(row)
            rows.append(row)
        self.loss_sum, self.loss_steps = [0.0] * len(self.loss_sum), [0] * len(self.loss_steps)
        return rows


def _weights_npz(a: torch.nn.Module, b: torch.nn.Module, spec: PairSpec) -> bytes:
    """Every quantized latent weight of the Q̂-net (through M where ``spec.remap``) and partner.

    A layer with one Δ per row (channel or group) is saved in units of its rows' Δ, with its
    boundaries in those units, so that every row's bins coincide in the figure.
    """
    from ...core import remap
    from ...qat.internal import weight_map

    xs, ys, names, bounds = [], [], [], []
    for name, fq in qat.quantized_layers(a).items():
        latent = qat.latent_weight(a, name)
        if spec.remap:  # in the layer's own layout (per tensor, channel or group)
            latent = weight_map(remap, fq.estimator, fq)(latent)
        pair = [latent.detach().cpu(), qat.latent_weight(b, name).detach().cpu()]
        q = fq.quantizer()
        edges = q.boundary_points()
        if q.delta_array.ndim:
            delta = torch.from_numpy(q.delta_array)[:, None]
            pair = [fq.layout.rows(w.double()) / delta for w in pair]
            edges = edges[0] / q.delta_array[0]
        xs.append(pair[0].numpy())
        ys.append(pair[1].numpy())
        names.append(name)
        bounds.append(edges)
    return weights_npz(xs, ys, names, bounds)


def run_group(config: ExperimentConfig, specs: Sequence[PairSpec], data: TrainData,
              out_dirs: Sequence[Path], dist: Dist, *, progress: bool = True,
              label: str | None = None, phases: PhaseTimes | None = None) -> list[dict[str, Any]]:
    """Train one Q̂-net with a partner per spec (results of ``specs[k]`` in ``out_dirs[k]``).

    ``label`` names the group on its progress bar (e.g. ``group 2 of 4``; default: its run ids).
    ``phases``, if given, receives the seconds of ``set-up``, ``train``, ``evaluate`` and
    ``write results`` (none for a group already finished).

    The specs must share the optimizer and learning-rate factor (the Q̂-net they train); the
    checkpoint lives in ``out_dirs[0]`` and a group resumes from it. Returns each final.json.
    """
    out_dirs = [Path(d) for d in out_dirs]
    final_paths = [d / "final.json" for d in out_dirs]
    if dist.is_main:  # what killed writes left (before their manifest): never read, dropped
        for out_dir in (d for d in out_dirs if d.is_dir()):
            stale = remove_partial_writes(out_dir) + remove_unlisted(out_dir, results_remedy(out_dir))
            for path in stale:
                print(f"note: removed {path} (written by a stopped run, not in its manifest)",
                      file=sys.stderr)
    dist.barrier()
    if all(p.exists() for p in final_paths):
        return [json.loads(read_verified(p, results_remedy(p.parent), required=False))
                for p in final_paths]
    phases = PhaseTimes() if phases is None else phases
    with phases.phase("set-up"):
        torch.manual_seed(config.seed)
        group = _Group(config, specs, data, dist)
        ckpt = out_dirs[0] / "checkpoint.pt"
        if ckpt.exists():
            group.load(load_checkpoint(ckpt, dist.device), ckpt)
    started = time.perf_counter()
    with phases.phase("train"):
        _train(group, ckpt, progress=progress, label=label)
    views = [net.view() for net in (group.qnet, *group.partners)]  # whole weights
    with phases.phase("evaluate"):
        finals = _finish(group, time.perf_counter() - started, views)
    with phases.phase("write results"):
        if dist.is_main:
            # the checkpoint's folder last: until its manifest lists the results instead of the
            # checkpoint, a killed finish resumes from the checkpoint (and writes them all again)
            for k in reversed(range(len(out_dirs))):
                write_with_manifest(out_dirs[k], {
                    "metrics.csv": metrics_csv(group.histories[k]),
                    "weights.npz": _weights_npz(views[0], views[1 + k], group.specs[k]),
                    "final.json": json_text(finals[k])})
            ckpt.unlink(missing_ok=True)
    dist.barrier()
    return finals


def _train(group: _Group, ckpt: Path, *, progress: bool, label: str | None) -> None:
    """Step ``group`` to its last step: Ē/agreement every ``eval_every`` steps, a checkpoint every
    ``checkpoint_every`` (resuming where ``group.step`` stands)."""
    config, dist, data = group.config, group.dist, group.data
    bar = tqdm(total=group.total, initial=group.step, desc=label or group.run_id, leave=False,
               disable=not (progress and dist.is_main), dynamic_ncols=True)
    while group.step < group.total:
        epoch, skip = divmod(group.step, group.steps_per_epoch)
        todo = index_batches(len(data.train), config, dist, epoch)[skip:]
        for batch in data.train.batches(todo, epoch, config.workers):
            group.train_step(batch)
            bar.update(1)
            if group.step % config.eval_every == 0 or group.step == group.total:
                rows = group.measure()
                bar.set_postfix(loss_q=f"{rows[0]['loss_a']:.3f}",
                                loss_b=f"{rows[0].get('loss_b', nan):.3f}",
                                ebar=f"{rows[0].get('ebar', nan):.2e}")
            if group.step % config.checkpoint_every == 0 and group.step < group.total:
                group.save(ckpt)
                dist.barrier()
            if group.step == group.total:
                break
    bar.close()


def check_builds(config: ExperimentConfig, groups: Sequence[Sequence[PairSpec]],
                 data: TrainData) -> None:
    """Build every group's Q̂-net and partners (as at the switch step) on the CPU in this
    process, and drop them: a layer the quantizer refuses (e.g. its ``group_size``), an estimator
    that does not fit ``bits``, a schedule stage or a map M that does not exist is refused here,
    before a results folder is claimed, not after."""
    cpu = Dist(0, 1, torch.device("cpu"))
    for specs in groups:
        group = _Group(config, specs, data, cpu)
        if not group.partners:
            group._switch()


def run_pair(config: ExperimentConfig, spec: PairSpec, data: TrainData, out_dir: Path,
             dist: Dist, *, progress: bool = True) -> dict[str, Any]:
    """Train one pair (resuming from ``out_dir/checkpoint.pt`` if present); returns final.json."""
    return run_group(config, [spec], data, [out_dir], dist, progress=progress)[0]


def _finish(group: _Group, seconds: float, views: list[torch.nn.Module]) -> list[dict[str, Any]]:
    """final.json of every spec; the Q̂-net is evaluated once for all of them. ``views``: the
    Q̂-net and each partner with whole weights (:meth:`Net.view`), for Ē and agreement."""
    config = group.config
    # Decoded image-folder batches are large (3 x 224 x 224 floats each) and the DataLoader
    # workers prefetch several: evaluate those in training-size batches. In-memory splits: 256
    # (ResNet-20 on a CPU evaluates 10,000 images in 5.4 s at 256, 10.5 s at 1,000: the
    # activations of larger batches leave the cache).
    batch = config.batch_size if config.dataset == IMAGE_FOLDER else 256
    opts = {"batch": batch, "workers": config.workers}

    def scores(model: torch.nn.Module, label: str) -> dict[str, Any]:
        tr = evaluate(model, group.data.train.eval_view(), group.dist, **opts)
        va = evaluate(model, group.data.val, group.dist, **opts)
        return {"label": label, "train_acc": tr["acc"], "train_loss": tr["loss"],
                "val_acc": va["acc"], "val_loss": va["loss"]}

    a = group.qnet.model
    qnet = scores(a, f"Q̂ ({config.estimator})")
    finals = []
    for k, (spec, partner, view) in enumerate(zip(group.specs, group.partners, views[1:], strict=True)):
        b = partner.model
        al = qat.alignment(views[0], view, remap=spec.remap)
        ema = qat.alignment(group.ema[0], group.ema[1 + k], remap=spec.remap) if group.ema else None
        lr = config.lr_sgd if spec.optimizer == "sgd" else config.lr_adam
        finals.append({
            "run_id": spec.run_id, "optimizer": spec.optimizer, "experiment": spec.experiment,
            "partner": spec.partner, "lr": lr * spec.lr_factor, "lr_factor": spec.lr_factor,
            "remap": spec.remap, "ebar": al.ebar, "agreement": al.agreement,
            "layers": {k: vars(v) for k, v in al.layers.items()},
            "nets": {"a": qnet, "b": scores(b, describe_partner(config, spec, a))},
            "steps": group.total, "switch_step": group.switch_step,
            "seconds": seconds, "trained_with": [s.run_id for s in group.specs],
            "slope_spread": group.slope_spread,
            "world_size": group.dist.world_size,
            "clip_grad_norm": config.clip_grad_norm, "ema_decay": config.ema_decay,
            "ebar_ema": ema and ema.ebar, "agreement_ema": ema and ema.agreement,
        })
    return finals


def seconds_per_net_step(config: ExperimentConfig, specs: Sequence[PairSpec], data: TrainData,
                         dist: Dist, *, steps: int = 3) -> float:
    """Wall-clock seconds of one training step of one net of this group, on this machine and
    device: the mean over ``steps`` steps of the first epoch (after one warm-up step), divided by
    the nets that trained. Writes nothing; for estimates before a run (``stequiv reproduce``)."""
    group = _Group(config, specs, data, dist)
    todo = index_batches(len(data.train), config, dist, 0)[:steps + 1]
    batches = iter(data.train.batches(todo, 0, config.workers))
    group.train_step(next(batches))
    started, done = time.perf_counter(), 0
    for batch in batches:
        group.train_step(batch)
        done += 1
    return (time.perf_counter() - started) / max(done, 1) / (1 + len(group.partners))
