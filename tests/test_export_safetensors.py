"""The integer safetensors file: read back exactly, about bits/32 of the float size, bad files refused."""

import copy

import pytest
import torch
from torch import nn

import stequiv.qat as sq
from stequiv.export import export, export_formats, load_integer

safetensors_torch = pytest.importorskip("safetensors.torch")  # the `export` extra


class TiedLM(nn.Module):
    def __init__(self, vocab=64, dim=32):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.mix = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, tokens):
        return self.head(self.norm(torch.tanh(self.mix(self.emb(tokens)))))


def _model(dtype=torch.float32, bits=2, seed=0):
    torch.manual_seed(seed)
    float_model = TiedLM().to(dtype)
    model = sq.quantize_(copy.deepcopy(float_model), sq.QuantConfig(bits=bits, group_size=16))
    return float_model, model


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_round_trip_into_the_float_model_is_exact_and_keeps_ties(tmp_path, dtype):
    float_model, model = _model(dtype)
    tokens = torch.randint(0, 64, (3, 7))
    with torch.no_grad():
        expected = model(tokens)
    result = export(model, tmp_path / "m.safetensors")
    assert sq.quantized_layers(model)  # the argument is left fake-quantized, and still works
    with torch.no_grad():
        assert torch.equal(model(tokens), expected)
    assert result.bits == {"emb": 2, "mix": 2, "head": 2}
    load_integer(result.path, float_model)
    layers = sq.integer_layers(float_model)
    assert layers["emb"].codes is layers["head"].codes
    with torch.no_grad():
        assert torch.equal(float_model(tokens), expected)


def test_file_is_about_bits_over_32_of_the_float_size(tmp_path):
    torch.manual_seed(0)
    model = sq.quantize_(nn.Sequential(nn.Linear(512, 512, bias=False)),
                         sq.QuantConfig(bits=4, per_channel=True))
    result = export(model, tmp_path / "m.safetensors")
    codes, scales = 512 * 512 // 2, 512 * 4
    assert result.float_bytes == 512 * 512 * 4
    assert codes + scales < result.file_bytes < codes + scales + 2048  # + the JSON header
    assert "1 quantized weights (1 at 4 bits)" in result.describe()


def test_formats_are_listed():
    assert "safetensors" in export_formats()
    with pytest.raises(ValueError, match="did you mean 'safetensors'"):
        export(_model()[1], "x", format="safetensor")


def test_corrupt_truncated_foreign_and_mismatched_files_are_refused(tmp_path):
    float_model, model = _model()
    path = export(model, tmp_path / "m.safetensors").path
    data = bytearray(path.read_bytes())
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(bytes(data[:-10]))
    with pytest.raises(ValueError, match=r"truncated\.safetensors is not a readable safetensors"):
        load_integer(truncated, copy.deepcopy(float_model))
    data[-5] ^= 0xFF  # one bit pattern in the last tensor's bytes
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"corrupt\.safetensors: sha256 mismatch"):
        load_integer(corrupt, copy.deepcopy(float_model))
    foreign = tmp_path / "foreign.safetensors"
    safetensors_torch.save_model(float_model, foreign)
    with pytest.raises(ValueError, match="not a stequiv integer model"):
        load_integer(foreign, copy.deepcopy(float_model))
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match=r"notes\.txt is not a readable safetensors"):
        load_integer(text, copy.deepcopy(float_model))
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors does not exist"):
        load_integer(tmp_path / "missing.safetensors", float_model)
    other = TiedLM(dim=16)
    with pytest.raises(ValueError, match="has 'emb' of shape"):
        load_integer(path, other)
    assert isinstance(other.emb.weight, nn.Parameter) and other.emb.weight is other.head.weight
    with pytest.raises(ValueError, match="is fake-quantized"):
        load_integer(path, model)
    with pytest.raises(ValueError, match=r"build the model in torch\.float32"):
        load_integer(path, copy.deepcopy(float_model).half())
