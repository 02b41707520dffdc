"""Rebuilds on SQLite: replay the log into fresh tables, then swap them in (or compare).

A rebuild overlaps three things: a dedicated connection reads the next page of events, the
writer connection saves the previous page (a transaction per page, so live appends go on
between them), and the event loop folds the current page. The last step catches up to the
head and swaps the tables in one transaction, under the write lock. Dropping the swapped-out
tables reads every page of them, so ``drop_retired`` does it afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import aiosqlite
import anyio

from engine._projections.projector import Projector
from engine._projections.rows import Changes
from engine._storage.contract import Progress

from .io import Prefetch, SqliteIO, advance, fetch, in_transaction
from .schema import PROJECTION_TABLES, projection_ddl

if TYPE_CHECKING:
    from .store import SqliteStore

__all__ = ["build", "drop_retired"]

_PAGE_EVENTS = 4096  # at most this many events per rebuild transaction
_PAGE_BYTES = 4 << 20  # rebuild pages aim at this much payload


async def drop_retired(store: SqliteStore) -> None:
    """Drop the tables a rebuild swapped out, one per transaction, then checkpoint the WAL."""
    db = store._writer()
    rows = await store.reads.retired_tables()
    for (table,) in rows:
        with anyio.CancelScope(shield=True):
            async with store._wlock:
                await db.execute(f"DROP TABLE IF EXISTS {table}")
    if rows and store.path != ":memory:":
        with anyio.CancelScope(shield=True):
            async with store._wlock:
                await db.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")


async def build(store: SqliteStore, suffix: str, generation: int | str,
                progress: Progress | None) -> list[str]:
    """Replay the log into ``<table><suffix>`` tables, then swap them in (``__new``) or
    compare them with the live tables and drop them (``__check``).

    Three things overlap: a dedicated connection reads the next page of events, the
    writer connection saves the previous page (a transaction per page, so live appends
    interleave), and the event loop folds the current page. The last step catches up to
    the head and finishes in one transaction under the write lock.
    """
    db = store._writer()
    async with store._wlock:
        await in_transaction(db, [f"DROP TABLE IF EXISTS {t}{suffix}"
                                   for t in PROJECTION_TABLES]
                              + projection_ddl(suffix, generation))
    io = SqliteIO(db, suffix, lock=store._wlock)
    projector = Projector(io)
    reader = db if store.path == ":memory:" else await store._connect()
    done = 0
    limit = 4
    try:
        async with anyio.create_task_group() as tasks:
            page = await fetch(reader, 0, limit)
            saving: anyio.Event | None = None
            while len(page) == limit:
                after = page[-1][0]
                # Pages of about _PAGE_BYTES of payload, whatever the events' sizes.
                size = sum(len(row[8]) for row in page) or 1
                limit = max(1, min(_PAGE_EVENTS, limit * _PAGE_BYTES // size))
                upcoming = Prefetch(reader, after, limit)
                tasks.start_soon(upcoming.run)
                for row in page:
                    await projector.apply(store._record(row, arrays=True))
                changes, projector.changes = projector.changes, Changes()
                if saving is not None:
                    await saving.wait()  # saves go in order, checkpoints forward
                saving = anyio.Event()
                tasks.start_soon(_save_page, store, db, io, changes, suffix, done, after,
                                 saving)
                done = after
                if progress is not None:
                    progress(done, await store.head())
                page = await upcoming.result()
            if saving is not None:
                await saving.wait()
        async with store._wlock:
            with anyio.CancelScope(shield=True):
                differ = await _finish(store, db, projector, suffix, done, generation)
    finally:
        if reader is not db:
            with anyio.CancelScope(shield=True):
                await reader.close()
    if progress is not None:
        head = await store.head()
        progress(head, head)
    return differ

async def _save_page(store: SqliteStore, db: aiosqlite.Connection, io: SqliteIO,
                     changes: Changes, suffix: str, done: int, position: int,
                     saved: anyio.Event) -> None:
    try:
        async with store._wlock:
            with anyio.CancelScope(shield=True):
                await db.execute("BEGIN IMMEDIATE")
                try:
                    await io.save(changes, locked=True)
                    await advance(db, suffix, done, position)
                    await db.execute("COMMIT")
                except BaseException:
                    await db.execute("ROLLBACK")
                    raise
    finally:
        saved.set()

async def _finish(store: SqliteStore, db: aiosqlite.Connection, projector: Projector,
                  suffix: str, done: int, generation: int | str) -> list[str]:
    """Apply the events still unseen, then swap (or compare), in one transaction."""
    differ: list[str] = []
    assert isinstance(projector.io, SqliteIO)
    projector.io.lock = None  # the caller holds the write lock for this last step
    await db.execute("BEGIN IMMEDIATE")
    try:
        while True:
            rows = await fetch(db, done, _PAGE_EVENTS)
            for row in rows:
                await projector.apply(store._record(row, arrays=True))
            if rows:
                await projector.save()
                await advance(db, suffix, done, rows[-1][0])
                done = rows[-1][0]
            if len(rows) < _PAGE_EVENTS:
                break
        if suffix == "__new":
            for table in PROJECTION_TABLES:
                await db.execute(f"DROP TABLE IF EXISTS {table}__old")
                await db.execute(f"ALTER TABLE {table} RENAME TO {table}__old")
                await db.execute(f"ALTER TABLE {table}{suffix} RENAME TO {table}")
            await db.execute("UPDATE meta SET value = ? WHERE key = 'generation'",
                             (generation,))
            # The live cache still matches (a rebuild reproduces the same rows), but it is
            # dropped here, under the write lock, never in the middle of a commit.
            store.committer.forget()
        else:
            for table in PROJECTION_TABLES:
                counts = [(await db.execute_fetchall(sql))[0][0] for sql in (
                    f"SELECT count(*) FROM (SELECT * FROM {table} EXCEPT "
                    f"SELECT * FROM {table}{suffix})",
                    f"SELECT count(*) FROM (SELECT * FROM {table}{suffix} EXCEPT "
                    f"SELECT * FROM {table})",
                    f"SELECT (SELECT count(*) FROM {table}) - "
                    f"(SELECT count(*) FROM {table}{suffix})")]
                if any(counts):
                    differ.append(table)
                await db.execute(f"DROP TABLE {table}{suffix}")
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise
    return differ

