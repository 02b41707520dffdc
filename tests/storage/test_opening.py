"""What a store refuses to open, and what it cleans up when it opens: an empty file or
another application's SQLite file is never turned into a Kittiwake database, and the
tables of a rebuild whose process died are gone after the next open."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

import engine
from engine.errors import StorageError


async def test_an_empty_file_is_refused_and_left_empty(tmp_path: Path) -> None:
    empty = tmp_path / "touched.db"
    empty.touch()
    with pytest.raises(StorageError, match=r"touched\.db.*empty file"):
        async with engine.connect(str(empty)):
            pass
    assert empty.stat().st_size == 0


async def test_another_applications_database_is_refused_and_left_untouched(
        tmp_path: Path) -> None:
    theirs = tmp_path / "theirs.db"
    with sqlite3.connect(theirs) as db:
        db.execute("CREATE TABLE notes (text)")
        db.execute("INSERT INTO notes VALUES ('keep me')")
    before = theirs.read_bytes()
    with pytest.raises(StorageError, match=r"theirs\.db.*another application"):
        async with engine.connect(str(theirs)):
            pass
    assert theirs.read_bytes() == before  # not even switched to WAL mode
    assert not os.path.exists(f"{theirs}-wal")  # noqa: ASYNC240


async def test_a_new_file_is_still_created(tmp_path: Path) -> None:
    async with engine.connect(str(tmp_path / "new.db")) as tracker:
        async with tracker.start_run("r"):
            pass
        assert (await tracker.get_run("r")).run_id == "r"


def _tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return sorted(r[0] for r in db.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE '%\\_\\_%' "
            "ESCAPE '\\'"))


def test_a_rebuild_killed_partway_leaves_no_tables_after_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "rebuild.db"
    with engine.sync.connect(str(path), durability="normal") as tracker:
        for r in range(6):
            with tracker.start_run(f"r{r}") as run:
                for step in range(30_000):
                    run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    script = textwrap.dedent(f"""
        import engine
        with engine.sync.connect({str(path)!r}) as tracker:
            print("rebuilding", flush=True)
            tracker.rebuild_projections()
    """)
    for _ in range(20):  # kill it while the new tables exist
        with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as child:
            assert child.stdout is not None
            child.stdout.readline()
            deadline = time.monotonic() + 30
            while not any(t.endswith("__new") for t in _tables(path)):
                if child.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
        if any(t.endswith("__new") for t in _tables(path)):
            break
    else:
        pytest.fail("the rebuild never showed its new tables before it ended")
    with engine.sync.connect(str(path)) as tracker:
        assert _tables(path) == []
        assert tracker.get_run("r5").metrics["loss"].count == 30_000


def test_the_tables_of_a_rebuild_in_progress_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "live.db"
    with engine.sync.connect(str(path)):
        pass
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs__new (x)")
        # Claimed by a process that lives (this one), as a rebuild elsewhere claims it.
        db.execute("INSERT OR REPLACE INTO meta VALUES ('rebuilding', ?)", (os.getpid(),))
    with engine.sync.connect(str(path)):
        assert _tables(path) == ["runs__new"]
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 2147483647 WHERE key = 'rebuilding'")  # dead
    with engine.sync.connect(str(path)):
        assert _tables(path) == []


async def test_a_new_database_another_process_is_creating_is_waited_for(tmp_path: Path) -> None:
    """Opening a new database makes an empty file and writes its header moments later: a
    second process opening it in between waits for the header instead of refusing it."""
    path = tmp_path / "new.db"
    path.touch()  # the first process's open, its settings not yet written

    async def first_process_settles() -> None:
        await anyio.sleep(0.2)
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA journal_mode = WAL")  # writes the header

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(first_process_settles)
        async with engine.connect(str(path)) as tracker, tracker.start_run("r"):
            pass
    async with engine.connect(str(path)) as tracker:
        assert (await tracker.get_run("r")).run_id == "r"
