"""sq.Pair: a Q̂-net and its STE twin in the user's own loop (Hugging Face Llama, AdamW, schedule)."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import stequiv as sq

transformers = pytest.importorskip("transformers")

VOCAB = 64
CONFIG = sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0}, bits=4, group_size=16)
EBAR_ALIGNED = 5e-4  # Ē (a fraction of the range) of an aligned pair after a few steps
AGREEMENT_ALIGNED = 0.995


def _llama(seed=0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=2,
                                   num_key_value_heads=1, max_position_embeddings=16,
                                   bos_token_id=0, eos_token_id=0)
    return transformers.LlamaForCausalLM(cfg)


def lm_loss(model, tokens):
    logits = model(input_ids=tokens).logits
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())


def _batches(n, seed=1):
    """Counting sequences (random start and stride): the next token is learnable."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        start, stride = torch.randint(0, VOCAB, (4, 1), generator=g), torch.randint(1, 3, (4, 1), generator=g)
        out.append((start + stride * torch.arange(12)) % VOCAB)
    return out


def _pair(opt="adamw", seed=0, **kwargs):
    # fine-tuning learning rates (the equivalence is to first order in η: Ē grows ~η² here)
    make = {"adamw": lambda p: torch.optim.AdamW(p, lr=1e-4, weight_decay=0.01),
            "sgd": lambda p: torch.optim.SGD(p, lr=2e-3, momentum=0.9)}[opt]
    return sq.Pair.from_float(_llama(seed), CONFIG, make,
                              lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=20),
                              **kwargs)


@pytest.mark.parametrize("opt", ["adamw", "sgd"])
def test_hf_llama_twin_stays_aligned_and_both_learn(opt):
    pair = _pair(opt)
    start = pair.alignment()
    assert start.ebar == 0.0 and start.agreement == 1.0
    steps = [pair.step(b, lm_loss) for b in _batches(8)]
    assert [s.step for s in steps] == list(range(1, 9))
    assert steps[-1].loss < steps[0].loss and steps[-1].twin_loss < steps[0].twin_loss
    result = pair.alignment()
    assert 0 < result.ebar < EBAR_ALIGNED and result.agreement > AGREEMENT_ALIGNED
    assert set(result.layers) == set(sq.quantized_layers(pair.model))  # per-layer drift
    # the scheduler of the twin follows the Q̂-net's (SGD: lr × α on quantized weights)
    assert pair.scheduler.last_epoch == pair.twin_scheduler.last_epoch == 8


def test_an_unpaired_ste_net_drifts_far_more():
    """The check that the alignment test can fail: an STE net started from the Q̂-net's weights
    without the twin's rules (no M, no α) is not aligned after the same steps."""
    pair = _pair("sgd")
    model = pair.model
    naive = sq.to_ste(model, torch.optim.SGD(model.parameters(), lr=2e-3, momentum=0.9),
                      remap_weights=False, scale_lr=False)
    for b in _batches(8):
        pair.step(b, lm_loss)
        naive.optimizer.zero_grad()
        lm_loss(naive.model, b).backward()
        naive.optimizer.step()
    # Ē in the form where both start at 0 (w for the unadjusted net, M(w) for the twin)
    assert sq.alignment(pair.model, naive.model).ebar > 3 * pair.alignment().ebar


def test_resume_after_save_equals_an_uninterrupted_run(tmp_path):
    batches = _batches(6)
    straight = _pair(clip_grad_norm=0.5, ema_decay=0.9)
    for b in batches:
        straight.step(b, lm_loss)
    first = _pair(clip_grad_norm=0.5, ema_decay=0.9)
    for b in batches[:3]:
        first.step(b, lm_loss)
    path = first.save(tmp_path / "pair.pt")
    resumed = _pair(seed=5, clip_grad_norm=0.5, ema_decay=0.9).load(path)  # other init weights
    assert resumed.steps == 3
    for b in batches[3:]:
        resumed.step(b, lm_loss)
    for a, b in ((straight.model, resumed.model), (straight.twin, resumed.twin),
                 (straight.ema_model, resumed.ema_model), (straight.ema_twin, resumed.ema_twin)):
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa if torch.is_tensor(sa[k]))
    assert straight.alignment().ebar == resumed.alignment().ebar
    assert list(tmp_path.iterdir()) == [path]


def test_corrupt_or_mismatched_files_are_refused(tmp_path):
    pair = _pair()
    path = pair.save(tmp_path / "pair.pt")
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        _pair().load(bad)
    with pytest.raises(ValueError, match=r"saved pair has clip_grad_norm=None but this one has "
                                         r"clip_grad_norm=1\.0"):
        _pair(clip_grad_norm=1.0).load(path)
    plain = tmp_path / "plain.pt"
    torch.save({}, plain)
    with pytest.raises(ValueError, match="not a stequiv pair file"):
        _pair().load(plain)


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = sq.quantize_(nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)), CONFIG.__class__(
        estimator="htge", estimator_params={"t": 3.0}, bits=2, per_channel=True))
    return model


def _mse(model, batch):
    x, y = batch
    return F.mse_loss(model(x), y)


@pytest.mark.parametrize(("opt", "ratio"), [("sgd", 5.0), ("adam", 3.0)])
def test_clipping_with_the_shared_factor_keeps_the_twin_the_own_norm_does_not(opt, ratio):
    """Active clipping (max norm far below the gradient's): with the Q̂-net's factor Ē stays at or
    below the unclipped pair's; with its own norm the twin drifts several times further."""
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=5e-3), "adam": lambda p: torch.optim.Adam(p, lr=1e-4)}[opt]
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(32, 8, generator=g), torch.randn(32, 4, generator=g)) for _ in range(30)]
    ebar = {}
    for clip in ("shared", "own", None):
        model = _tiny()
        pair = sq.Pair(model, make(list(model.parameters())), clip_grad_norm=clip and 0.01,
                       twin_clip=clip or "shared")
        for b in batches:
            pair.step(b, _mse)
        ebar[clip] = pair.alignment().ebar
    assert ebar["own"] > ratio * ebar["shared"]
    assert ebar["shared"] < 1.5 * ebar[None]


def test_ema_copies_follow_the_nets():
    model = _tiny()
    pair = sq.Pair(model, torch.optim.SGD(model.parameters(), lr=0.05), ema_decay=0.5)
    before = [p.detach().clone() for p in pair.model.parameters()]
    pair.step((torch.randn(8, 8), torch.randn(8, 4)), _mse)
    for w0, w, e in zip(before, pair.model.parameters(), pair.ema_model.parameters(), strict=True):
        torch.testing.assert_close(e, 0.5 * w0 + 0.5 * w.detach(), rtol=0, atol=1e-7)
    assert pair.alignment(ema=True).agreement > 0.99


def test_bad_inputs_are_refused_by_name():
    model = _tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="`clip_grad_norm` must be a positive number or None, got -1"):
        sq.Pair(model, opt, clip_grad_norm=-1)
    with pytest.raises(ValueError, match=r"`twin_clip` must be one of \('shared', 'own'\), got 'mine'"):
        sq.Pair(model, opt, twin_clip="mine")
    with pytest.raises(ValueError, match=r"`ema_decay` must be a number in \[0, 1\) or None, got 1\.0"):
        sq.Pair(model, opt, ema_decay=1.0)
    with pytest.raises(TypeError, match=r"`optimizer` must be a torch\.optim\.Optimizer, got dict"):
        sq.Pair(model, {})
    float_model = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="`model` has no quantized layer"):
        sq.Pair(float_model, torch.optim.SGD(float_model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="does not know optimizer LBFGS"):
        sq.Pair(model, torch.optim.LBFGS(model.parameters()))
    with pytest.raises(ValueError, match="already quantized"):
        sq.Pair.from_float(model, CONFIG, lambda p: torch.optim.SGD(p, lr=0.1))
    pair = sq.Pair(model, opt)
    with pytest.raises(ValueError, match="scalar tensor that requires grad for the Q̂-net, got "
                                         r"Tensor of shape \(2, 4\)"):
        pair.step(torch.randn(2, 8), lambda m, x: m(x))
    with pytest.raises(ValueError, match="`ema=True` needs a Pair built with ema_decay"):
        pair.alignment(ema=True)


def test_the_docs_loop_runs_as_it_stands(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    page = (Path(__file__).parents[1] / "docs" / "pair.md").read_text()
    code = page.split("```python\n", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) <= 32
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    exec(compile(code, "docs/pair.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == ["step 10", "step 20"]
    assert (tmp_path / "pair.pt").is_file()
