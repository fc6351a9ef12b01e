"""The ``stequiv export`` command (invoked directly; the CLI group registers it) and the extra."""

import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import stequiv.qat as sq
from stequiv.export import export_command, load_integer
from stequiv.models import build_model

ort = pytest.importorskip("onnxruntime")  # the `export` extra
pytest.importorskip("safetensors")


def _checkpoint(tmp_path, name="convnet"):
    torch.manual_seed(0)
    model = sq.quantize_(build_model(name), sq.QuantConfig(estimator="htge", bits=2))
    return model, sq.save(model, tmp_path / "net.ckpt")


def test_exports_a_checkpoint_and_prints_layers_bits_and_sizes(tmp_path):
    model, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "net.safetensors"
    result = CliRunner().invoke(export_command, [str(ckpt), str(out), "--model", "convnet"])
    assert result.exit_code == 0, result.output
    assert "4 quantized weights (4 at 2 bits)" in result.output
    assert "conv1: 2 bits" in result.output and "bytes as floats ->" in result.output
    x = torch.randn(2, 1, 28, 28)
    loaded = load_integer(out, build_model("convnet"))
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_onnx_needs_and_uses_the_input_shape(tmp_path):
    model, ckpt = _checkpoint(tmp_path)
    out = tmp_path / "net.onnx"
    args = [str(ckpt), str(out), "--model", "convnet", "--format", "onnx"]
    result = CliRunner().invoke(export_command, args)
    assert result.exit_code == 1 and "pass `example`" in result.output
    result = CliRunner().invoke(export_command, [*args, "--input-shape", "1,1,28,28"])
    assert result.exit_code == 0, result.output
    x = torch.randn(3, 1, 28, 28)
    got = ort.InferenceSession(str(out)).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x)
    assert float((torch.from_numpy(got) - expected).abs().max() / expected.abs().max()) < 1e-5
    result = CliRunner().invoke(export_command, [*args, "--input-shape", "1,x"])
    assert result.exit_code == 2 and "comma-separated sizes" in result.output


def test_wrong_network_is_refused_by_name(tmp_path):
    _, ckpt = _checkpoint(tmp_path)
    result = CliRunner().invoke(export_command, [str(ckpt), str(tmp_path / "o"), "--model",
                                                 "resnet20"])
    assert result.exit_code == 1 and "Error:" in result.output


def test_import_stequiv_needs_no_export_dependency():
    code = ("import sys, stequiv, stequiv.qat, stequiv.export; "
            "bad = [m for m in ('onnx', 'onnxruntime', 'gguf', 'safetensors', 'compressed_tensors',"
            " 'torchao') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
