"""torchao hand-off: torchao's intx tensors carrying stequiv's codes and scales, outputs unchanged."""

import pytest
import torch
from torch import nn

import stequiv.qat as sq
from stequiv.export import to_torchao_

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torchao's import-time notices
torchao = pytest.importorskip("torchao.quantization")  # the `export` extra
transformers = pytest.importorskip("transformers")  # the `hf` extra
AutoModelForCausalLM, LlamaConfig = transformers.AutoModelForCausalLM, transformers.LlamaConfig

SMALL = {"vocab_size": 128, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("config", [
    sq.QuantConfig(bits=2, group_size=32),  # odd codes ±1, ±3 at Δ/2: int3
    sq.QuantConfig(bits=4, offset=0.0, per_channel=True, learn_step=True),
    sq.QuantConfig(estimator="approx_sign", bits=1),
], ids=["2bit-group", "4bit-channel-learned", "binary-tensor"])
def test_llama_logits_are_unchanged(config, dtype):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(LlamaConfig(**SMALL), dtype=dtype).eval()
    sq.quantize_(model, config, filter_fn=lambda m, n: isinstance(m, nn.Linear))
    tokens = torch.randint(0, 128, (2, 12))
    with torch.no_grad():
        expected = model(tokens).logits
    to_torchao_(model)
    assert isinstance(model.model.layers[0].mlp.up_proj.weight, torchao.IntxUnpackedToInt8Tensor)
    assert not sq.quantized_layers(model)
    with torch.no_grad():
        assert torch.equal(model(tokens).logits, expected)


def test_other_layers_are_refused_and_the_model_is_unchanged():
    model = sq.quantize_(nn.Sequential(nn.Linear(4, 4), nn.Conv1d(4, 4, 1)), sq.QuantConfig())
    with pytest.raises(ValueError, match="'1' is a Conv1d"):
        to_torchao_(model)
    assert len(sq.quantized_layers(model)) == 2


def test_a_head_tied_to_a_float_embedding_keeps_the_embedding_float():
    """The byte LM's head shares the embedding's weight; only the head (a Linear) is quantized."""
    from stequiv.models import build_model

    torch.manual_seed(0)
    model = build_model("transformer-tiny", num_classes=256).eval()
    sq.quantize_(model, sq.QuantConfig.for_format("onnx-int4"),
                 filter_fn=lambda m, n: isinstance(m, nn.Linear))
    tokens = torch.randint(0, 256, (2, 16))
    with torch.no_grad():
        expected = model(tokens)
    to_torchao_(model)
    assert isinstance(model.head.weight, torchao.IntxUnpackedToInt8Tensor)
    assert type(model.embed.weight) is nn.Parameter  # the embedding still reads w itself
    with torch.no_grad():
        assert torch.equal(model(tokens), expected)


TORCHAO_QAT = pytest.importorskip("torchao.quantization.qat")
INT4 = torchao.Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4)
TORCHAO_CONVERTS = {  # the ways torchao's docs convert a model that its QAT flow prepared
    "QATConfig(base_config, step='convert')":
        lambda m: torchao.quantize_(m, TORCHAO_QAT.QATConfig(INT4, step="convert")),
    "QATConfig(step='convert')": lambda m: torchao.quantize_(m, TORCHAO_QAT.QATConfig(step="convert")),
    "Int8DynActInt4WeightQATQuantizer.convert":
        lambda m: TORCHAO_QAT.Int8DynActInt4WeightQATQuantizer().convert(m),
}


@pytest.mark.parametrize("how", list(TORCHAO_CONVERTS))
def test_torchao_qat_convert_does_not_see_stequiv_layers_and_to_torchao_does(how):
    """torchao's QAT convert swaps only its own fake-quant modules (FakeQuantizedLinear, ...): on a
    stequiv model it returns without a word and the layers stay fake-quantized (docs/deploy.md says
    so and points to to_torchao_). This pins that behaviour: if torchao starts converting stequiv's
    layers, the docs must change. ``sq.quantized_layers(model)`` is the check that a model is
    converted (empty) or still fake-quantized."""
    torch.manual_seed(0)
    model = sq.quantize_(nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8)),
                         sq.QuantConfig(bits=4, group_size=32))
    x = torch.randn(3, 64)
    with torch.no_grad():
        expected = model(x)
    TORCHAO_CONVERTS[how](model)
    assert list(sq.quantized_layers(model)) == ["0", "2"]  # still stequiv's fake-quant layers
    to_torchao_(model)
    assert not sq.quantized_layers(model)
    assert isinstance(model[0].weight, torchao.IntxUnpackedToInt8Tensor)
    with torch.no_grad():
        assert torch.equal(model(x), expected)
