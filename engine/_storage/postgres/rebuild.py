"""Rebuilds on PostgreSQL: replay the log into fresh tables, then swap them in (or compare).

A rebuild has a connection of its own. It replays the log a page per transaction into
``<table>__new`` while a pooled connection reads the next page, so appends from every process
go on meanwhile. The last step takes the log's lock (``LOCK TABLE events IN EXCLUSIVE MODE``,
as an append does: no process can append until it commits), applies the events still unseen
and renames the tables — readers go on reading the old tables until that commit, then the
new ones. ``verify_rebuild`` builds ``__check`` tables the same way and compares them with the
live ones row for row instead. A snapshot read locks every projection table before it takes
its snapshot, in the swap's order, so one that waits for the swap reads the new tables whole
(``_postgres_conn``). Should a read still deadlock with the swap (a lone statement that
locks tables in another order), PostgreSQL cancels one of the two, and that one runs again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import asyncpg

from engine._projections.projector import Projector
from engine._projections.stored import record_of
from engine._storage.contract import Progress

from .connection import RETRY_DELAYS, driver_error, failure, open_connection, quote_ident
from .io import PostgresIO, advance, fetch_events
from .schema import PROJECTION_TABLES, projection_ddl

if TYPE_CHECKING:
    from .store import PostgresStore

__all__ = ["BEHIND", "build", "drop_retired"]

BEHIND = ("SELECT coalesce(bool_or(position <> (SELECT coalesce(max(position), 0) "
          "FROM events)), false) FROM checkpoints")
"""Whether some projection is behind the log (one statement, one snapshot: an append between
two reads would look like a projection left behind)."""

_PAGE_EVENTS = 4096  # at most this many events per rebuild transaction
_PAGE_BYTES = 4 << 20  # rebuild pages aim at this much payload


async def drop_retired(store: PostgresStore) -> None:
    """Drop the tables a rebuild swapped out."""
    for table in await store.reads.retired_tables():
        async def work(connection: asyncpg.Connection, table: str = table) -> None:
            await connection.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")

        with anyio.CancelScope(shield=True):
            await store.readers.run(work, what="dropping retired tables")


class _Page:
    """The next page of events, read on a pooled connection while this one is folded."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.rows: list[asyncpg.Record] = []

    async def fetch(self, store: PostgresStore, after: int, limit: int) -> None:
        async def work(connection: asyncpg.Connection) -> list[asyncpg.Record]:
            return await fetch_events(connection, after, limit)

        try:
            self.rows = await store.readers.run(work, what="reading the log for a rebuild")
        finally:
            self.done.set()


async def build(store: PostgresStore, suffix: str, progress: Progress | None, *,
                if_behind: bool = False) -> list[str]:
    """Replay the log into ``<table><suffix>`` tables, then swap them in (``__new``) or
    compare them with the live tables and drop them (``__check``); returns the tables that
    differ. With ``if_behind``, only when some projection is still behind the log once this
    rebuild's turn comes (several processes opening at once need one rebuild, not one each)."""
    try:
        connection = await open_connection(store.target)
    except Exception as exc:
        if driver_error(exc):
            raise failure(exc, "connecting for a rebuild") from exc
        raise
    try:
        return await _build(store, connection, suffix, progress, if_behind)
    except Exception as exc:
        if driver_error(exc):
            raise failure(exc, "rebuilding the projections") from exc
        raise
    finally:
        with anyio.CancelScope(shield=True):
            await connection.close()


async def _build(store: PostgresStore, connection: asyncpg.Connection, suffix: str,
                 progress: Progress | None, if_behind: bool) -> list[str]:
    # One rebuild at a time per schema, whichever process asks (the lock is the
    # connection's, and goes with it). What the last rebuild left — its generation, the
    # projections' checkpoints — is read only once it is this one's turn.
    await connection.execute("SELECT pg_advisory_lock(hashtext('kittiwake rebuild ' || "
                             "current_schema()))")
    if if_behind and not await connection.fetchval(BEHIND):
        return []
    generation: int | str = "check"
    if suffix == "__new":
        generation = await connection.fetchval(
            "SELECT value FROM meta WHERE key = 'generation'") + 1
    async with connection.transaction():
        for table in PROJECTION_TABLES:
            await connection.execute(f"DROP TABLE IF EXISTS {table}{suffix}")
        for statement in projection_ddl(suffix, generation):
            await connection.execute(statement)
    projector = Projector(PostgresIO(connection, suffix))
    done = 0
    limit = 4
    first = _Page()
    await first.fetch(store, 0, limit)
    rows = first.rows
    async with anyio.create_task_group() as tasks:
        while len(rows) == limit:
            after = rows[-1][0]
            # Pages of about _PAGE_BYTES of payload, whatever the events' sizes.
            size = sum(len(row[8]) for row in rows) or 1
            limit = max(1, min(_PAGE_EVENTS, limit * _PAGE_BYTES // size))
            upcoming = _Page()
            tasks.start_soon(upcoming.fetch, store, after, limit)
            async with connection.transaction():
                for row in rows:
                    await projector.apply(record_of(row, True, store.upcasters))
                await projector.save()
                await advance(connection, suffix, done, after)
            done = after
            if progress is not None:
                progress(done, await store.head())
            await upcoming.done.wait()
            rows = upcoming.rows
    async with store.committer.lock:
        with anyio.CancelScope(shield=True):
            differ = await _finish(store, connection, projector, suffix, done, generation)
    if progress is not None:
        head = await store.head()
        progress(head, head)
    return differ


async def _finish(store: PostgresStore, connection: asyncpg.Connection, projector: Projector,
                  suffix: str, done: int, generation: int | str) -> list[str]:
    """Apply the events still unseen, then swap (or compare), in one transaction; again
    from ``done`` if PostgreSQL picks it as a deadlock's victim."""
    for attempt, delay in enumerate(RETRY_DELAYS):
        if delay:
            await anyio.sleep(delay)
        try:
            async with connection.transaction():
                return await _catch_up_and_swap(store, connection, projector, suffix, done,
                                                generation)
        except asyncpg.exceptions.TransactionRollbackError:
            if attempt == len(RETRY_DELAYS) - 1:
                raise
            projector.clear()  # it holds rows the rolled-back transaction changed
    raise AssertionError("unreachable")  # pragma: no cover


async def _catch_up_and_swap(store: PostgresStore, connection: asyncpg.Connection,
                             projector: Projector, suffix: str, done: int,
                             generation: int | str) -> list[str]:
    await connection.execute("LOCK TABLE events IN EXCLUSIVE MODE")
    while True:
        rows = await fetch_events(connection, done, _PAGE_EVENTS)
        for row in rows:
            await projector.apply(record_of(row, True, store.upcasters))
        if rows:
            await projector.save()
            await advance(connection, suffix, done, rows[-1][0])
            done = rows[-1][0]
        if len(rows) < _PAGE_EVENTS:
            break
    differ: list[str] = []
    if suffix == "__new":
        await connection.execute(
            f"LOCK TABLE {', '.join(PROJECTION_TABLES)} IN ACCESS EXCLUSIVE MODE")
        for table in PROJECTION_TABLES:
            await connection.execute(f"DROP TABLE IF EXISTS {table}__old")
            await connection.execute(f"ALTER TABLE {table} RENAME TO {table}__old")
            await connection.execute(f"ALTER TABLE {table}{suffix} RENAME TO {table}")
        await connection.execute("UPDATE meta SET value = $1 WHERE key = 'generation'",
                                 generation)
        # The live cache still matches (a rebuild reproduces the same rows), but it is
        # dropped here, under the write lock, never in the middle of a commit.
        store.committer.forget()
        return differ
    for table in PROJECTION_TABLES:
        other = f"{table}{suffix}"
        counts = await connection.fetchrow(
            f"SELECT (SELECT count(*) FROM (SELECT * FROM {table} EXCEPT "
            f"SELECT * FROM {other}) a), (SELECT count(*) FROM (SELECT * FROM {other} EXCEPT "
            f"SELECT * FROM {table}) b), (SELECT count(*) FROM {table}) - "
            f"(SELECT count(*) FROM {other})")
        if any(counts):
            differ.append(table)
        await connection.execute(f"DROP TABLE {other}")
    return differ
