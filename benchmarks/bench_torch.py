"""The PyTorch side's speed (issue 3), every ratio against its reference timed in the same run.

* fake-quant forward+backward of a 25.6 M-element weight: STE ≤ 1.1×, HTGE and DSQ ≤ 1.5×
  ``torch.fake_quantize_per_tensor_affine`` forward+backward on the same tensor;
* a training step of the paper's MNIST ConvNet (batch 64, SGD + momentum, conv weights quantized
  with HTGE, 2 bits, ``scale="init-bound"`` as in ``stequiv.experiments.engine.build_qnet``)
  ≤ 1.10× the float ConvNet's step; the same step quantized with Brevitas and with torchao
  (2-bit weights, STE) where those are installed (benchmark environment only);
* ``to_ste`` of ResNet-50 (25.6 M parameters, every conv quantized) with SGD momentum state ≤ 1 s;
* compiled (issue 12, 2 threads): fake-quant forward+backward of every catalogue estimator under
  ``torch.compile(fullgraph=True)`` ≤ 3 clamp passes (STE ≤ 2.5), i.e. ≤ 0.7× the native op; a
  clamp pass is ``torch.clamp(w, out=buf)`` on the same tensor, one memory-bound read and write;
  the compiled quantized ConvNet step ≤ 1.05× the compiled float step.

* the same ConvNet step in bfloat16 (model and batch) ≤ 1.1× the bfloat16 float step (issue 12).

Run: .venv/bin/python benchmarks/bench_torch.py [--compiled [ESTIMATOR ...] | --eager-steps
[--two-threads]] (``make bench`` runs every benchmark; ``--compiled`` only the compiled rows, for
the listed estimators or all of them; ``--eager-steps`` only the eager ConvNet steps, float32 and
bfloat16, with one intra-op thread or two)
"""

from __future__ import annotations

import contextlib
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

import stequiv as sq
from _bench import Row, compare, interleaved, markdown, single
from stequiv.models import ConvNet, resnet50
from stequiv.qat import WeightFakeQuant

N = 25_600_000
REPEAT = 7
STEPS = 10  # ConvNet steps per timed call
STEP_REPEAT = 15
QUANTIZER = sq.UniformQuantizer.symmetric(2, 1.0)
CONVS = ConvNet.quantizable_layers


# ------------------------------------------------------------------------- fake-quant op
@contextlib.contextmanager
def _threads(threads: int | None):
    """torch's intra-op threads set to ``threads`` (None: unchanged). One thread shows the same
    comparison free of OpenMP wake-ups, each of which can cost a scheduler time slice while other
    work holds the cores of a shared machine."""
    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
        yield f", {threads} thread" if threads else ""
    finally:
        torch.set_num_threads(default)


def _fake_quant(threads: int | None = None) -> list[Row]:
    with _threads(threads) as label:
        return _fake_quant_rows(label)


def fake_quant_case(device: str = "cpu"):
    """The 25.6 M-element weight, a fwd+bwd wrapper ``fn -> call`` and the native op's call."""
    gen = torch.Generator().manual_seed(0)
    w = (torch.rand(N, generator=gen) * 2 - 1).to(device).requires_grad_()
    upstream = torch.randn(N, generator=gen).to(device)
    delta = float(QUANTIZER.delta_array)

    def fwd_bwd(fn):
        def call() -> None:
            w.grad = None
            fn(w).backward(upstream)
        return call

    return w, fwd_bwd, fwd_bwd(lambda x: torch.fake_quantize_per_tensor_affine(
        x, delta, 0, QUANTIZER.lower, QUANTIZER.upper))


def _fake_quant_rows(label: str) -> list[Row]:
    w, fwd_bwd, native = fake_quant_case()
    fns = {"native": native}
    for name in ("ste", "htge", "dsq"):
        fns[name] = fwd_bwd(WeightFakeQuant(sq.get_estimator(name), QUANTIZER, w.shape))
    times = interleaved(fns, REPEAT)
    limits = {"ste": 1.1, "htge": 1.5, "dsq": 1.5}
    return [compare(f"fake-quant fwd+bwd {name}, 25.6 M{label}", times[name],
                    "torch.fake_quantize_per_tensor_affine fwd+bwd", times["native"],
                    f"≤ {limit}×", limit) for name, limit in limits.items()]


# ----------------------------------------------------------------------- ConvNet step
def _convnet() -> ConvNet:
    return ConvNet(generator=torch.Generator().manual_seed(0))


def _stequiv_convnet() -> nn.Module:
    model = _convnet()
    cfg = sq.QuantConfig(estimator="htge", bits=2, offset=0.5, scale="init-bound")
    return sq.quantize_(model, cfg, filter_fn=lambda m, name: name in CONVS)


def _brevitas_convnet() -> nn.Module | str:
    try:
        from brevitas import nn as qnn
    except ImportError as err:
        return f"Brevitas not installed ({err.name})"
    model = _convnet()
    for name in CONVS:
        conv = getattr(model, name)
        quant = qnn.QuantConv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                weight_bit_width=2)  # Int8WeightPerTensorFloat at 2 bits, STE
        quant.load_state_dict(conv.state_dict(), strict=False)
        setattr(model, name, quant)
    return model


class _TorchaoWeight(nn.Module):
    """torchao's fake quantizer on a conv weight, one row per output channel."""

    def __init__(self, quantizer: nn.Module):
        super().__init__()
        self.quantizer = quantizer

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.quantizer(w.reshape(w.shape[0], -1)).reshape(w.shape)


def _torchao_convnet() -> nn.Module | str:
    try:
        from torchao.quantization.qat import IntxFakeQuantizeConfig, IntxFakeQuantizer
    except ImportError as err:
        return f"torchao QAT not available ({err})"
    # torchao 0.18 has FakeQuantizedLinear/Embedding but no conv module, and per-token/channel/
    # group granularity only: its IntxFakeQuantizer (STE) goes on each conv weight, per channel.
    config = IntxFakeQuantizeConfig(torch.int2, "per_channel")
    model = _convnet()
    for name in CONVS:
        parametrize.register_parametrization(getattr(model, name), "weight",
                                             _TorchaoWeight(IntxFakeQuantizer(config)))
    return model


def _stepper(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def steps() -> None:
        for _ in range(STEPS):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return steps


def _convnet_steps(threads: int | None = None) -> tuple[list[Row], list[str]]:
    with _threads(threads) as label:
        return _convnet_rows(label)


def _convnet_rows(label: str) -> tuple[list[Row], list[str]]:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    models = {"float": _convnet(), "stequiv HTGE": _stequiv_convnet(),
              "Brevitas": _brevitas_convnet(), "torchao": _torchao_convnet()}
    skipped = [f"ConvNet step, {name}: skipped, {m}" for name, m in models.items()
               if isinstance(m, str)]
    fns = {name: _stepper(m, x, y) for name, m in models.items() if not isinstance(m, str)}
    times = interleaved(fns, STEP_REPEAT)
    per_step = {name: [t / STEPS for t in ts] for name, ts in times.items()}
    rows = []
    for name in fns:
        if name != "float":
            limit = 1.10 if name.startswith("stequiv") else None
            rows.append(compare(f"ConvNet step (batch 64, 2-bit convs), {name}{label}",
                                per_step[name], "float ConvNet step", per_step["float"],
                                "≤ 1.10×" if limit else "report", limit))
    if "stequiv HTGE" in per_step:
        for other in ("Brevitas", "torchao"):
            if other in per_step:
                rows.append(compare(f"ConvNet step, stequiv HTGE vs {other}{label}",
                                    per_step["stequiv HTGE"], f"{other} step", per_step[other],
                                    "< 1× (aim)"))
    return rows, skipped


def _bfloat16_steps(threads: int | None = None) -> list[Row]:
    """The ConvNet step with model and batch in bfloat16, quantized vs float (issue 12: ≤ 1.1×)."""
    with _threads(threads) as label:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(64, 1, 28, 28, generator=gen).to(torch.bfloat16)
        y = torch.randint(0, 10, (64,), generator=gen)
        models = {"float": _convnet().to(torch.bfloat16),
                  "stequiv HTGE": _stequiv_convnet().to(torch.bfloat16)}
        times = interleaved({name: _stepper(m, x, y) for name, m in models.items()}, STEP_REPEAT)
        per_step = {name: [t / STEPS for t in ts] for name, ts in times.items()}
        return [compare(f"ConvNet step bfloat16, stequiv HTGE{label}", per_step["stequiv HTGE"],
                        "bfloat16 float step", per_step["float"], "≤ 1.1×", 1.1)]


# ----------------------------------------------------------------------------- to_ste
def _to_ste() -> list[Row]:
    model = resnet50(generator=torch.Generator().manual_seed(0))
    cfg = sq.QuantConfig(estimator="htge", bits=2, offset=0.5, scale="init-bound")
    sq.quantize_(model, cfg, filter_fn=lambda m, name: isinstance(m, nn.Conv2d))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    F.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    opt.step()  # momentum buffers to map
    start = time.perf_counter()
    sq.to_ste(model, opt)
    first = time.perf_counter() - start
    times = interleaved({"to_ste": lambda: sq.to_ste(model, opt)}, 3)["to_ste"]
    n = sum(p.numel() for p in model.parameters())
    return [single(f"to_ste ResNet-50 ({n / 1e6:.1f} M params) + SGD momentum", times,
                   "≤ 1 s", 1.0),
            single("to_ste ResNet-50, first call in this process", [first], "≤ 1 s", 1.0)]


# --------------------------------------------------------------------------- compiled
COMPILED_THREADS = 2


def _clamp_pass(w: torch.Tensor):
    out = torch.empty_like(w.detach())
    return lambda: torch.clamp(w.detach(), -1.0, 1.0, out=out)


def _compiled_fake_quant(names: list[str]) -> list[Row]:
    # One compiled WeightFakeQuant per estimator: the same forward code, a recompile for each
    # (dynamo treats a module's ints as static); a model compiled whole inlines its layers instead.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, len(names) + 1)
    w, fwd_bwd, native = fake_quant_case()
    fns = {"clamp": _clamp_pass(w), "native": native}
    for name in names:
        est = sq.get_estimator(name)
        q = sq.BinaryQuantizer() if est.kind == "binary" else QUANTIZER
        fns[name] = fwd_bwd(torch.compile(WeightFakeQuant(est, q, w.shape), fullgraph=True))
    times = interleaved(fns, REPEAT)
    rows = [compare("torch.fake_quantize_per_tensor_affine fwd+bwd, 25.6 M", times["native"],
                    "clamp pass", times["clamp"], "report (clamp passes)")]
    for name in names:
        passes = 2.5 if name == "ste" else 3.0
        rows.append(compare(f"compiled fake-quant fwd+bwd {name}, 25.6 M", times[name],
                            "clamp pass", times["clamp"], f"≤ {passes} passes", passes))
        rows.append(compare(f"compiled fake-quant fwd+bwd {name} vs native", times[name],
                            "native fwd+bwd", times["native"], "≤ 0.7×", 0.7))
    return rows


def _compiled_convnet() -> list[Row]:
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    models = {"float": _convnet(), "stequiv HTGE": _stequiv_convnet()}
    fns = {name: _stepper(torch.compile(m, fullgraph=True), x, y) for name, m in models.items()}
    fns |= {f"eager {name}": _stepper(m, x, y) for name, m in
            (("float", _convnet()), ("stequiv HTGE", _stequiv_convnet()))}
    per_step = {name: [t / STEPS for t in ts] for name, ts in interleaved(fns, STEP_REPEAT).items()}
    return [compare("ConvNet step compiled, stequiv HTGE", per_step["stequiv HTGE"],
                    "compiled float step", per_step["float"], "≤ 1.05×", 1.05),
            compare("ConvNet step eager, stequiv HTGE", per_step["eager stequiv HTGE"],
                    "eager float step", per_step["eager float"], "≤ 1.10×", 1.10),
            compare("ConvNet step compiled float", per_step["float"],
                    "eager float step", per_step["eager float"], "report")]


def compiled(names: list[str] | None = None) -> list[Row]:
    """The compiled rows (2 threads), for ``names`` or every catalogue estimator."""
    with _threads(COMPILED_THREADS):
        return _compiled_fake_quant(names or sq.list_estimators()) + _compiled_convnet()


def run() -> tuple[list[Row], list[str]]:
    rows, notes = _convnet_steps()
    rows_1, _ = _convnet_steps(threads=1)
    return (_fake_quant() + _fake_quant(threads=1) + rows + rows_1 + _bfloat16_steps()
            + _bfloat16_steps(threads=1) + _to_ste() + compiled(), notes)


def main() -> None:
    if "--eager-steps" in sys.argv:  # the eager ConvNet rows only: float32 and bfloat16
        threads = COMPILED_THREADS if "--two-threads" in sys.argv else 1
        rows, notes = _convnet_steps(threads)
        print(markdown(rows + _bfloat16_steps(threads)))
        return
    if "--compiled" in sys.argv:
        print(markdown(compiled(sys.argv[sys.argv.index("--compiled") + 1:])))
        return
    rows, notes = run()
    print(markdown(rows))
    for note in notes:
        print(f"\n{note}")


if __name__ == "__main__":
    main()
