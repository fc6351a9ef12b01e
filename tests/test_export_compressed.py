"""compressed-tensors: plain transformers loads the folder and its logits are the fake-quant model's."""

import pytest
import torch
from torch import nn

import stequiv.qat as sq
from stequiv.export import export

pytest.importorskip("compressed_tensors")  # the `export` extra
transformers = pytest.importorskip("transformers")  # the `hf` extra
AutoModelForCausalLM, GPT2Config = transformers.AutoModelForCausalLM, transformers.GPT2Config
LlamaConfig, Qwen2Config = transformers.LlamaConfig, transformers.Qwen2Config

SMALL = {"vocab_size": 128, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}


def _linear(module, name):
    return isinstance(module, nn.Linear)


@pytest.mark.parametrize(("config", "quant", "dtype"), [
    (LlamaConfig(**SMALL), sq.QuantConfig(bits=2, group_size=32), torch.float32),  # odd codes
    (Qwen2Config(**SMALL, tie_word_embeddings=True),
     sq.QuantConfig.for_format("compressed-tensors-w8-channel", learn_step=True), torch.float32),
    (LlamaConfig(**SMALL), sq.QuantConfig(bits=4, offset=0.0, group_size=64), torch.bfloat16),
    (Qwen2Config(**SMALL), sq.QuantConfig(estimator="approx_sign", bits=1), torch.float16),
], ids=["llama-2bit-group", "qwen2-tied-8bit-channel-learned", "llama-bf16-4bit", "qwen2-fp16-binary"])
def test_from_pretrained_logits_equal_the_fake_quant_model(tmp_path, config, quant, dtype):
    torch.manual_seed(0)
    # built in its dtype as from_pretrained builds it (rotary frequencies stay float32)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    sq.quantize_(model, quant, filter_fn=lambda m, n: _linear(m, n) and n != "lm_head")
    with torch.no_grad():
        for fq in sq.quantized_layers(model).values():  # a trained Δ is any number
            if quant.learn_step:
                fq.delta.mul_(torch.empty_like(fq.delta).uniform_(0.8, 1.2))
    tokens = torch.randint(0, 128, (2, 12))
    with torch.no_grad():
        expected = model(tokens).logits
    result = export(model, tmp_path / "hf", format="compressed-tensors")
    loaded = AutoModelForCausalLM.from_pretrained(result.path, dtype=dtype).eval()
    assert loaded.config.quantization_config is not None
    with torch.no_grad():
        got = loaded(tokens).logits
    assert (got - expected).abs().max().item() == 0.0
    assert torch.equal(got, expected)


def test_layers_other_than_linear_and_wide_codes_are_refused(tmp_path):
    torch.manual_seed(0)
    gpt2 = AutoModelForCausalLM.from_config(GPT2Config(vocab_size=64, n_embd=32, n_layer=1,
                                                       n_head=2, n_positions=32))
    sq.quantize_(gpt2, sq.QuantConfig(bits=4))  # GPT-2's projections are transformers' Conv1D
    with pytest.raises(ValueError, match=r"pack-quantized holds nn\.Linear weights"):
        export(gpt2, tmp_path / "gpt2", format="compressed-tensors")
    llama = AutoModelForCausalLM.from_config(LlamaConfig(**SMALL))
    sq.quantize_(llama, sq.QuantConfig(bits=8), filter_fn=_linear)  # offset ½: 9-bit odd codes
    with pytest.raises(ValueError, match="needs 9-bit codes"):
        export(llama, tmp_path / "llama", format="compressed-tensors")
    with pytest.raises(ValueError, match="must be a transformers PreTrainedModel"):
        export(sq.quantize_(nn.Sequential(nn.Linear(4, 4)), sq.QuantConfig()), tmp_path / "x",
               format="compressed-tensors")


def test_converted_model_keeps_the_save_pretrained_guard_until_from_integer(tmp_path):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**SMALL)).eval()
    sq.quantize_(model, sq.QuantConfig(bits=2), filter_fn=_linear)
    tokens = torch.randint(0, 128, (1, 8))
    with torch.no_grad():
        expected = model(tokens).logits
    sq.convert_(model)
    with pytest.raises(TypeError, match="save_pretrained"):
        model.save_pretrained(tmp_path / "x")  # would write codes under names HF drops
    sq.from_integer(model)
    model.save_pretrained(tmp_path / "plain")
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "plain").eval()
    with torch.no_grad():
        assert torch.equal(loaded(tokens).logits, expected)
