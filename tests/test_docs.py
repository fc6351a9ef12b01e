"""The documentation: every Python block of README.md and docs/ runs, the site builds with
``mkdocs build --strict``, and the built home page and an API page render in headless Chromium.

A block that cannot run on its own is fenced as ```` ```python no-run ````; every other
```` ```python ```` block runs, the blocks of one file in order in one namespace (a fresh process,
in a temporary folder, warnings as errors).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])


def python_blocks(text: str) -> list[tuple[str, bool]]:
    """``(code, runs)`` of every ```` ```python ```` block; ``runs`` is False for ``no-run``."""
    blocks = []
    for match in FENCE.finditer(text):
        marker = match.group(1).strip()
        if marker not in ("", "no-run"):
            raise ValueError(f"unknown marker {marker!r} on a python fence (only 'no-run')")
        blocks.append((match.group(2), marker != "no-run"))
    return blocks


def test_blocks_are_found_with_their_marker():
    text = "a\n```python\nx = 1\n```\n\n```python no-run\ntrain()\n```\n```bash\nls\n```\n"
    assert python_blocks(text) == [("x = 1\n", True), ("train()\n", False)]
    with pytest.raises(ValueError, match="unknown marker 'norun'"):
        python_blocks("```python norun\nx\n```\n")


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    return env


RUNNABLE = [p for p in PAGES if any(runs for _, runs in python_blocks(p.read_text("utf-8")))]


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_python_blocks_run(page, tmp_path):
    blocks = [code for code, runs in python_blocks(page.read_text("utf-8")) if runs]
    script = tmp_path / "blocks.py"
    script.write_text("\n".join(blocks), encoding="utf-8")
    done = subprocess.run([sys.executable, "-W", "error", str(script)], cwd=tmp_path,
                          env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{page.name}: its Python blocks failed:\n{done.stderr[-3000:]}"


def test_readme_and_pages_have_runnable_examples():
    assert ROOT / "README.md" in RUNNABLE
    assert len(RUNNABLE) >= 4, [p.name for p in RUNNABLE]


# ------------------------------------------------------------------------------ the site
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="building the site needs `pip install 'stequiv[docs]'`")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q",
                           "-f", str(ROOT / "mkdocs.yml"), "-d", str(out)],
                          cwd=ROOT, env=_subprocess_env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    return out


@pytest.mark.slow
def test_site_builds_strictly_with_generated_reference(site):
    cli = (site / "reference" / "cli" / "index.html").read_text("utf-8")
    for command in ("stequiv reproduce", "stequiv study", "stequiv alpha", "--out"):
        assert command in cli
    config = (site / "reference" / "config" / "index.html").read_text("utf-8")
    assert "lr_sgd" in config and "switch_fraction" in config
    api = (site / "reference" / "qat" / "index.html").read_text("utf-8")
    assert "stequiv.qat.to_ste" in api and "stequiv.qat.quantize_" in api


def _png_byte_values(data: bytes) -> int:
    """How many distinct byte values the decompressed pixel rows of a PNG hold (0 if not a PNG):
    a blank page has a handful (its colour and the filter bytes), a rendered one many."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return 0
    pos, idat = 8, b""
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        if kind == b"IDAT":
            idat += data[pos + 8:pos + 8 + length]
        pos += 12 + length
    return len(set(zlib.decompress(idat)))


def test_png_check_tells_blank_from_drawn():
    def png(rows: bytes) -> bytes:
        chunk = b"IDAT" + zlib.compress(rows)
        return (b"\x89PNG\r\n\x1a\n" + (len(chunk) - 4).to_bytes(4, "big") + chunk + b"\0" * 4)

    assert _png_byte_values(png(b"\0" + b"\xff" * 30)) == 2  # filter byte + one colour: blank
    assert _png_byte_values(png(bytes(range(256)))) == 256
    assert _png_byte_values(b"not a png") == 0


@pytest.mark.slow
@pytest.mark.parametrize("page", ["index.html", "reference/qat/index.html"])
def test_site_renders_in_headless_chromium(site, page, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shot = tmp_path / (page.replace("/", "_") + ".png")
    done = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                           "--hide-scrollbars", "--window-size=1280,900",
                           f"--screenshot={shot}", (site / page).as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    assert _png_byte_values(shot.read_bytes()) > 32, f"{page} rendered blank ({shot})"
    artifacts = os.environ.get("STEQUIV_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, Path(artifacts) / shot.name)


# ------------------------------------------------------------------------------ the hook
def _hook():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_hook", ROOT / "docs" / "hooks" / "generated.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_results_tables_come_with_the_command_that_made_them(tmp_path):
    hook = _hook()
    assert "No reproduction folder" in hook.results_markdown(tmp_path)
    run = tmp_path / "quick"
    (run / "tables").mkdir(parents=True)
    (run / "tables" / "table4.md").write_text("| a |\n|---|\n| 0.5% |\n", encoding="utf-8")
    (run / "source.json").write_text(
        '{"command": "stequiv reproduce --quick --out q", "version": "0.1.0", "machine": "m"}',
        encoding="utf-8")
    text = hook.results_markdown(tmp_path)
    assert "Made by `stequiv reproduce --quick --out q` with stequiv 0.1.0 on m" in text
    assert "| 0.5% |" in text
    (run / "source.json").write_text('{"command": "x"}', encoding="utf-8")
    with pytest.raises(ValueError, match="lacks"):
        hook.results_markdown(tmp_path)


def test_an_unknown_marker_fails_the_build():
    class Page:
        class file:  # mkdocs names it so
            src_path = "x.md"

    hook = _hook()
    with pytest.raises(ValueError, match="unknown marker stequiv:nope"):
        hook.on_page_markdown("a\n<!-- stequiv:nope -->\n", Page, None, None)
    assert hook.on_page_markdown("no marker\n", Page, None, None) == "no marker\n"


RUN_STORY = re.compile(r"load average|\b20\d\d-\d\d-\d\d \d\d:\d\d\b|my benchmark|other runs on", re.I)


def test_benchmark_tables_reach_the_docs_without_the_run_story():
    # Result files record when a benchmark ran and how busy the machine was; the pages that show
    # them keep the machine, versions and threads and drop the rest, whatever the file holds.
    hook = _hook()
    text = hook._for_users("2026-01-02 03:04 · x86_64 · torch (1 thread) · load average 1.60 at "
                           "the end\nLoad average (1/5/15 min) before 1/1/1, after 2/2/2.\n| a |\n")
    assert text == "x86_64 · torch (1 thread)\n| a |\n"
    shown = [hook._benchmarks(None)] + [hook._benchmark_file(p.stem)
                                        for p in (ROOT / "benchmarks" / "results").glob("*.md")]
    for page in [*shown, *(p.read_text("utf-8") for p in PAGES)]:
        assert not RUN_STORY.search(page), RUN_STORY.search(page)


def test_result_file_marker_renders_a_committed_result_table():
    class Page:
        class file:
            src_path = "x.md"

    hook = _hook()
    text = hook.on_page_markdown("<!-- stequiv:result-file study-optimizers -->\n", Page, None, None)
    assert text.startswith("| optimizer | twin rule | order | slope | verdict |")
    with pytest.raises(ValueError, match="needs the result file's name"):
        hook.on_page_markdown("<!-- stequiv:result-file -->\n", Page, None, None)
