"""On SQLite the projections' rows are saved behind the log: what a user must never see of it.

A commit writes its events; the rows it changes in the runs table, the metric summaries and
the series wait in the writer's cache and are saved a moment later, or before any read. These
tests hold the rows back on purpose (a long ``LAG``), check that they did wait — the file's
checkpoints behind the log's head — and then that every read, in this process or another,
shows everything committed; that a process killed before saving loses nothing; and that a
save that fails keeps the data and says so.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import engine
from engine._storage.rebuild import CHECK, build
from engine._storage.sqlite import commit
from engine._storage.sqlite.store import SqliteStore
from engine.errors import StorageError


def _positions(path: Path) -> tuple[int, int, int]:
    """The log's head and the lowest and highest projection checkpoints, as the file has
    them (read on a connection of its own, as another process would)."""
    with sqlite3.connect(path) as db:
        ((head, low, high),) = db.execute(
            "SELECT (SELECT coalesce(max(position), 0) FROM events), "
            "(SELECT min(position) FROM checkpoints), (SELECT max(position) FROM checkpoints)"
        ).fetchall()
    db.close()
    return head, low, high


def _trailing(path: Path) -> bool:
    head, low, high = _positions(path)
    return low == high < head


def _store(tracker: engine.Tracker) -> SqliteStore:
    store = tracker._store
    assert isinstance(store, SqliteStore)
    return store


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows wait until a read (or close) saves them: no save of their own comes first."""
    monkeypatch.setattr(commit, "LAG", 3600.0)


async def _make_runs(tracker: engine.Tracker, count: int) -> list[str]:
    ids = []
    for k in range(count):
        async with tracker.start_run(None, config={"seed": k}, tags=["t"]) as run:
            run.log_metrics({"loss": 1.0 / (k + 1)}, step=0)
            ids.append(run.run_id)
    return ids


@pytest.mark.usefixtures("held")
async def test_a_read_right_after_a_run_ends_shows_all_of_it(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with engine.connect(str(path), durability="full") as tracker:
        ids = await _make_runs(tracker, 3)
        assert _trailing(path)
        listed = await tracker.list_runs(order_by="config.seed")
        assert [r.run_id for r in listed] == ids
        assert [r.status for r in listed] == ["succeeded"] * 3
        assert [r.config["seed"] for r in listed] == [0, 1, 2]
        assert [r.metrics["loss"].last for r in listed] == [1.0, 0.5, 1 / 3]
        found = await tracker.list_runs(where="config.seed >= 1 and metrics.loss < 0.6",
                                        order_by="config.seed")
        assert [r.config["seed"] for r in found] == [1, 2]
        assert not _trailing(path)  # the read saved them, with the checkpoints


@pytest.mark.usefixtures("held")
async def test_another_tracker_on_the_file_reads_what_the_writer_has_not_saved(
        tmp_path: Path) -> None:
    """As another process would (a dashboard, the CLI): it folds the missing events from the
    log itself. The writer then goes on, past rows someone else saved."""
    path = tmp_path / "runs.db"
    async with engine.connect(str(path), durability="full") as writer, \
            engine.connect(str(path)) as reader:
        async with writer.start_run("a", config={"lr": 0.1}) as run:
            run.log_metrics({"loss": 2.0}, step=0)
        assert _trailing(path)
        state = await reader.get_run("a")
        assert (state.status, state.config, state.metrics["loss"].last) == \
            ("succeeded", {"lr": 0.1}, 2.0)
        assert not _trailing(path)

        async with writer.start_run("a", resume=True) as run:
            run.log_metrics({"loss": 1.0}, step=1)
        async with writer.start_run("b", tags=["x"]) as run:
            run.log_metrics({"loss": 3.0}, step=0)
        assert _trailing(path)
        series = await reader.read_series("a", "loss")
        assert (list(series.steps), list(series.values)) == ([0, 1], [2.0, 1.0])
        assert [r.run_id for r in await reader.list_runs(where="tags contains 'x'")] == ["b"]
        assert (await writer.get_run("a")).metrics["loss"].count == 2
        assert await _store(writer).verify_rebuild() == []


def test_a_process_killed_before_saving_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    child = textwrap.dedent("""
        import asyncio, os, sys
        import engine
        from engine._storage.sqlite import commit

        commit.LAG = 3600.0

        async def main(path):
            async with engine.connect(path, durability="full") as tracker:
                for k in range(5):
                    async with tracker.start_run(f"r{k}", config={"k": k}) as run:
                        run.log_metrics({"loss": float(k)}, step=0)
                        run.log_metrics({"loss": float(k) / 2}, step=1)
                os._exit(0)  # killed: no close, no save

        asyncio.run(main(sys.argv[1]))
    """)
    subprocess.run([sys.executable, "-c", child, str(path)], check=True, timeout=120)
    assert _trailing(path)

    async def reopen() -> None:
        async with engine.connect(str(path)) as tracker:
            assert not _trailing(path)  # opening folded what the log held
            listed = await tracker.list_runs(order_by="run_id")
            assert [(r.run_id, r.status, r.config["k"], r.metrics["loss"].count) for r in listed] \
                == [(f"r{k}", "succeeded", k, 2) for k in range(5)]
            assert await _store(tracker).verify_rebuild() == []

    anyio.run(reopen)


@pytest.mark.usefixtures("held")
async def test_a_save_that_fails_keeps_the_data_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    async with engine.connect(str(path), durability="full") as tracker:
        ids = await _make_runs(tracker, 2)
        store = _store(tracker)
        async with store.lock:  # the file refuses writes from now on (SQLITE_READONLY)
            await store.writer.execute("PRAGMA query_only = 1")
        with pytest.raises(StorageError):
            await tracker.list_runs()
        assert _trailing(path)
        async with store.lock:
            await store.writer.execute("PRAGMA query_only = 0")
        listed = await tracker.list_runs(order_by="config.seed")
        assert [(r.run_id, r.status) for r in listed] == [(i, "succeeded") for i in ids]
        ids += await _make_runs(tracker, 1)  # and the writer goes on
        assert [r.run_id for r in await tracker.list_runs(order_by="created_at")] == ids
        assert await store.verify_rebuild() == []


async def test_rows_are_saved_soon_without_a_read(tmp_path: Path) -> None:
    """A writer that goes quiet saves what waits within moments: another process reading
    the file with SQLite alone sees it, and a crash then has nothing to fold again."""
    path = tmp_path / "runs.db"
    async with engine.connect(str(path), durability="full") as tracker:
        await _make_runs(tracker, 2)
        for _ in range(1000):  # 10 s at most
            if not _trailing(path):
                break
            await anyio.sleep(0.01)
        assert not _trailing(path)
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM runs WHERE status = 'succeeded'"
                              ).fetchone() == (2,)
        db.close()


@pytest.mark.usefixtures("held")
async def test_a_verification_compares_with_rows_not_saved_when_it_began(
        tmp_path: Path) -> None:
    """Runs committed while a verification of the projections runs leave rows unsaved: its
    last step, which compares the live tables at the log's head, saves them first rather
    than reporting them as damage."""
    path = tmp_path / "runs.db"
    async with engine.connect(str(path)) as tracker:
        await _make_runs(tracker, 3)
        store = _store(tracker)
        assert _trailing(path)
        # As if the runs had landed after the verification's start: straight to its build.
        assert await build(store.rebuild_site(), CHECK, None) == []
        assert not _trailing(path)
