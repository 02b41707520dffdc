# Two commands on a fresh machine: `make demo` and `make test`. Each makes .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint torture bench bench-engine bench-query bench-subscribe bench-system bench-postgres bench-remote bench-compare bench-jobs clean

$(STAMP): pyproject.toml setup.py engine/_runtime/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,pandas,images,server,client]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kittiwake demo

test: lint
	$(BIN)/python -m pytest

# ruff, the type checker (strict on engine/), the import layers, and the docs build. The docs
# build is not --quiet: mkdocs 1.6 then drops the warnings before --strict counts them, and a
# broken reference would pass (https://github.com/mkdocs/mkdocs/issues/4126).
lint: $(STAMP)
	$(BIN)/ruff check engine tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/mkdocs build --strict --site-dir build/site

# Kittiwake's own benchmarks against its targets; figures go into docs/performance.md.
bench-engine: $(STAMP)
	$(BIN)/python -m bench.engine

# The runs-table queries over 100,000 runs; exits 1 when a target is missed.
bench-query: $(STAMP)
	$(BIN)/python -m bench.query

# Log -> subscriber latency and what subscribers cost the writer.
bench-subscribe: $(STAMP)
	$(BIN)/python -m bench.subscribe

# What recording the machine costs a run: the system sampler's share of a core, and
# environment capture's cost to the event loop.
bench-system: $(STAMP)
	$(BIN)/python -m bench.system

# The job queue: enqueue to the job's process started, with an idle worker (both backends).
bench-jobs: $(STAMP)
	$(BIN)/python -m bench.jobs

# The same benchmarks on PostgreSQL (the server in KITTIWAKE_TEST_POSTGRES, by default
# postgresql://postgres@127.0.0.1:5432/test; each benchmark in schemas of its own).
bench-postgres: $(STAMP)
	$(BIN)/python -m bench.postgres

# The server and the remote tracker beside the embedded engine: remote ingest, live-stream
# latency with 100 subscribers, and the server's memory under 100 concurrent writers.
bench-remote: $(STAMP)
	$(BIN)/python -m bench.remote

# The side-by-side comparison with other trackers. The peers live in their own
# virtual environment under bench/.peers, never in the project's dependencies.
bench-compare: $(STAMP)
	$(BIN)/python bench/compare/run.py

# kill -9 at random instants of writers and rebuilds, 1,000 trials in all (docs/reliability.md);
# exits 1 on any violation of the durability promise.
torture: $(STAMP)
	$(BIN)/python -m bench.torture

bench: bench-engine bench-query bench-subscribe bench-system bench-postgres bench-remote bench-jobs bench-compare

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
