"""The property: whatever bytes of a SQLite file are damaged, opening it and reading from it
either answers or raises one of Kittiwake's own errors — never a driver's or a decoder's
(``sqlite3.DatabaseError``, ``UnicodeDecodeError``, ``orjson.JSONDecodeError``, …)."""

from __future__ import annotations

import contextlib
import random
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine.errors import EngineError


@pytest.fixture(scope="module")
def intact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with a bit of everything: configs, tags, two metrics, a fork, an
    experiment."""
    path = tmp_path_factory.mktemp("intact") / "runs.db"
    with engine.sync.connect(str(path), durability="normal") as tracker:
        with tracker.start_run("a", experiment="e", tags=["t"],
                               config={"lr": 0.1, "name": "x", "words": ["a", "b"]}) as run:
            for step in range(3_000):
                run.log_metrics({"loss": step * 0.5, "acc": 1 / (step + 1)}, step=step)
        with tracker.start_run("b", experiment="e", fork=("a", 1_500)) as run:
            for step in range(1_501, 2_500):
                run.log_metrics({"loss": step * 0.25}, step=step)
    return path


async def _read_everything(url: str) -> None:
    async with engine.connect(url, durability="normal") as tracker:
        for run_id in ("a", "b"):
            await tracker.get_run(run_id)
            await tracker.read_series(run_id, "loss")
            await tracker.read_series(run_id, "loss", max_points=50)
            await tracker.lineage(run_id)
        await tracker.get_run("a", as_of=5)
        await tracker.list_runs(where="metrics.loss > 1", order_by="-metrics.loss")
        await tracker.list_runs(where="config.words contains 'a' and tags contains 't'")
        await tracker.group_runs(by=["experiment"])
        await tracker.get_experiment("e")
        [event async for event in tracker.events()]


@settings(max_examples=200)
@given(rng=st.randoms(use_true_random=False), bytes_damaged=st.integers(1, 128))
async def test_a_damaged_file_raises_only_engine_errors(intact: Path, tmp_path_factory: Any,
                                                        rng: random.Random,
                                                        bytes_damaged: int) -> None:
    path = tmp_path_factory.mktemp("damaged") / f"{uuid.uuid4().hex[:8]}.db"
    shutil.copy(intact, path)
    size = path.stat().st_size
    with path.open("r+b") as file:  # anywhere in the file: pages, headers, payloads
        for _ in range(bytes_damaged):
            file.seek(rng.randrange(size))
            file.write(bytes([rng.randrange(256)]))
    # StorageError above all; a refusal where the damage made data look wrong.
    with contextlib.suppress(EngineError):
        await _read_everything(str(path))
