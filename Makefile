# Two commands do all set-up on a fresh machine (Linux/macOS; Windows: see README):
#   make run   - create .venv, install, segment the bundled sample images with the bundled model
#   make test  - create .venv, install with dev extras, run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision are pinned in pyproject.toml (2.14.1 / 0.29.1)
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q

.PHONY: run test install dev clean bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
dev: $(VENV)/.installed-dev

run: install
	$(BIN)/mito-run samples/ -o out/demo --overwrite
	@echo "Results: out/demo/objects.csv, out/demo/images.csv, out/demo/overlays/, out/demo/labels/, out/demo/rois/"

# two workers, a test file each at a time (file-scoped fixtures are built once); see README, Development
test: dev
	$(BIN)/python -m pytest -n 2 --dist loadfile

bench: dev
	$(BIN)/python bench/bench_run.py
	$(BIN)/python bench/bench_backends.py

clean:
	rm -rf $(VENV) out .pytest_cache
