"""The install's layers: what each import pulls in, and the error a feature gives without its extra.

Each check runs in a fresh process, where a missing extra is simulated by blocking its modules
(``sys.modules[name] = None`` makes ``import name`` raise ImportError, as if not installed).
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import stequiv

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(code: str) -> subprocess.CompletedProcess:
    prelude = f"import sys; sys.path.insert(0, {SRC!r})\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=120)


def test_dir_shows_the_public_names_and_hides_helpers():
    names = dir(stequiv)
    for public in ("to_ste", "quantize_", "QuantConfig", "alpha", "remap", "__version__"):
        assert public in names
    for private in ("Any", "importlib", "annotations", "_TORCH_NAMES"):
        assert private not in names
    assert set(stequiv.__all__) <= set(names)


def test_every_public_name_resolves():
    for name in stequiv.__all__:
        assert getattr(stequiv, name) is not None


def test_touching_a_torch_name_imports_torch_but_not_dynamo():
    done = _run("""
        import stequiv
        assert 'torch' not in sys.modules, 'import stequiv must stay torch-free'
        stequiv.quantize_, stequiv.to_ste, stequiv.QuantConfig
        assert 'torch' in sys.modules
        assert 'torch._dynamo' not in sys.modules, 'touching a torch name imported torch._dynamo'
    """)
    assert done.returncode == 0, done.stderr


def test_data_and_plots_without_the_experiments_extra_name_it(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    done = _run(f"""
        for blocked in ("PIL", "PIL.Image", "mlxtend", "mlxtend.data", "matplotlib"):
            sys.modules[blocked] = None
        import stequiv.data, stequiv.plots      # importing stays possible
        from stequiv._optional import MissingExtraError
        calls = {{
            "image folders": lambda: stequiv.data.ImageFolderDataset({str(tmp_path)!r}, "train"),
            "'mnist-5k'": lambda: stequiv.data.load_split("mnist-5k", "train"),
            "plotting": lambda: stequiv.plots.plot_estimators({str(tmp_path / "figs")!r}, ["ste"]),
        }}
        for feature, call in calls.items():
            try:
                call()
            except MissingExtraError as err:
                assert "pip install 'stequiv[experiments]'" in str(err), err
                assert feature in str(err), err
            else:
                raise AssertionError(feature + " ran without its extra")
        print("ok")
    """)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
