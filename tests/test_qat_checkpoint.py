"""Checkpoints carry their quantization: save/load round trip, mismatches refused, files verified."""

import io
from pathlib import Path

import pytest
import torch
from torch import nn

import stequiv as sq

HTGE2 = sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0}, bits=2, group_size=4)
DSQ4 = sq.QuantConfig(estimator="dsq", bits=4, group_size=4)


def _model(config=HTGE2, seed=0):
    torch.manual_seed(seed)
    return sq.quantize_(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)), config)


def _train(model):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(16, 8)
    for _ in range(3):
        opt.zero_grad()
        model(x).pow(2).sum().backward()
        opt.step()
    return x


def test_save_load_round_trip_restores_latents_and_delta(tmp_path):
    model = _model()
    x = _train(model)
    path = sq.save(model, tmp_path / "ckpt.pt")
    fresh = _model(seed=1)  # same quantization, other weights and absmax Δ
    assert not torch.equal(sq.quantized_layers(fresh)["0"].delta, sq.quantized_layers(model)["0"].delta)
    sq.load(path, fresh)
    for name, fq in sq.quantized_layers(model).items():
        assert torch.equal(sq.latent_weight(fresh, name), sq.latent_weight(model, name))
        assert torch.equal(sq.quantized_layers(fresh)[name].delta, fq.delta)
    assert torch.equal(fresh(x), model(x))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_checkpoint_of_another_quantization_is_refused_naming_the_difference(tmp_path):
    path = sq.save(_model(HTGE2), tmp_path / "htge2.pt")
    dsq = _model(DSQ4, seed=1)
    before = {k: v.clone() for k, v in dsq.state_dict().items() if torch.is_tensor(v)}
    with pytest.raises(ValueError, match=r"layer '0'.*estimator=\{'name': 'htge'.*this model has "
                                         r"estimator=\{'name': 'dsq'"):
        sq.load(path, dsq)
    after = dsq.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # nothing loaded
    # the plain state_dict route checks it too
    with pytest.raises(ValueError, match=r"0\.weight: the checkpoint was quantized with estimator"):
        dsq.load_state_dict(_model(HTGE2).state_dict())
    with pytest.raises(ValueError, match=r"lower=-2 but this model has lower=-8"):
        _model(sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0}, bits=4,
                              group_size=4)).load_state_dict(_model(HTGE2).state_dict())
    with pytest.raises(ValueError, match=r"group_size=4 but this model has group_size=8"):
        _model(sq.QuantConfig(estimator="htge", estimator_params={"t": 3.0}, bits=2,
                              group_size=8)).load_state_dict(_model(HTGE2).state_dict())


def test_checkpoint_into_a_float_model_quantizes_it_as_recorded(tmp_path):
    model = _model()
    x = _train(model)
    path = sq.save(model, tmp_path / "q.pt")
    plain = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4))
    sq.load(path, plain)
    assert {n: fq.get_extra_state() for n, fq in sq.quantized_layers(plain).items()} == {
        n: fq.get_extra_state() for n, fq in sq.quantized_layers(model).items()}
    assert torch.equal(plain(x), model(x))
    wrong = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 5))  # another head size
    with pytest.raises(ValueError, match=r"layer '2'.*shape=\[4, 8\] but this model has shape=\[5, 8\]"):
        sq.load(path, wrong)
    assert not sq.quantized_layers(wrong)  # left as it was


def test_corrupt_or_foreign_files_are_refused(tmp_path):
    path = sq.save(_model(), tmp_path / "c.pt")
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256 mismatch"):
        sq.load(path, _model())
    other = tmp_path / "plain.pt"
    torch.save(_model().state_dict(), other)
    with pytest.raises(ValueError, match="not a stequiv checkpoint"):
        sq.load(other, _model())


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "x.pt"
    monkeypatch.setattr("os.fsync", lambda fd: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        sq.save(_model(), target)
    assert list(Path(tmp_path).iterdir()) == []


def test_torch_save_of_the_model_fails_clearly():
    with pytest.raises(RuntimeError, match=r"only supported through state_dict\(\)"):
        torch.save(_model(), io.BytesIO())


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items() if isinstance(v, torch.Tensor)}


def test_a_failed_load_leaves_the_model_unchanged(tmp_path):
    """A model with one extra (float) layer: load used to overwrite the matching layers, then raise."""
    path = sq.save(_model(), tmp_path / "c.pt")
    torch.manual_seed(5)
    bigger = sq.quantize_(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)), HTGE2)
    bigger.append(nn.Linear(4, 2))
    before = _state(bigger)
    with pytest.raises(ValueError, match=r"unexpected keys \[\]|missing keys \['3\.bias', '3\.weight'\]"):
        sq.load(path, bigger)
    after = bigger.state_dict()
    assert before and all(torch.equal(before[k], after[k]) for k in before)


def test_a_shape_mismatch_is_refused_before_loading(tmp_path):
    saved = _model()
    saved.register_buffer("scale", torch.ones(3))
    path = sq.save(saved, tmp_path / "c.pt")
    other = _model(seed=5)
    other.register_buffer("scale", torch.ones(5))
    before = _state(other)
    with pytest.raises(ValueError, match=r"'scale' has shape \(3,\) in the checkpoint but \(5,\)"):
        sq.load(path, other)
    assert before and all(torch.equal(v, other.state_dict()[k]) for k, v in before.items())


def test_a_valid_hash_without_the_payload_keys_is_refused_by_name(tmp_path):
    import hashlib

    buffer = io.BytesIO()
    torch.save({"state_dict": _model().state_dict()}, buffer)  # no "quantization"
    data = buffer.getvalue()
    path = tmp_path / "c.pt"
    path.write_bytes(b"stequiv-checkpoint 1 " + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)
    with pytest.raises(ValueError, match=r"must be a dict with 'quantization' and 'state_dict'.*found \['state_dict'\]"):
        sq.load(path, _model())
