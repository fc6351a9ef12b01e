"""ONNX QDQ export, read back and run by onnxruntime: weights bit for bit, outputs to 1e-5."""

import numpy as np
import pytest
import torch
from torch import nn

import stequiv.qat as sq
from stequiv.export import export
from stequiv.models import build_model

onnx = pytest.importorskip("onnx")  # the `export` extra
ort = pytest.importorskip("onnxruntime")

RELATIVE = 1e-5  # onnxruntime's float32 kernels against PyTorch's: summation order differs
TRACE = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # the LM's shape check


def _run(path, x, weights=()):
    """onnxruntime's outputs: the model's, then each named weight as the graph computes it."""
    model = onnx.load(str(path))
    for name in weights:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(model.SerializeToString())
    return session.run(None, {"input": x.numpy()})


def _check(model, x, path):
    model.eval()
    result = export(model, path, format="onnx", example=x)
    names = {n for n in sq.quantized_layers(model) if n != "head"}  # the LM's head is its embedding
    keys = [f"{n}.weight" for n in names]
    out, *weights = _run(result.path, x, keys)
    with torch.no_grad():
        expected = model(x).numpy()
        for key, got in zip(keys, weights, strict=True):
            torch_weight = model.get_submodule(key.rpartition(".")[0]).weight
            np.testing.assert_array_equal(got, torch_weight.numpy(), err_msg=key)
    error = np.abs(out - expected).max() / np.abs(expected).max()
    assert error < RELATIVE, error
    graph = onnx.load(str(result.path)).graph
    assert sum(n.op_type == "DequantizeLinear" for n in graph.node) == len(names)
    return graph


@TRACE
@pytest.mark.parametrize(("name", "shape", "config", "code_type"), [
    ("convnet", (2, 1, 28, 28), sq.QuantConfig(bits=2), "INT4"),  # odd codes ±1, ±3 at Δ/2
    ("resnet20", (2, 3, 32, 32), sq.QuantConfig(bits=4, offset=0.0, per_channel=True), "INT4"),
    ("transformer-tiny", (2, 16), sq.QuantConfig(bits=8, offset=0.0, group_size=32), "INT8"),
])
def test_models_run_in_onnxruntime_with_the_fake_quant_weights(tmp_path, name, shape, config,
                                                                code_type):
    torch.manual_seed(0)
    lm = name.startswith("transformer")
    model = build_model(name, in_channels=3 if name == "resnet20" else 1,
                        num_classes=256 if lm else 10)
    sq.quantize_(model, config)
    x = torch.randint(0, 256, shape) if lm else torch.randn(shape)
    graph = _check(model, x, tmp_path / f"{name}.onnx")
    types = {onnx.TensorProto.DataType.Name(i.data_type) for i in graph.initializer
             if i.name.endswith(".q")}
    assert types == {code_type}


class Mixed(nn.Module):
    """Output axis 1 (transposed conv) per group, a binary layer and an 8-bit zero-free one."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 6, 2)
        self.down = nn.Conv2d(6, 8, 3, groups=2)
        self.fc = nn.Linear(8 * 3 * 3, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.down(torch.relu(self.up(x)))).flatten(1))


def test_every_layout_and_grid_is_exact(tmp_path):
    torch.manual_seed(0)
    model = Mixed()
    sq.quantize_(model, {
        "up": sq.QuantConfig(bits=3, group_size=4),
        "down": sq.QuantConfig(estimator="approx_sign", bits=1, per_channel=True),
        "fc": sq.QuantConfig(bits=8, per_channel=True),  # odd codes up to ±255: int16
    })
    graph = _check(model, torch.randn(2, 4, 4, 4), tmp_path / "mixed.onnx")
    types = {i.name: onnx.TensorProto.DataType.Name(i.data_type) for i in graph.initializer}
    assert types["up.weight.q"] == "INT4" and types["down.weight.q"] == "INT4"
    assert types["fc.weight.q"] == "INT16"


def test_refusals(tmp_path):
    model = sq.quantize_(nn.Sequential(nn.Linear(4, 2)), sq.QuantConfig(bits=2))
    with pytest.raises(ValueError, match="pass `example`"):
        export(model, tmp_path / "m.onnx", format="onnx")
    half = sq.quantize_(nn.Sequential(nn.Linear(4, 2)).half(), sq.QuantConfig(bits=2))
    with pytest.raises(ValueError, match="writes float32 graphs"):
        export(half, tmp_path / "m.onnx", format="onnx", example=torch.zeros(1, 4))
    assert not (tmp_path / "m.onnx").exists()


class Sequence(nn.Module):
    """An embedding, attention's packed in_proj and an LSTM's weights, all quantized."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.rnn = nn.LSTM(8, 8, batch_first=True)

    def forward(self, tokens):
        x = self.emb(tokens)
        return self.rnn(self.attn(x, x, x, need_weights=False)[0])[0]


@TRACE
@pytest.mark.filterwarnings("ignore:Exporting a model to ONNX with a batch_size:UserWarning")
def test_embedding_attention_and_lstm_weights_export(tmp_path):
    torch.manual_seed(0)
    model = sq.quantize_(Sequence(), sq.QuantConfig(bits=3, per_channel=True),
                         filter_fn=lambda m, n: n in ("emb", "attn", "rnn")).eval()
    tokens = torch.randint(0, 10, (2, 5))
    result = export(model, tmp_path / "seq.onnx", format="onnx", example=tokens)
    (out,) = _run(result.path, tokens)
    with torch.no_grad():
        expected = model(tokens).numpy()
    assert np.abs(out - expected).max() / np.abs(expected).max() < RELATIVE
    graph = onnx.load(str(result.path)).graph
    assert sum(n.op_type == "DequantizeLinear" for n in graph.node) == 4  # emb, in_proj, 2 LSTM
