# Two commands on a fresh machine: `make demo` and `make test`.
# The set-up installs the CPU build of torch first (override with `make demo TORCH=...`):
# a bare `torch>=2.3` would resolve to a multi-gigabyte CUDA build here.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint bench setup clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(BIN)/vaelab train --data digits --latent-dim 2 --epochs 40 --out runs/demo --overwrite

# The browser tests drive Debian's chromium with Playwright (never `playwright install`: it
# downloads a browser build, which cannot be fetched here). Installed when root with apt-get;
# otherwise tests/test_browser.py skips and prints why.
CHROMIUM ?= /usr/bin/chromium
browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "make: installing chromium for the browser tests (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
			|| echo "make: apt-get could not install chromium; the browser tests will skip"; \
	else echo "make: $(CHROMIUM) missing and cannot install it (needs root and apt-get); the browser tests will skip"; fi

# one pytest worker per core (pytest-xdist): most tests wait on subprocesses and files
test: setup browser
	$(BIN)/python -m pytest -q -n auto

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests

clean:
	rm -rf $(VENV) runs
