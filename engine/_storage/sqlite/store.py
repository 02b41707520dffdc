"""The embedded backend: SQLite through aiosqlite, in WAL mode.

Two connections per file: one writer (every append, heartbeat and rebuild goes through it under
``lock``) and one reader, so reads run beside a commit instead of queueing behind it; and a
third for reading file bytes back, opened at first use. An in-memory database has a single
connection, and the one lock then guards every use of it.

One writer means the rowid *is* the position: commit order equals position order, and a reader
polling ``position > last`` can never skip an event.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import anyio

from engine._core.events import Upcasters
from engine._storage.io import HEARTBEAT
from engine._storage.reads import Reads
from engine._storage.rebuild import NEW, build
from engine._storage.session import Reader, Session
from engine._storage.split import SplitStore, opened
from engine.errors import ClosedError, EngineError, StorageError, ValidationError

from .checkpoint import Checkpointer
from .commit import Committer
from .rebuild import SqliteRebuild
from .schema import MIGRATIONS
from .session import SqliteReader, SqliteSession, connect

T = TypeVar("T")
_STREAM_CACHE_KIB = 2048

__all__ = ["SqliteStore", "open_url", "sqlite_path"]


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


class SqliteStore(SplitStore[Committer]):
    """The log and its projections in one SQLite file (or in memory)."""

    def __init__(self, path: str, *, durability: str, upcasters: Upcasters) -> None:
        self.path = path
        self.durability = durability
        self.upcasters = upcasters
        self.synchronous = "FULL" if durability == "full" else "NORMAL"
        # Taken without yielding when free: each yield is a turn of the event loop, and a
        # small commit took three of them before its statements ran.
        self.lock = anyio.Lock(fast_acquire=True)
        """The write lock: every transaction on the writer connection holds it."""
        self._read_lock = self.lock if path == ":memory:" else anyio.Lock(fast_acquire=True)
        self._writer: SqliteSession | None = None
        self._reader: SqliteSession | None = None
        self._blob_reads = _BlobReads(path, self.synchronous)
        self.checkpointer: Checkpointer | None = None

    # Lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        try:
            self._writer = await connect(self.path, synchronous=self.synchronous,
                                         doing="writing to")
            self._reader = self._writer if self.path == ":memory:" else await connect(
                self.path, synchronous=self.synchronous, doing="reading")
            await self._migrate()
        except BaseException:
            await self.close()
            raise
        if self.path != ":memory:":
            self.checkpointer = Checkpointer(self.path, synchronous=self.synchronous)
            self.checkpointer.start()
        self._committer = Committer(
            self._writer, self.lock, self.upcasters,
            committed=self.checkpointer.committed if self.checkpointer else None)
        self._reads = Reads(SqliteReader(self._reader, self._read_lock), self.upcasters)
        try:
            await self.catch_up()
        except BaseException:
            await self.close()  # a refused rebuild (an event too new to read) leaks nothing
            raise

    async def close(self) -> None:
        if self._committer is not None:
            await self._committer.close()
        writer, reader = self._writer, self._reader
        self._writer = self._reader = None
        self._committer = None
        self._reads = None
        checkpointer, self.checkpointer = self.checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(checkpointer.join)
        for session in {id(s): s for s in (reader, writer) if s is not None}.values():
            await session.close()
        await self._blob_reads.close()

    async def _migrate(self) -> None:
        async with self.lock, self.writer.transaction() as session:
            ((version,),) = await session.fetch("PRAGMA user_version")
            if version < 0:
                raise StorageError(f"the SQLite database {self.path!r} is damaged: its schema "
                                   f"version is {version}")
            if version > len(MIGRATIONS):
                raise EngineError(
                    f"database schema version {version} is newer than this release "
                    f"understands ({len(MIGRATIONS)}); upgrade kittiwake"
                )
            for number in range(version, len(MIGRATIONS)):
                for statement in MIGRATIONS[number]:
                    await session.execute(statement)
                await session.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def writer(self) -> SqliteSession:
        """The writer connection (use it holding :attr:`lock`).

        :raises ClosedError: if the store is closed.
        """
        return opened(self._writer)

    # Projections ---------------------------------------------------------------------------

    async def current(self) -> None:
        # This process's commits leave rows unsaved (see ``commit``); another process's may
        # too, or its writer died before saving them: a look at the checkpoints tells.
        committer = self.committer
        if committer.pending or (self.path != ":memory:" and await self.reads.behind()):
            await committer.settle()

    async def catch_up(self) -> None:
        await self.drop_retired()
        await self.committer.settle()  # events a writer committed and did not fold in time
        if await self.reads.behind():
            await build(self.rebuild_site(), NEW, None, if_behind=True)

    def rebuild_site(self) -> SqliteRebuild:
        return SqliteRebuild(self.writer, self.lock, synchronous=self.synchronous,
                             upcasters=self.upcasters, forget=self.committer.forget,
                             head=self.head, settle=self.committer.settle_locked)

    async def retired_tables(self) -> list[str]:
        rows = await self.reads.reader.read(lambda session: session.fetch(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name LIKE '%\\_\\_old' "
            "ESCAPE '\\'"))
        return [r[0] for r in rows]

    async def abandoned_tables(self) -> list[str]:
        """Tables a rebuild was filling when its process died (none while the process that
        rebuilds lives)."""
        async with self.lock:
            rows = await self.writer.fetch("SELECT value FROM meta WHERE key = 'rebuilding'")
            if rows and _alive(int(rows[0][0])):
                return []
            names = await self.writer.fetch(
                "SELECT name FROM sqlite_schema WHERE type = 'table' AND (name LIKE "
                "'%\\_\\_new' ESCAPE '\\' OR name LIKE '%\\_\\_check' ESCAPE '\\')")
        return [r[0] for r in names]

    async def check_file(self) -> list[str]:
        rows = await self.reads.reader.read(
            lambda session: session.fetch("PRAGMA integrity_check"))
        lines = [str(row[0]) for row in rows]
        return [] if lines == ["ok"] else [f"{self.path}: {line}" for line in lines]

    async def drop_retired(self) -> None:
        """Drop the retired tables — and those of a rebuild whose process died — one per
        transaction, then checkpoint the WAL."""
        retired = [*await self.retired_tables(), *await self.abandoned_tables()]
        for table in retired:
            with anyio.CancelScope(shield=True):
                async with self.lock:
                    await self.writer.execute(f"DROP TABLE IF EXISTS {table}")
        if retired and self.path != ":memory:":
            with anyio.CancelScope(shield=True):
                async with self.lock:
                    await self.writer.fetch("PRAGMA wal_checkpoint(PASSIVE)")

    async def write_rows(self, sql: str, rows: list[tuple[object, ...]], what: str) -> None:
        with anyio.CancelScope(shield=True):
            async with self.lock, self.writer.transaction() as session:
                await session.execute_many(sql, rows)

    # File bytes ----------------------------------------------------------------------------

    async def blob_transaction(self, work: Callable[[Session], Awaitable[T]], *,
                               streaming: bool = False) -> T:
        if not streaming:
            async with self.lock, self.writer.transaction() as session:
                return await work(session)
        # A chunk of a large blob: the writer's page cache would keep its pages (64 MiB of
        # them, evicting the projections'), so it shrinks for the write and grows back.
        async with self.lock:
            writer = self.writer
            await writer.execute(f"PRAGMA cache_size = -{_STREAM_CACHE_KIB}")
            try:
                async with writer.transaction() as session:
                    return await work(session)
            finally:
                with anyio.CancelScope(shield=True):
                    await writer.execute(writer.cache)

    @property
    def blob_reader(self) -> Reader:
        return self.reads.reader if self.path == ":memory:" else self._blob_reads

    # Liveness ------------------------------------------------------------------------------

    async def beat(self, runs: Sequence[tuple[str, str]], at: float) -> None:
        if not runs:
            return
        with anyio.CancelScope(shield=True):
            async with self.lock, self.writer.transaction() as session:
                await session.execute_many(HEARTBEAT, [(p, r, at) for p, r in runs])


class _BlobReads:
    """Reads of file bytes, on a connection of their own with a page cache of 2 MiB: a file
    streamed back would otherwise fill the reader's 64 MiB cache with its pages (growing the
    process by as much, and evicting the pages reads of runs keep there), and each of its
    chunks would make those reads wait. Opened at first use: most trackers never read a
    file back."""

    def __init__(self, path: str, synchronous: str) -> None:
        self.path = path
        self.synchronous = synchronous
        self._lock = anyio.Lock()
        self._reader: SqliteReader | None = None
        self._closed = False

    async def read(self, work: Callable[[Session], Awaitable[T]], *,
                   snapshot: bool = False) -> T:
        async with self._lock:
            if self._closed:
                raise ClosedError(f"the SQLite store {self.path!r} is closed")
            if self._reader is None:
                session = await connect(self.path, synchronous=self.synchronous,
                                        doing="reading file bytes from")
                await session.execute(f"PRAGMA cache_size = -{_STREAM_CACHE_KIB}")
                self._reader = SqliteReader(session, anyio.Lock())
            reader = self._reader
        return await reader.read(work, snapshot=snapshot)

    async def close(self) -> None:
        async with self._lock:
            self._closed = True
            reader, self._reader = self._reader, None
        if reader is not None:
            with anyio.CancelScope(shield=True):
                await reader.session.close()


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (this one included)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
