# Two commands on a fresh machine: `make demo` and `make test`. Each makes .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-engine bench-compare clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,pandas]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kittiwake demo

test: $(STAMP)
	$(BIN)/ruff check engine tests bench
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check engine tests bench

# Kittiwake's own benchmarks (issue targets); figures go into docs/performance.md.
bench-engine: $(STAMP)
	$(BIN)/python -m bench.engine

# The side-by-side comparison with other trackers (issue 5). The peers live in their own
# virtual environment under bench/.peers, never in the project's dependencies.
bench-compare: $(STAMP)
	$(BIN)/python bench/compare/run.py

bench: bench-engine bench-compare

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
