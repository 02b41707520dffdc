# Two commands on a fresh machine: `make demo` and `make test`. Each makes .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-engine clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres]'
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

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
