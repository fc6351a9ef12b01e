"""GGUF Q4_0/Q8_0: gguf's own reader and dequantization return the fake-quant weights bit for bit."""

import numpy as np
import pytest
import torch
from torch import nn

import stequiv.qat as sq
from stequiv.export import export
from stequiv.models import build_model

gguf = pytest.importorskip("gguf")  # the `export` extra


def _lm(dtype=torch.float32):
    torch.manual_seed(0)
    model = build_model("transformer-tiny", num_classes=256).to(dtype)
    # the MLP at 4 bits, attention and embeddings at 8, as llama.cpp's mixed presets do
    return sq.quantize_(model, lambda name, module: sq.QuantConfig.for_format(
        "gguf-q4_0" if ".fc" in name else "gguf-q8_0", estimator="htge"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_gguf_dequantizes_to_the_fake_quant_weights(tmp_path, dtype):
    model = _lm(dtype)
    result = export(model, tmp_path / "lm.gguf", format="gguf")
    reader = gguf.GGUFReader(str(result.path))
    tensors = {t.name: t for t in reader.tensors}
    assert tensors["blocks.0.fc1.weight"].tensor_type == gguf.GGMLQuantizationType.Q4_0
    assert tensors["blocks.0.attn.q.weight"].tensor_type == gguf.GGMLQuantizationType.Q8_0
    assert "head.weight" not in tensors  # tied to the embedding: stored once
    assert bytes(reader.fields["stequiv.tied.head.weight"].parts[-1]).decode() == "embed.weight"
    for name in sq.quantized_layers(model):
        if name == "head":
            continue
        t = tensors[f"{name}.weight"]
        got = gguf.quants.dequantize(t.data, t.tensor_type)  # float32, as llama.cpp computes d·q
        weight = model.get_submodule(name).weight.detach()
        if dtype == torch.float32:
            np.testing.assert_array_equal(got, weight.numpy().reshape(got.shape), err_msg=name)
        else:  # d·q is exact in float32; the model holds it rounded to its dtype
            assert torch.equal(torch.from_numpy(got).to(dtype), weight.reshape(got.shape)), name
    norm = tensors["blocks.0.ln1.weight"]
    assert norm.tensor_type == {torch.float32: gguf.GGMLQuantizationType.F32,
                                torch.float16: gguf.GGMLQuantizationType.F16,
                                torch.bfloat16: gguf.GGMLQuantizationType.BF16}[dtype]
    assert result.file_bytes < (0.35 if dtype == torch.float32 else 0.7) * result.float_bytes


def test_grids_gguf_cannot_hold_are_refused_with_the_config_that_fits(tmp_path):
    torch.manual_seed(0)
    for config, why in [
        (sq.QuantConfig(bits=4, group_size=32), "not on the offset-0 4- or 8-bit grid"),
        (sq.QuantConfig(bits=4, offset=0.0, per_channel=True), "not per block of 32"),
        (sq.QuantConfig(bits=4, offset=0.0, group_size=32), "not a float16 number"),
    ]:
        model = sq.quantize_(nn.Sequential(nn.Linear(64, 8)), config)
        with pytest.raises(ValueError, match=f"{why}.*for_format\\('gguf-q4_0'\\)"):
            export(model, tmp_path / "m.gguf", format="gguf")
        assert not (tmp_path / "m.gguf").exists()


def test_for_format_gives_the_format_grid_and_refuses_clashes():
    cfg = sq.QuantConfig.for_format("gguf-q8_0", estimator="htge", learn_step=True)
    assert (cfg.bits, cfg.offset, cfg.group_size, cfg.delta_dtype) == (8, 0.0, 32, "float16")
    with pytest.raises(ValueError, match="did you mean 'gguf-q4_0'"):
        sq.QuantConfig.for_format("gguf-q4")
    with pytest.raises(ValueError, match=r"fixes \['bits'\]"):
        sq.QuantConfig.for_format("gguf-q4_0", bits=3)
    with pytest.raises(ValueError, match="`delta_dtype` must be one of"):
        sq.QuantConfig(delta_dtype="float8")
    layer = sq.quantize_(nn.Sequential(nn.Linear(64, 4)), cfg)
    delta = sq.quantized_layers(layer)["0"].delta.detach()
    assert torch.equal(delta.half().to(delta.dtype), delta)
