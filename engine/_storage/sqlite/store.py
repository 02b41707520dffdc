"""The embedded backend: SQLite through aiosqlite, in WAL mode.

Two connections per file: one writer (every append, heartbeat and rebuild goes through it under
``_wlock``) and one reader, so reads run beside a commit instead of queueing behind it. An
in-memory database has a single connection, and the one lock then guards both.

One writer means the rowid *is* the position: commit order equals position order, and a reader
polling ``position > last`` can never skip an event.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from engine._core.events import Record, Upcasters
from engine._projections.stored import record_of
from engine._storage.contract import AppendRequest, Progress
from engine._storage.split import SplitStore
from engine.errors import ClosedError, EngineError, ValidationError

from .checkpoint import Checkpointer
from .commit import Committer
from .reads import SqliteReads
from .rebuild import build, drop_retired
from .schema import MIGRATIONS

__all__ = ["SqliteStore", "open_url", "sqlite_path"]

_PAGE_EVENTS = 4096  # at most this many events per rebuild transaction
_PAGE_BYTES = 4 << 20  # rebuild pages aim at this much payload
_ID_BATCH = 500  # ids per "already in the log?" query (SQLite binds at most 32766 values)
_EVENT_COLUMNS = "position, event_id, project, run_id, version, type, schema_version, " \
                 "recorded_at, data"


def open_url(url: str, *, durability: str, upcasters: Upcasters) -> SqliteStore:
    """The store for a SQLite URL (the backend registry's entry point).

    :raises ValidationError: for a URL that names no file.
    """
    path = sqlite_path(url)
    if path is None:
        raise ValidationError(f"cannot open {url!r}: expected a file path, ':memory:' or "
                              "'sqlite:///path'", key="url")
    return SqliteStore(path, durability=durability, upcasters=upcasters)


def sqlite_path(url: str) -> str | None:
    """The file path (or ``:memory:``) a SQLite URL names, or None if it is not one."""
    if url in (":memory:", "sqlite://", "sqlite:///:memory:"):
        return ":memory:"
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):] or None
    if "://" in url or not url:
        return None
    return url


class SqliteStore(SplitStore):
    """The log and its projections in one SQLite file (or in memory)."""

    def __init__(self, path: str, *, durability: str, upcasters: Upcasters) -> None:
        self.path = path
        self.durability = durability
        self.upcasters = upcasters
        self._wdb: aiosqlite.Connection | None = None
        self._rdb: aiosqlite.Connection | None = None
        self._wlock = anyio.Lock()
        self._rlock = self._wlock if path == ":memory:" else anyio.Lock()
        self._committer: Committer | None = None
        self._reads: SqliteReads | None = None
        self._checkpointer: Checkpointer | None = None

    # Lifecycle -----------------------------------------------------------------------------

    async def _connect(self) -> aiosqlite.Connection:
        _check_path(self.path)
        pending = aiosqlite.connect(self.path, isolation_level=None)
        try:
            db = await pending
        except BaseException:
            # aiosqlite stops its worker thread without waiting; the thread then answers an
            # event loop that may be gone. Wait for it while this loop still runs.
            thread = getattr(pending, "_thread", None)
            if thread is not None:
                await anyio.to_thread.run_sync(thread.join, 5.0)
            raise
        try:
            for pragma in (
                "PRAGMA busy_timeout = 60000",
                # Larger pages keep chunk columns in fewer overflow pages and make large
                # commits cheaper. Only a new, empty file takes it, and only before WAL mode
                # writes the header.
                "PRAGMA page_size = 16384",
                "PRAGMA journal_mode = WAL",
                f"PRAGMA synchronous = {self._synchronous}",
                "PRAGMA cache_size = -65536",
                "PRAGMA temp_store = MEMORY",
                # Checkpoints run on the store's checkpoint thread, not inside a commit.
                "PRAGMA wal_autocheckpoint = 0",
            ):
                await db.execute_fetchall(pragma)  # run to the end: some return a row
        except BaseException:
            await db.close()
            raise
        return db

    @property
    def _synchronous(self) -> str:
        return "FULL" if self.durability == "full" else "NORMAL"

    async def open(self) -> None:
        try:
            self._wdb = await self._connect()
            self._rdb = self._wdb if self.path == ":memory:" else await self._connect()
            await self._migrate()
        except sqlite3.Error as exc:
            await self.close()
            raise EngineError(f"cannot open the SQLite database {self.path!r}: {exc}") from exc
        except BaseException:
            await self.close()
            raise
        checkpointer = None
        if self.path != ":memory:":
            checkpointer = self._checkpointer = Checkpointer(self.path,
                                                             synchronous=self._synchronous)
            checkpointer.start()
        self._committer = Committer(self._wdb, self._wlock, self.upcasters,
                                    committed=checkpointer.committed if checkpointer else None)
        self._reads = SqliteReads(self._rdb, self._rlock, self._record)
        try:
            await self.drop_retired()  # left by a rebuild whose process ended before dropping
            head = await self.head()
            rows = await self._rdb.execute_fetchall("SELECT position FROM checkpoints")
            if any(position != head for (position,) in rows):
                # The log is ahead of a projection (a projection added by a newer release, or
                # a database written without them): build everything again from the log.
                await self.rebuild()
        except BaseException:
            await self.close()  # a refused rebuild (an event too new to read) leaks nothing
            raise

    async def close(self) -> None:
        wdb, rdb = self._wdb, self._rdb
        self._wdb = self._rdb = None
        self._reads = None
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(checkpointer.join)
        for db in {id(d): d for d in (rdb, wdb) if d is not None}.values():
            with anyio.CancelScope(shield=True):
                await db.close()

    async def _migrate(self) -> None:
        db = self._writer()
        async with self._wlock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                (version,), = await db.execute_fetchall("PRAGMA user_version")
                if version > len(MIGRATIONS):
                    raise EngineError(
                        f"database schema version {version} is newer than this release "
                        f"understands ({len(MIGRATIONS)}); upgrade kittiwake"
                    )
                for number in range(version, len(MIGRATIONS)):
                    for statement in MIGRATIONS[number]:
                        await db.execute(statement)
                    await db.execute(f"PRAGMA user_version = {number + 1}")
                await db.execute("COMMIT")
            except BaseException:
                await db.execute("ROLLBACK")
                raise

    def _writer(self) -> aiosqlite.Connection:
        if self._wdb is None:
            raise ClosedError("the store is closed")
        return self._wdb

    @property
    def reads(self) -> SqliteReads:
        if self._reads is None:
            raise ClosedError("the store is closed")
        return self._reads

    # The log -------------------------------------------------------------------------------

    @property
    def committer(self) -> Committer:
        if self._committer is None:
            raise ClosedError("the store is closed")
        return self._committer

    async def append(self, requests: Sequence[AppendRequest], *,
                     now: float) -> list[list[Record] | BaseException]:
        return await self.committer.append(requests, now=now)

    def _record(self, row: Sequence[Any], arrays: bool) -> Record:
        return record_of(row, arrays, self.upcasters)

    # Projections ---------------------------------------------------------------------------

    async def rebuild(self, progress: Progress | None = None) -> None:
        db = self._writer()
        (generation,), = await db.execute_fetchall(
            "SELECT value FROM meta WHERE key = 'generation'")
        await build(self, "__new", generation + 1, progress)

    async def verify_rebuild(self) -> list[str]:
        return await build(self, "__check", "check", None)

    async def drop_retired(self) -> None:
        await drop_retired(self)

    # Liveness ------------------------------------------------------------------------------

    async def beat(self, runs: Sequence[tuple[str, str]], at: float) -> None:
        if not runs:
            return
        db = self._writer()
        with anyio.CancelScope(shield=True):
            async with self._wlock:
                await db.execute("BEGIN IMMEDIATE")
                try:
                    await db.executemany("INSERT OR REPLACE INTO heartbeats VALUES (?, ?, ?)",
                                         [(p, r, at) for p, r in runs])
                    await db.execute("COMMIT")
                except BaseException:
                    await db.execute("ROLLBACK")
                    raise


def _check_path(path: str) -> None:
    """Refuse paths SQLite cannot open, before aiosqlite starts a thread for them."""
    if path == ":memory:":
        return
    where = Path(path)
    if where.is_dir():
        raise EngineError(f"cannot open the SQLite database {path!r}: it is a directory")
    if not where.parent.is_dir():
        raise EngineError(f"cannot open the SQLite database {path!r}: the directory "
                          f"{str(where.parent)!r} does not exist")
