# Two commands do all set-up on a fresh machine:
#   make reproduce   # the main job: the paper's Tables 3-5 and Figures 1/3 on real data (quick preset)
#   make test        # lint + the whole test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stequiv-installed
OUT ?= results/quick

.PHONY: setup test lint reproduce reproduce-full bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	# The CPU build of torch first: a bare `torch` requirement would pull CUDA wheels.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,hf]'
	touch $@

setup: $(STAMP)

lint: setup
	$(BIN)/ruff check src tests benchmarks

test: lint
	$(BIN)/python -m pytest -n 2 -q

reproduce: setup
	$(BIN)/stequiv reproduce --quick --out $(OUT)

# Full-size Fashion-MNIST (Debian's dataset-fashion-mnist; installed here when apt is usable).
reproduce-full: setup
	@test -d /usr/share/datasets/fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)
	$(BIN)/stequiv reproduce --preset full --out results/full

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) results .pytest_cache
