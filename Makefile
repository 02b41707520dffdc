# Two commands on a fresh machine: `make demo` and `make test`. Each makes .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint browser screenshots torture mutants bench bench-engine bench-query bench-subscribe bench-system bench-postgres bench-remote bench-dashboard bench-compare bench-jobs clean

$(STAMP): pyproject.toml setup.py engine/_runtime/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,postgres,pandas,images,server,client]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kittiwake demo

# The suite on TEST_WORKERS processes (pytest-xdist), each test module whole on one of them:
# its module-wide fixtures (a browser, a server, one mypy run) start once. Two fit the 2-core
# CI machine; PostgreSQL's default of 100 connections is shared by all of them.
TEST_WORKERS ?= 2

test: lint browser
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The dashboard's tests drive the system's Chromium through Playwright (Playwright's own
# browser download is not used). Installed here when missing and we are root (a CI machine);
# otherwise those tests are skipped, except under CI, where they fail.
browser:
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

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

# The dashboard in Chromium: first chart of 1M points, runs table of 10,000 runs, log -> pixel.
bench-dashboard: $(STAMP) browser
	$(BIN)/python -m bench.dashboard

# The screenshots in docs/dashboard.md, made again from the pages as they are.
screenshots: $(STAMP) browser
	$(BIN)/python -m tests.dashboard.screenshots --out docs/images

# The side-by-side comparison with other trackers. The peers live in their own
# virtual environment under bench/.peers, never in the project's dependencies.
bench-compare: $(STAMP)
	$(BIN)/python bench/compare/run.py

# kill -9 at random instants of writers and rebuilds, and power loss simulated under a SQLite
# writer, 1,000 trials in all (docs/reliability.md);
# exits 1 on any violation of the durability promise.
torture: $(STAMP)
	$(BIN)/python -m bench.torture

# Mutation testing (Cosmic Ray) of the writer, commit, subscriptions, rebuild and the query
# compiler, each mutant against its module's tests, in a copy of the tree; niced, at most
# about an hour and a half. Figures and surviving mutants in docs/reliability.md.
# Not part of `make test`.
mutants: $(STAMP)
	$(BIN)/python -c "import cosmic_ray" 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[mutants]'
	nice -n 10 $(BIN)/python -m bench.mutants

bench: bench-engine bench-query bench-subscribe bench-system bench-postgres bench-remote bench-jobs bench-dashboard bench-compare

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
