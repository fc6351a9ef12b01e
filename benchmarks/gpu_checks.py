"""Issue 12 item 5: the CUDA checks, for a session that is lent a GPU (not run in CI, no GPU there).

One short script, about 3–5 minutes on one GPU (most of it inductor/Triton compiling):

1. fake-quant forward+backward of a 25.6 M-element float32 weight under
   ``torch.compile(fullgraph=True)``, every catalogue estimator, against a compiled float copy of
   the same tensor (``w * 1``: one read, one write, the memory-bound floor) and against
   ``torch.fake_quantize_per_tensor_affine``;
2. images/s of a lockstep pair (Q̂-net HTGE 2-bit and its STE twin, SGD momentum) at batch 256:
   the MNIST ConvNet and ResNet-50 (224×224), eager and compiled;
3. tokens/s of a byte-level ``transformer-small`` pair (every Linear quantized), eager.

Every time is the median of interleaved repetitions after a warm-up, CUDA-synchronised. Run:

    cd benchmarks && PYTHONPATH=../src:. python gpu_checks.py > gpu_checks.md

and paste the table into docs/benchmarks.md with the GPU's name (printed first).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

import stequiv as sq
from bench_torch import QUANTIZER, fake_quant_case
from stequiv.models import ConvNet, build_model, resnet50

REPEAT = 7
DEVICE = torch.device("cuda")


def _median_ms(fns: dict[str, Callable[[], object]], repeat: int = REPEAT) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for k in range(repeat + 1):
        for name, fn in fns.items():
            torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            if k:
                times[name].append(time.perf_counter() - start)
    return {k: 1e3 * statistics.median(v) for k, v in times.items()}


def fake_quant() -> list[str]:
    w, fwd_bwd, native = fake_quant_case("cuda")
    fns = {"float copy": fwd_bwd(torch.compile(lambda x: x * 1.0)), "native": native}
    for name in sq.list_estimators():
        est = sq.get_estimator(name)
        q = sq.BinaryQuantizer() if est.kind == "binary" else QUANTIZER
        fq = sq.qat.WeightFakeQuant(est, q, w.shape).to(DEVICE)
        fns[name] = fwd_bwd(torch.compile(fq, fullgraph=True))
    ms = _median_ms(fns)
    lines = ["| fake-quant fwd+bwd, 25.6 M, compiled | ms | × float copy | × native |",
             "|---|---|---|---|"]
    for name, t in ms.items():
        lines.append(f"| {name} | {t:.2f} | {t / ms['float copy']:.2f} | {t / ms['native']:.2f} |")
    return lines


def _pair(model: torch.nn.Module, layers: Callable[[torch.nn.Module, str], bool]):
    cfg = sq.QuantConfig(estimator="htge", bits=2, scale="absmax")
    qnet = sq.quantize_(model.to(DEVICE), cfg, filter_fn=layers)
    opt = torch.optim.SGD(qnet.parameters(), lr=0.01, momentum=0.9)
    twin, twin_opt = sq.to_ste(qnet, opt)
    return [(qnet, opt), (twin, twin_opt)]


def _pair_rate(name: str, make: Callable[[], torch.nn.Module], shape: tuple[int, ...],
               classes: int, layers) -> list[str]:
    x = torch.randn(256, *shape, device=DEVICE)
    y = torch.randint(0, classes, (256,), device=DEVICE)
    fns = {}
    for mode in ("eager", "compiled"):
        pair = _pair(make(), layers)
        nets = [(torch.compile(n) if mode == "compiled" else n, o) for n, o in pair]

        def step(nets=nets) -> None:
            for net, opt in nets:
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), y).backward()
                opt.step()
        fns[mode] = step
    ms = _median_ms(fns, 10)
    return [f"| {name} pair, batch 256, {mode} | {t:.1f} ms/step | {256e3 / t:.0f} images/s |"
            for mode, t in ms.items()]


def lm_tokens(name: str = "transformer-small") -> list[str]:
    """A byte-level transformer pair (every Linear quantized), batch 32 × its context."""
    model = build_model(name, num_classes=256)
    seq = model.size.context
    tokens = torch.randint(0, 256, (32, seq), device=DEVICE)
    pair = _pair(model, lambda m, n: isinstance(m, torch.nn.Linear))

    def step() -> None:
        for net, opt in pair:
            opt.zero_grad(set_to_none=True)
            logits = net(tokens[:, :-1])
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1)).backward()
            opt.step()
    ms = _median_ms({"lm": step}, 10)["lm"]
    return [f"| {name} pair, batch 32 × {seq - 1} tokens, eager | {ms:.1f} ms/step | "
            f"{32 * (seq - 1) * 1e3 / ms:.0f} tokens/s |"]


def main() -> None:
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    print("\n".join(fake_quant()))
    print("\n| pair | time | rate |\n|---|---|---|")
    convs = lambda m, n: isinstance(m, torch.nn.Conv2d)  # noqa: E731
    print("\n".join(_pair_rate("ConvNet", ConvNet, (1, 28, 28), 10, convs)))
    print("\n".join(_pair_rate("ResNet-50", resnet50, (3, 224, 224), 1000, convs)))
    print("\n".join(lm_tokens()))


if __name__ == "__main__":
    main()
