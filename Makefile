# Two commands do everything on a fresh machine: `make demo` and `make test` (both idempotent).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[test,lab]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/exo-nb demo

test: setup
	$(BIN)/ruff check exosphere_nb tests benchmarks
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q --nbval --nbval-current-env --nbval-sanitize-with notebooks/sanitize.cfg notebooks/
	$(BIN)/python -m pytest -q -o addopts="-ra --strict-markers" tests/lab  # JupyterLab + Debian's chromium

lint: setup
	$(BIN)/ruff check exosphere_nb tests benchmarks

bench: setup
	$(BIN)/python benchmarks/fanout.py --n 10000
	$(BIN)/python benchmarks/latency.py
	$(BIN)/python benchmarks/memory.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache .exosphere
