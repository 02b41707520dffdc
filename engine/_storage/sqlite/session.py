"""Connections to a SQLite file as sessions of the shared SQL, and the reader beside the writer.

Every statement of the SQLite store runs through a :class:`SqliteSession`, which is where the
driver's errors are translated (``errors``). Its :meth:`~SqliteSession.transaction` is the one
way the store writes: ``BEGIN IMMEDIATE`` (SQLite's one writer) … ``COMMIT``, and on any error
a rollback — only while a transaction is still open, since SQLite rolls back by itself after
a full disk or an I/O error, and a rollback's own error never hides the one that led to it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import anyio

from engine._query.dialect import SQLITE, Dialect
from engine._query.sql import Compiled
from engine._storage.session import Row, Session
from engine.errors import EngineError, StorageError, ValidationError

from .errors import DRIVER_ERRORS, failure

__all__ = ["CACHE_ENV", "HAND_OFF", "Check", "SqliteReader", "SqliteSession", "Write", "cache_size",
           "connect"]

T = TypeVar("T")

CACHE_ENV = "KITTIWAKE_SQLITE_CACHE_MIB"
"""The environment variable that sets each connection's page cache, in MiB (default 64)."""
_DEFAULT_CACHE_MIB = 64


def cache_size() -> str:
    """The statement that sets a connection's page cache: 64 MiB, or ``CACHE_ENV``'s.

    Each connection keeps its own cache, which fills as it touches pages, up to this bound:
    a process's memory grows by up to this much per connection. A server that should stay
    small (or a machine with little memory) sets it lower, at some cost to reads that go
    back to the operating system's file cache more often.

    :raises ValidationError: the variable is not a whole number of MiB of at least 1.
    """
    raw = os.environ.get(CACHE_ENV, "").strip()
    if not raw:
        return f"PRAGMA cache_size = -{_DEFAULT_CACHE_MIB * 1024}"
    try:
        mib = int(raw)
    except ValueError:
        mib = 0
    if not 1 <= mib <= 1 << 20:
        raise ValidationError(f"{CACHE_ENV} must be a whole number of MiB from 1 to "
                              f"1048576, not {raw!r}", key=CACHE_ENV)
    return f"PRAGMA cache_size = -{mib * 1024}"

_PRAGMAS = (
    "PRAGMA busy_timeout = 60000",
    # Larger pages keep chunk columns in fewer overflow pages and make large commits
    # cheaper. Only a new, empty file takes it, and only before WAL mode writes the header.
    "PRAGMA page_size = 16384",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = {synchronous}",
    "PRAGMA temp_store = MEMORY",
    # Checkpoints run on the store's checkpoint thread, not inside a commit.
    "PRAGMA wal_autocheckpoint = 0",
)


async def connect(path: str, *, synchronous: str, doing: str) -> SqliteSession:
    """A new connection to the database at ``path``, with the store's settings.

    :raises StorageError: the file cannot be opened as a SQLite database (a directory, a
        missing directory, no permission, not a database, damaged).
    """
    if _check_path(path):
        await _wait_for_creator(path)
    cache = cache_size()
    pending = aiosqlite.connect(path, isolation_level=None)
    # A daemon thread: a tracker left open on an event loop that was closed can no longer
    # close its connections, and their threads must not keep the process from exiting.
    thread = getattr(pending, "_thread", None)
    if isinstance(thread, threading.Thread):
        thread.daemon = True
    try:
        db = await pending
    except BaseException as exc:
        # aiosqlite stops its worker thread without waiting; the thread then answers an
        # event loop that may be gone. Wait for it while this loop still runs.
        if thread is not None:
            await anyio.to_thread.run_sync(thread.join, 5.0)
        if isinstance(exc, DRIVER_ERRORS):
            raise _unopenable(path, exc) from exc
        raise
    try:
        # Before any setting is written to the file (WAL mode would be): a database of
        # another application is left exactly as it was. One statement, one snapshot: read
        # apart, another process's first migration could commit in between, and its tables
        # would be seen without the version that says they are Kittiwake's.
        ((version, objects),) = await db.execute_fetchall(
            "SELECT user_version, (SELECT count(*) FROM sqlite_schema) "
            "FROM pragma_user_version")
        if version == 0 and objects:
            raise StorageError(
                f"{path!r} is a SQLite database of another application (it holds tables but "
                "none of Kittiwake's): refusing to add ours to it; open a new file instead")
        for pragma in _PRAGMAS:
            # Run to the end: some return a row.
            await db.execute_fetchall(pragma.format(synchronous=synchronous))
        await db.execute_fetchall(cache)
    except BaseException as exc:
        with anyio.CancelScope(shield=True):
            await db.close()
        if isinstance(exc, DRIVER_ERRORS):
            raise _unopenable(path, exc) from exc
        raise
    return SqliteSession(db, path, doing, cache)


def _unopenable(path: str, exc: BaseException) -> StorageError:
    return StorageError(f"cannot open the SQLite database {path!r}: {exc}")


def _check_path(path: str) -> bool:
    """Refuse paths SQLite cannot open, before aiosqlite starts a thread for them; True for
    an empty file (see ``_wait_for_creator``)."""
    if path == ":memory:":
        return False
    where = Path(path)
    if where.is_dir():
        raise StorageError(f"cannot open the SQLite database {path!r}: it is a directory")
    if not where.parent.is_dir():
        raise StorageError(f"cannot open the SQLite database {path!r}: the directory "
                           f"{str(where.parent)!r} does not exist")
    return where.is_file() and where.stat().st_size == 0


# How long an empty file is given to become a database, and how often it is looked at.
_CREATOR_GRACE = 2.0
_CREATOR_POLL = 0.02


def _size(path: str) -> int:
    """The file's size (a stat: not worth a thread); -1 when there is no file."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


async def _wait_for_creator(path: str) -> None:
    """Wait for an empty file to get SQLite's header, or refuse it.

    Opening a new database makes an empty file, and its first settings write the header
    moments later: another process opening the same new database at the same time finds
    the file empty for those moments. An empty file that stays so is not what a crash
    leaves (the header is written before the first table is made) but a file someone
    emptied or made, which must not silently become a database.

    :raises StorageError: the file is still empty after ``_CREATOR_GRACE`` seconds.
    """
    # Another process's file: nothing here can signal when it grows, so it is looked at.
    for _ in range(round(_CREATOR_GRACE / _CREATOR_POLL)):
        await anyio.sleep(_CREATOR_POLL)
        if _size(path) != 0:  # the header, or removed meanwhile (opening makes it anew)
            return
    raise StorageError(f"{path!r} is an empty file, not a Kittiwake database; remove it "
                       "to start a new database there")


class SqliteSession:
    """Statements on one aiosqlite connection; its errors translated."""

    dialect: Dialect = SQLITE

    def __init__(self, db: aiosqlite.Connection, path: str, doing: str, cache: str) -> None:
        self.db = db
        self.path = path
        self.doing = doing  # what this connection is for, as its errors say
        self.cache = cache  # the statement that gave it its page cache

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]:
        try:
            return cast(Sequence[Row], await self.db.execute_fetchall(sql, params))
        except DRIVER_ERRORS as exc:
            raise failure(exc, self.doing, self.path) from exc

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        try:
            cursor = await self.db.execute(sql, params)
        except DRIVER_ERRORS as exc:
            raise failure(exc, self.doing, self.path) from exc
        return cursor.rowcount

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            await self.db.executemany(sql, rows)
        except DRIVER_ERRORS as exc:
            raise failure(exc, self.doing, self.path) from exc

    async def query(self, statement: Compiled) -> Sequence[Row]:
        return await self.fetch(statement.sql, statement.params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteSession]:
        """A write transaction: committed at the end, rolled back on any error."""
        try:
            await self.execute("BEGIN IMMEDIATE")
        except BaseException:
            await self._undo_begin()
            raise
        try:
            yield self
            await self.execute("COMMIT")
        except BaseException:
            await self.rollback()
            raise

    async def rollback(self) -> None:
        """Roll back the open transaction, if any; quietly, for the error being handled
        says what happened."""
        if not self.db.in_transaction:
            return  # SQLite rolled it back itself (a full disk, an I/O error)
        with anyio.CancelScope(shield=True):
            with suppress(*DRIVER_ERRORS):
                await self.db.execute("ROLLBACK")

    async def _undo_begin(self) -> None:
        """Roll back a ``BEGIN`` whose caller stopped waiting for it. A statement handed to
        the connection's thread runs even when the task that sent it is cancelled: the
        ``BEGIN`` may still open a transaction nobody ends, and the connection's next
        ``BEGIN`` would fail. A ``ROLLBACK`` queued behind it on the same thread undoes it
        (and fails quietly when nothing was begun)."""
        with anyio.CancelScope(shield=True):
            with suppress(*DRIVER_ERRORS):
                await self.db.execute("ROLLBACK")

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.db.close()

    async def begin_with(self, reads: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Row]]:
        """``BEGIN IMMEDIATE`` and the ``reads``, in one hand-off to the connection's thread;
        their rows, in order. On an error nothing stays open.

        Each hand-off to aiosqlite's thread costs a wake-up of that thread and of the event
        loop (0.05 to 0.25 ms here): a commit that made one per statement spent most of a small
        commit on them.
        """
        def work(db: sqlite3.Connection) -> list[list[Row]]:
            db.execute("BEGIN IMMEDIATE")
            try:
                return [db.execute(sql, params).fetchall() for sql, params in reads]
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise

        if not HAND_OFF:
            try:
                await self.execute("BEGIN IMMEDIATE")
            except BaseException:
                await self._undo_begin()
                raise
            try:
                return [list(await self.fetch(sql, params)) for sql, params in reads]
            except BaseException:
                await self.rollback()
                raise
        try:
            return await self._in_thread(work)
        except BaseException:
            await self._undo_begin()
            raise

    async def commit_with(self, writes: Sequence[Write]) -> None:
        r"""The ``writes``, then ``COMMIT``, in one hand-off to the connection's thread. A
        write with an ``expect``\ed row count that changes another number of rows raises
        ``EngineError``; on any error the transaction is rolled back."""
        def work(db: sqlite3.Connection) -> None:
            try:
                _write(db, writes)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise

        if not HAND_OFF:
            try:
                for write in writes:
                    if write.many:
                        await self.execute_many(write.sql, write.params)
                    elif (await self.execute(write.sql, write.params) != write.expect
                          and write.expect is not None):
                        raise EngineError(write.refusal)
                await self.execute("COMMIT")
            except BaseException:
                await self.rollback()
                raise
            return
        await self._in_thread(work)

    async def commit_if(self, check: Check, writes: Sequence[Write]) -> bool:
        """``BEGIN IMMEDIATE``, then — if ``check`` reads what it expects — the ``writes`` and
        ``COMMIT``, all in one hand-off to the connection's thread; False (rolled back,
        nothing written) when the check read anything else."""
        def work(db: sqlite3.Connection) -> bool:
            db.execute("BEGIN IMMEDIATE")
            try:
                if tuple(db.execute(check.sql, check.params).fetchone()) != check.expect:
                    db.rollback()
                    return False
                _write(db, writes)
                db.execute("COMMIT")
                return True
            except BaseException:
                if db.in_transaction:
                    db.rollback()
                raise

        if not HAND_OFF:
            rows = await self.begin_with([(check.sql, check.params)])
            if tuple(rows[0][0]) != check.expect:
                await self.rollback()
                return False
            await self.commit_with(writes)
            return True
        return await self._in_thread(work)

    async def _in_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work(connection)`` on the connection's own thread, its driver errors translated.

        aiosqlite offers no public way to run several statements in one hand-off, so this is
        the one place that uses its queue of calls (``Connection._execute``); where a release
        lacks it, the callers send the same statements one public call each (slower, never
        wrong; ``tests/storage/test_sqlite.py`` checks which way is in use).
        """
        db = self.db
        try:
            queue: Any = db  # the queue of calls is not typed, nor public (see above)
            return cast(T, await queue._execute(lambda: work(db._conn)))
        except DRIVER_ERRORS as exc:
            raise failure(exc, self.doing, self.path) from exc


@dataclass(frozen=True, slots=True)
class Write:
    """One statement of :meth:`SqliteSession.commit_with`: ``params`` are one row, or many
    rows when ``many``; ``expect``, when given, is the row count it must change (else
    ``refusal`` is raised)."""

    sql: str
    params: Sequence[Any]
    many: bool = False
    expect: int | None = None
    refusal: str = ""


@dataclass(frozen=True, slots=True)
class Check:
    """A one-row statement whose row must equal ``expect`` (see ``commit_if``)."""

    sql: str
    params: Sequence[Any]
    expect: tuple[Any, ...]


def _write(db: sqlite3.Connection, writes: Sequence[Write]) -> None:
    for write in writes:
        if write.many:
            db.executemany(write.sql, write.params)
            continue
        changed = db.execute(write.sql, write.params).rowcount
        if write.expect is not None and changed != write.expect:
            raise EngineError(write.refusal)


HAND_OFF = callable(getattr(aiosqlite.Connection, "_execute", None))
"""Whether aiosqlite runs a function on its connection's thread for us (see ``_in_thread``)."""


class SqliteReader:
    """Reads on one connection, one at a time under ``lock``: statements run inside a read
    transaction only when a read needs several of them to agree, and a lone statement must
    not land inside another task's snapshot (it would see the past)."""

    def __init__(self, session: SqliteSession, lock: anyio.Lock) -> None:
        self.session = session
        self.lock = lock

    async def read(self, work: Callable[[Session], Awaitable[T]], *,
                   snapshot: bool = False) -> T:
        async with self.lock:
            if not snapshot:
                return await work(self.session)
            await self.session.execute("BEGIN")
            try:
                result = await work(self.session)
            except BaseException:
                await self.session.rollback()
                raise
            with anyio.CancelScope(shield=True):
                await self.session.execute("COMMIT")
            return result
