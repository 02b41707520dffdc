"""The store contract on SQLite (file and in-memory), and what only SQLite can show."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

import engine
from engine._core.events import default_upcasters
from engine._query.execute import select_runs
from engine._query.sql import SQLITE, Compiled
from engine._query.tree import Selection
from engine._storage.contract import AppendRequest, Store
from engine._storage.registry import open_store
from engine._storage.session import Session
from engine._storage.sqlite.session import connect
from engine._storage.sqlite.store import SqliteStore, sqlite_path
from engine.errors import EngineError, StorageError, ValidationError
from tests.store_contract import NOW, StoreContract, WriterContract, created, metrics


async def _raw(store: Store, sql: str) -> list[tuple[Any, ...]]:
    return await _on_writer(store, lambda session: session.fetch(sql))


async def _on_writer(store: Store, work: Callable[[Session], Awaitable[Any]]) -> Any:
    assert isinstance(store, SqliteStore)
    await store.current()  # the projections' rows trail the log until a read saves them
    async with store.lock:
        found = await work(store.writer)
    return [tuple(row) for row in found] if isinstance(found, list) else found


class _SqliteFaults:
    driver_errors = (sqlite3.Error,)

    async def fault(self, store: Store, on: bool) -> None:
        """A connection that may only read: SQLite refuses the writes (SQLITE_READONLY)."""
        assert isinstance(store, SqliteStore)
        async with store.lock:
            await store.writer.execute(f"PRAGMA query_only = {int(on)}")


class _OnSqlite(_SqliteFaults, StoreContract):
    async def raw(self, store: Store, sql: str) -> list[tuple[Any, ...]]:
        return await _raw(store, sql)

    async def on_writer(self, store: Store, work: Callable[[Session], Awaitable[Any]]) -> Any:
        return await _on_writer(store, work)


class TestSqliteFile(_OnSqlite):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return str(tmp_path / "store.db")


class TestSqliteMemory(_OnSqlite):
    persistent = False

    @pytest.fixture
    def url(self) -> str:
        return ":memory:"


class TestSqliteWriter(_SqliteFaults, WriterContract):
    @pytest.fixture
    def url(self, tmp_path: Path) -> str:
        return str(tmp_path / "writer.db")


@pytest.mark.parametrize(("url", "path"), [
    ("runs.db", "runs.db"), ("/abs/runs.db", "/abs/runs.db"), (":memory:", ":memory:"),
    ("sqlite:///rel/runs.db", "rel/runs.db"), ("sqlite:////abs/runs.db", "/abs/runs.db"),
    ("sqlite:///:memory:", ":memory:"), ("mysql://x", None), ("", None),
])
def test_sqlite_urls(url: str, path: str | None) -> None:
    assert sqlite_path(url) == path


def test_an_unknown_url_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="mysql"):
        open_store("mysql://host/db", durability="full", upcasters=default_upcasters())


@pytest.mark.parametrize(("durability", "level"), [("full", 2), ("normal", 1)])
async def test_durability_is_sqlite_synchronous(tmp_path: Path, durability: str,
                                                level: int) -> None:
    store = open_store(str(tmp_path / "d.db"), durability=durability,
                       upcasters=default_upcasters())
    await store.open()
    try:
        assert await _raw(store, "PRAGMA synchronous") == [(level,)]
        assert await _raw(store, "PRAGMA journal_mode") == [("wal",)]
    finally:
        await store.close()


@pytest.mark.parametrize(("setting", "kib"), [(None, 65536), ("2", 2048), (" 16 ", 16384)])
async def test_the_page_cache_is_64_mib_or_what_the_environment_says(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str | None, kib: int) -> None:
    if setting is None:
        monkeypatch.delenv("KITTIWAKE_SQLITE_CACHE_MIB", raising=False)
    else:
        monkeypatch.setenv("KITTIWAKE_SQLITE_CACHE_MIB", setting)
    async with engine.connect(str(tmp_path / "c.db")) as tracker:
        store = tracker._store
        assert store is not None
        assert await _raw(store, "PRAGMA cache_size") == [(-kib,)]
        # A large file streams through a smaller cache, which then grows back.
        async with tracker.start_run("r") as run:
            await run.upload({"big": b"x" * (5 << 20)})
        assert await _raw(store, "PRAGMA cache_size") == [(-kib,)]


@pytest.mark.parametrize("setting", ["0", "-5", "lots", "1.5"])
async def test_a_page_cache_setting_that_is_not_a_size_is_refused_by_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    monkeypatch.setenv("KITTIWAKE_SQLITE_CACHE_MIB", setting)
    with pytest.raises(ValidationError, match="KITTIWAKE_SQLITE_CACHE_MIB") as caught:
        async with engine.connect(str(tmp_path / "c.db")):
            pass
    assert caught.value.key == "KITTIWAKE_SQLITE_CACHE_MIB"
    assert not (tmp_path / "c.db").exists()  # refused before anything was written


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    store = open_store(str(path), durability="full", upcasters=default_upcasters())
    with pytest.raises(EngineError, match="newer than this release"):
        await store.open()


async def test_projections_behind_the_log_are_rebuilt_on_open(tmp_path: Path) -> None:
    path = str(tmp_path / "behind.db")
    store = open_store(path, durability="normal", upcasters=default_upcasters())
    await store.open()
    await store.append([AppendRequest("p", "a", [created(), metrics("m", [0, 1], [1.0, 2.0])])],
                       now=NOW)
    await store.close()
    with sqlite3.connect(path) as conn:  # as if a release had added a projection
        conn.execute("DELETE FROM metrics")
        conn.execute("UPDATE checkpoints SET position = 0 WHERE name = 'metrics'")
    store = open_store(path, durability="normal", upcasters=default_upcasters())
    await store.open()
    try:
        state = await store.get_run("p", "a")
        assert state is not None
        assert state.metrics["m"].count == 2
        assert await store.verify_rebuild() == []
    finally:
        await store.close()


async def test_a_new_database_has_large_pages(tmp_path: Path) -> None:
    """Chunk columns are tens of kilobytes: 16 KiB pages hold them in a quarter of the
    overflow pages, and large commits write a quarter of the WAL frames."""
    path = tmp_path / "pages.db"
    store = open_store(str(path), durability="normal", upcasters=default_upcasters())
    await store.open()
    await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA page_size").fetchone() == (16384,)


async def test_the_wal_is_checkpointed_beside_the_commits(tmp_path: Path) -> None:
    """No commit pays for copying the WAL into the database (SQLite's automatic checkpoint
    is off on every connection of the store), and yet the copy happens while the store is
    open: the checkpoint thread does it soon after commits."""
    path = tmp_path / "wal.db"
    store = open_store(str(path), durability="normal", upcasters=default_upcasters())
    await store.open()
    try:
        assert await _raw(store, "PRAGMA wal_autocheckpoint") == [(0,)]
        assert isinstance(store, SqliteStore)
        checkpointer = store.checkpointer
        assert checkpointer is not None
        empty = path.stat().st_size
        steps = list(range(20_000))
        await store.append([AppendRequest("p", "a", [
            created(), metrics("m", steps, [float(s) for s in steps])])], now=NOW)
        # The database file grows only when a checkpoint copies the pages out of the WAL;
        # nothing signals that but the file itself, so watch it — and the thread's count,
        # which it raises only once the checkpoint it is growing the file with returns.
        with anyio.fail_after(30):
            while (path.stat().st_size <= empty + 100_000  # noqa: ASYNC110
                   or checkpointer.checkpoints < 1):
                await anyio.sleep(0.01)
    finally:
        await store.close()
    assert not checkpointer._thread.is_alive()


async def test_database_errors_while_querying_are_storage_errors(tmp_path: Path) -> None:
    """What SQLite refuses or fails while a query runs (here its parser's stack overflows)
    is translated by the store's session, whoever runs the statement."""
    session = await connect(str(tmp_path / "q.db"), synchronous="NORMAL", doing="reading")
    deep = Compiled("SELECT " + "(" * 5_000 + "1" + ")" * 5_000, ())

    async def failing(statement: Compiled) -> Sequence[Sequence[Any]]:
        return await session.query(deep)

    try:
        with pytest.raises(EngineError, match="parser stack overflow") as caught:
            await select_runs(failing, SQLITE, "p", Selection(), include_deleted=False)
        assert isinstance(caught.value, StorageError)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    finally:
        await session.close()


# Group commit in one hand-off ---------------------------------------------------------------


class _HandOffs:
    """Counts the hand-offs of work to a store's connection threads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from engine._storage.sqlite import session as module

        self.count = 0
        original = module.SqliteSession._in_thread

        async def counted(session: Any, work: Any) -> Any:
            self.count += 1
            return await original(session, work)

        monkeypatch.setattr(module.SqliteSession, "_in_thread", counted)


def test_aiosqlite_runs_a_commit_in_one_hand_off() -> None:
    """The fast path needs aiosqlite's queue of calls; a release without it would silently
    fall back to one hand-off per statement, so say so here."""
    from engine._storage.sqlite.session import HAND_OFF

    assert HAND_OFF


async def test_the_usual_commit_takes_one_hand_off_and_a_foreign_append_is_seen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "one.db")
    store = open_store(path, durability="normal", upcasters=default_upcasters())
    other = open_store(path, durability="normal", upcasters=default_upcasters())
    await store.open()
    await other.open()
    try:
        await store.append([AppendRequest("p", "a", [created("a")])], now=NOW)
        hand_offs = _HandOffs(monkeypatch)
        # This writer appended last and the run is cached: fold, check and commit at once.
        await store.append([AppendRequest("p", "a", [metrics("m", [0], [1.0])])], now=NOW)
        await store.append([AppendRequest("p", "b", [created("b"), metrics("m", [0], [2.0])])],
                           now=NOW)
        assert hand_offs.count == 2
        # Another process appends to the same run: the next commit's check sees the head
        # moved, rolls back, and commits through the checked path from fresh rows.
        await other.append([AppendRequest("p", "a", [metrics("m", [1], [3.0])])], now=NOW)
        (stale,) = await store.append([AppendRequest("p", "a", [metrics("m", [1], [4.0])])],
                                      now=NOW)
        assert isinstance(stale, ValidationError)
        assert "step 1" in str(stale)
        (records,) = await store.append([AppendRequest("p", "a", [metrics("m", [2], [5.0])])],
                                        now=NOW)
        assert isinstance(records, list)
        series = await store.read_series("p", "a", "m", low=None, high=None, max_points=None)
        assert series is not None
        assert series.values.tolist() == [1.0, 3.0, 5.0]
        # A run that another process created under the id this writer now creates: the
        # check sees it, and the checked path refuses the creation.
        await other.append([AppendRequest("p", "c", [created("c")])], now=NOW)
        (refused,) = await store.append([AppendRequest("p", "c", [created("c")])], now=NOW)
        assert isinstance(refused, EngineError)
        positions = [r[0] for r in await _raw(store, "SELECT position FROM events")]
        assert positions == list(range(1, len(positions) + 1))
        assert await store.verify_rebuild() == []
    finally:
        await store.close()
        await other.close()


@pytest.mark.parametrize("begin", ["transaction", "begin_with"])
async def test_a_transaction_cancelled_on_its_way_in_leaves_nothing_open(
        tmp_path: Path, begin: str) -> None:
    """A statement handed to the connection's thread runs even when its task is cancelled:
    a cancelled ``BEGIN`` must not leave a transaction open that the next writer trips on
    ("cannot start a transaction within a transaction")."""
    session = await connect(str(tmp_path / "c.db"), synchronous="NORMAL", doing="writing")
    try:
        await session.execute("CREATE TABLE t (x INTEGER)")
        with anyio.CancelScope() as scope:
            scope.cancel()  # already cancelled: the BEGIN is queued, its answer never awaited
            if begin == "transaction":
                async with session.transaction():
                    pytest.fail("a cancelled transaction's body ran")
            else:
                await session.begin_with([("SELECT 1", ())])
        async with session.transaction():
            await session.execute("INSERT INTO t VALUES (1)")
        assert await session.fetch("SELECT x FROM t") == [(1,)]
    finally:
        await session.close()
