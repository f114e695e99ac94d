# Two commands on a fresh machine: `make demo` and `make test`.
# The set-up installs the CPU build of torch first (override with `make demo TORCH=...`):
# a bare `torch>=2.3` would resolve to a multi-gigabyte CUDA build here.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint bench setup clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/vaelab train --data digits --latent-dim 2 --epochs 40 --out runs/demo --overwrite

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) runs
