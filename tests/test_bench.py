"""The benchmark entry points answer ``--help`` with their usage, and refuse a name they do
not know with a usage error, before anything is measured."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_engine_help_prints_usage() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.engine", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m bench.engine")
    assert "ingest, read, rebuild, memory, create" in done.stdout
    assert "Traceback" not in done.stderr


def test_bench_engine_refuses_an_unknown_benchmark() -> None:
    done = subprocess.run([sys.executable, "-m", "bench.engine", "ingets"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "no benchmark 'ingets'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not done.stdout  # nothing was measured
