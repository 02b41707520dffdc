"""A short run (two trials) of every ``make torture`` scenario (the full one, 1,000 trials, is
in bench/), and proof that its checker catches what it is there to catch."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from bench import torture
from tests.conftest import require_postgres


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    "sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "server", "spool",
    "sqlite-rebuild", pytest.param("postgres-rebuild", marks=pytest.mark.postgres),
    "sqlite-upload"])
def test_a_few_trials_of_each_scenario_keep_the_promise(name: str, tmp_path: Path) -> None:
    if name.startswith("postgres"):
        require_postgres()
    scenario, _ = torture.SCENARIOS[name]
    outcome = scenario(2, random.Random(), tmp_path)
    assert outcome.trials == 2
    assert outcome.violations == []


def test_the_checker_sees_a_lost_point_and_a_projection_that_lies(tmp_path: Path) -> None:
    url = str(tmp_path / "runs.db")
    ledger = torture.Ledger()
    ledger.take(torture._kill_child([torture.WRITER, url, "full", "7"], random.Random(7),
                                    longest=0.3))
    assert ledger.flushed
    assert torture.asyncio.run(torture.verify(url, ledger)) == []
    run_id, last = next(iter(ledger.flushed.items()))
    ledger.flushed[run_id] = last + 10_000  # as if a flushed step had vanished
    assert any("flushed, then lost" in line
               for line in torture.asyncio.run(torture.verify(url, ledger)))
    ledger.flushed[run_id] = last
    with sqlite3.connect(url) as db:
        db.execute("UPDATE metrics SET max = max + 1 WHERE metric = 'm'")
    broken = torture.asyncio.run(torture.verify(url, ledger))
    assert any(line.startswith("check: table metrics") for line in broken)
    assert any("differ from the fold in metrics" in line for line in broken)
