"""Deployment costs of the lm model (transformer-small): convert and export times, bytes on disk per
format against float32, and onnxruntime inference against the float PyTorch model.

The model is quantized as a user would for each format (safetensors: the paper's 2-bit zero-free
grid per tensor; ONNX: 4 bits per channel, ``QuantConfig.for_format("onnx-int4")``; GGUF: Q4_0
for the MLP and Q8_0 elsewhere, ``for_format("gguf-q4_0")``/``"gguf-q8_0"``). Inference: a batch of
8 sequences of 128 byte tokens, PyTorch eager float32 (weights dequantized, ``no_grad``) against
onnxruntime's CPU session of the exported QDQ graph, and against the model with torchao's int4
weight tensors (``to_torchao_``), all at the same thread count, timed in alternation. Writes ``benchmarks/results/export.md``.
Run: .venv/bin/python benchmarks/bench_export.py
"""

from __future__ import annotations

import copy
import datetime
import importlib.metadata
import io
import os
import platform
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from _bench import Row, compare, interleaved, markdown, single
from stequiv import qat as sq
from stequiv.export import export, to_torchao_
from stequiv.models import build_model

MODEL = "transformer-small"
THREADS = 2
REPEAT = 10
RESULTS = Path(__file__).with_name("results") / "export.md"
CONFIGS = {
    "safetensors": sq.QuantConfig(bits=2),
    "onnx": sq.QuantConfig.for_format("onnx-int4"),
    "gguf": lambda name, module: sq.QuantConfig.for_format(
        "gguf-q4_0" if ".fc" in name else "gguf-q8_0"),
}


def _model(config) -> torch.nn.Module:
    torch.manual_seed(0)
    return sq.quantize_(build_model(MODEL, num_classes=256), config).eval()


def _float_bytes(model: torch.nn.Module) -> int:
    buffer = io.BytesIO()
    torch.save(sq.from_integer(sq.convert_(copy.deepcopy(model))).state_dict(), buffer)
    return len(buffer.getvalue())


def _times(fn, repeat: int = REPEAT) -> list[float]:
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _convert_times(model: torch.nn.Module) -> list[float]:
    out = []
    for _ in range(REPEAT):
        fresh = copy.deepcopy(model)
        start = time.perf_counter()
        sq.convert_(fresh)
        out.append(time.perf_counter() - start)
    return out


def run(folder: Path) -> tuple[list[Row], list[str]]:
    rows, sizes = [], []
    tokens = torch.randint(0, 256, (8, 128), generator=torch.Generator().manual_seed(0))
    for fmt, config in CONFIGS.items():
        model = _model(config)
        if fmt == "safetensors":
            rows.append(single(f"convert_ {MODEL} (2-bit, {len(sq.quantized_layers(model))} weights)",
                               _convert_times(model)))
        path = folder / f"lm.{fmt}"
        example = tokens[:1] if fmt == "onnx" else None
        result = export(model, path, format=fmt, example=example)
        rows.append(single(f"export {MODEL} to {fmt}",
                           _times(partial(export, model, path, format=fmt, example=example), 3)))
        sizes.append(f"| {fmt} | {result.file_bytes:,} | {_float_bytes(model):,} | "
                     f"{result.file_bytes / _float_bytes(model):.3f} |")
        if fmt == "onnx":
            rows.append(_inference(model, result.path, tokens))
    rows.append(_torchao(tokens))
    return rows, sizes


def _torchao(tokens: torch.Tensor) -> Row:
    """torchao's intx tensors (its CPU dequantize-then-matmul) against the float model."""
    torch.manual_seed(0)
    model = sq.quantize_(build_model(MODEL, num_classes=256), sq.QuantConfig.for_format(
        "onnx-int4"), filter_fn=lambda module, name: isinstance(module, torch.nn.Linear)).eval()
    flat = sq.from_integer(sq.convert_(copy.deepcopy(model))).eval()
    to_torchao_(model)
    with torch.no_grad():
        assert torch.equal(model(tokens), flat(tokens))
        times = interleaved({"ao": lambda: model(tokens), "torch": lambda: flat(tokens)}, REPEAT)
    return compare(f"{MODEL} inference, batch 8×128, torchao int4 Linear weights", times["ao"],
                   "PyTorch float32 eager", times["torch"])


def _inference(model: torch.nn.Module, path: Path, tokens: torch.Tensor) -> Row:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = THREADS
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    flat = sq.from_integer(sq.convert_(copy.deepcopy(model))).eval()
    feed = {"input": tokens.numpy()}
    with torch.no_grad():
        expected = flat(tokens).numpy()
        got = session.run(None, feed)[0]
        print(f"onnxruntime vs PyTorch: max |diff| / max |y| = "
              f"{np.abs(got - expected).max() / np.abs(expected).max():.2e}")
        times = interleaved({"ort": lambda: session.run(None, feed), "torch": lambda: flat(tokens)},
                            REPEAT)
    return compare(f"{MODEL} inference, batch 8×128, onnxruntime QDQ", times["ort"],
                   "PyTorch float32 eager", times["torch"])


def main() -> None:
    torch.set_num_threads(THREADS)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows, sizes = run(Path(tmp))
    load_after = os.getloadavg()
    import onnx
    header = [
        "# Export benchmark",
        "",
        f"{datetime.datetime.now():%Y-%m-%d %H:%M} · {platform.machine()}, {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · torch {torch.__version__} ({THREADS} threads) · "
        f"onnxruntime {ort.__version__} ({THREADS} threads) · onnx {onnx.__version__} · "
        f"gguf {importlib.metadata.version('gguf')}",
        f"Load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/"
        f"{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}: "
        "on a shared machine, compare ratios, not absolute times.",
        "",
        markdown(rows),
        "",
        f"Bytes on disk, {MODEL} (float: torch.save of the float32 state dict):",
        "",
        "| format | bytes | float32 bytes | ratio |",
        "|---|---|---|---|",
        *sizes,
        "",
    ]
    text = "\n".join(header)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
