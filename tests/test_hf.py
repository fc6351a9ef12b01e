"""Hugging Face models from tiny configs (no hub): GPT-2 (tied, Conv1D) and Llama, per-group."""

import pytest
import torch
from torch.nn import functional as F

import stequiv as sq

transformers = pytest.importorskip("transformers")

CONFIG = sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0}, bits=4, group_size=16)
VOCAB = 64


def _gpt2():
    cfg = transformers.GPT2Config(vocab_size=VOCAB, n_positions=16, n_embd=32, n_layer=2, n_head=2,
                                  bos_token_id=0, eos_token_id=0, resid_pdrop=0.0,
                                  embd_pdrop=0.0, attn_pdrop=0.0)
    return transformers.GPT2LMHeadModel(cfg)


def _llama():
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=2,
                                   num_key_value_heads=1, max_position_embeddings=16,
                                   bos_token_id=0, eos_token_id=0)
    return transformers.LlamaForCausalLM(cfg)


BUILD = {"gpt2": _gpt2, "llama": _llama}


def _quantized(arch, seed=0):
    torch.manual_seed(seed)
    return sq.quantize_(BUILD[arch](), CONFIG)


def _train(model, opt, tokens, steps=3):
    for _ in range(steps):
        opt.zero_grad()
        logits = model(input_ids=tokens).logits
        F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten()).backward()
        opt.step()


def test_gpt2_conv1d_axis_and_tied_head():
    model = _quantized("gpt2")
    layers = sq.quantized_layers(model)
    c_attn = layers["transformer.h.0.attn.c_attn"]  # Conv1D weight (in=32, out=96)
    assert c_attn.layout.axis == 1 and c_attn.delta.numel() == 96 * 32 // 16
    assert layers["lm_head"] is layers["transformer.wte"]  # tied: quantized once
    assert sq.latent_weight(model, "lm_head") is sq.latent_weight(model, "transformer.wte")


@pytest.mark.parametrize("arch", list(BUILD))
@pytest.mark.parametrize("opt_name", ["adamw", "sgd"])
def test_train_switch_and_checkpoint(arch, opt_name, tmp_path):
    model = _quantized(arch)
    make = {"adamw": lambda p: torch.optim.AdamW(p, lr=1e-3),
            "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)}[opt_name]
    opt = make(model.parameters())
    tokens = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    _train(model, opt, tokens)
    twin, twin_opt = sq.to_ste(model, opt)
    result = sq.alignment(model, twin, remap=opt_name == "sgd", probe={"input_ids": tokens})
    assert result.agreement == 1.0 and result.output_difference == 0.0
    _train(twin, twin_opt, tokens, steps=1)  # the twin trains

    path = sq.save(model, tmp_path / "model.ckpt")
    fresh = _quantized(arch, seed=2)
    sq.load(path, fresh)
    model.eval()
    fresh.eval()
    assert torch.equal(fresh(input_ids=tokens).logits, model(input_ids=tokens).logits)


@pytest.mark.parametrize("arch", list(BUILD))
def test_save_pretrained_never_silently_reinitialises(arch, tmp_path):
    """The latent weights sit under `…parametrizations.weight.original`; from_pretrained would drop
    them and re-initialise. Saving a quantized model that way fails instead, saying what to call;
    after dequantize_ HF's own save works again."""
    model = _quantized(arch)
    with pytest.raises(TypeError, match=r"use sq.save_pretrained\(model, directory\) and sq.load_pretrained"):
        model.save_pretrained(tmp_path)
    assert not any(tmp_path.iterdir())
    sq.dequantize_(model)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()


@pytest.mark.parametrize("arch", list(BUILD))
def test_stequiv_save_pretrained_round_trips_and_plain_transformers_refuses_it(arch, tmp_path):
    """The folder held the latent weights under the float names: plain from_pretrained loaded them
    as the model (logits off by 0.06-0.87) and the folder was 2.2x the float model."""
    model = _quantized(arch)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1))
    _train(model, opt, tokens)
    ckpt = sq.save_pretrained(model, tmp_path)
    with pytest.raises(OSError, match=r"model\.safetensors"):
        type(model).from_pretrained(tmp_path)
    back = sq.load_pretrained(type(model), tmp_path)
    assert set(sq.quantized_layers(back)) == set(sq.quantized_layers(model))
    model.eval()
    back.eval()
    assert torch.equal(back(input_ids=tokens).logits, model(input_ids=tokens).logits)
    files = {f.name for f in tmp_path.iterdir()}
    assert ckpt.name in files and files <= {ckpt.name, "config.json", "generation_config.json"}
    other = tmp_path / "other"
    other.mkdir()
    (other / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="already holds Hugging Face weights"):
        sq.save_pretrained(model, other)


def test_tie_weights_keeps_the_quantized_tie_and_resize_is_refused_clearly():
    """After quantize_, HF's tie_weights raised AttributeError (the weight is a property now) and
    so did resize_token_embeddings; dequantize_ gives the model its own methods back."""
    model = _quantized("gpt2")  # tied embedding and head
    tokens = torch.arange(8).reshape(1, 8)
    before = model(tokens).logits
    model.tie_weights()
    assert torch.equal(model(tokens).logits, before)
    assert sq.latent_weight(model, "transformer.wte") is sq.latent_weight(model, "lm_head")
    with pytest.raises(TypeError, match=r"resize before quantizing, or sq.dequantize_\(model\)"):
        model.resize_token_embeddings(VOCAB + 8)
    sq.dequantize_(model)
    model.resize_token_embeddings(VOCAB + 8)
    assert model.get_input_embeddings().weight.shape[0] == VOCAB + 8
