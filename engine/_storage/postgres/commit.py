"""Group commits on PostgreSQL: the one place where events enter the shared log.

Gap-free positions, as readers see them, come from taking turns: each append transaction
begins with ``LOCK TABLE events IN EXCLUSIVE MODE`` and assigns positions as the log's
``max(position) + 1`` inside it, exactly as SQLite's single writer does. The lock is held to
the commit, so transactions commit in position order and a reader that polls
``position > last`` can never see a later position before an earlier one becomes visible —
there is no gap to wait out and no timer that skips one. EXCLUSIVE mode conflicts only with
writers: readers of the log and of the projections are never blocked. (The other cure,
reading only below ``pg_snapshot_xmin``, lets appenders run in parallel, but they still
serialize on the projection rows they share, and every reader would then lag behind the
slowest transaction in flight, while ``flush()`` promises reads that show what it wrote.)

Inside the lock, ``engine._storage.commit`` skips event ids already in the log (so a retry from
any process is idempotent, and is answered with the records the first attempt stored),
checks ``expected_version`` against the stream as every process left it, and folds each
event through the shared projector; events are inserted, the projection rows written, every
checkpoint advanced, a NOTIFY queued (delivered at commit, payload empty: a doorbell), and it
all commits together.

A connection lost mid-append is opened again and the group is sent again: its event ids make
the second attempt skip whatever the first one committed.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import asyncpg

from engine._core.events import Record, Upcasters
from engine._projections.stored import EVENT_COLUMNS
from engine._storage.commit import GroupCommit, Refused
from engine._storage.contract import AppendRequest
from engine._storage.io import TableIO, advance

from .connection import (
    RECONNECT_DELAYS,
    Target,
    bad_value,
    broken,
    driver_error,
    failure,
    open_connection,
    transient,
)
from .session import PostgresSession

__all__ = ["Committer"]

_INSERT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
_HEAD_AND_KNOWN = ("SELECT (SELECT coalesce(max(position), 0) FROM events), "
                   "ARRAY(SELECT event_id FROM events WHERE event_id = ANY($1::bytea[]))")
_STORED = f"SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ANY(?::bytea[])"


class Committer(GroupCommit):
    """Appends requests on the writer connection; owns the live projector and its cache."""

    def __init__(self, target: Target, connection: asyncpg.Connection[asyncpg.Record],
                 channel: str, upcasters: Upcasters) -> None:
        self.target = target
        self.connection = connection
        self.channel = channel
        self._session = PostgresSession(connection)
        super().__init__(TableIO(self._session), upcasters, anyio.Lock(fast_acquire=True))

    async def connected(self) -> asyncpg.Connection[asyncpg.Record]:
        """The writer connection, opened again if it was lost (call with the lock held)."""
        if self.connection.is_closed():
            self.forget()
            self.connection = await open_connection(self.target)
            self._session.connection = self.connection
        return self.connection

    async def close(self) -> None:
        """Close the writer connection."""
        async with self.lock:
            await self.connection.close()

    async def transaction(self, requests: Sequence[AppendRequest], pending: list[int],
                          now: float) -> dict[int, list[Record]]:
        last = len(RECONNECT_DELAYS) - 1
        for attempt, delay in enumerate(RECONNECT_DELAYS):
            if delay:
                await anyio.sleep(delay)
            try:
                return await self._attempt(await self.connected(), requests, pending, now)
            except Refused:
                raise
            except Exception as exc:
                if not driver_error(exc):
                    raise
                lost = transient(exc, self.connection)
                if broken(exc) or bad_value(exc):
                    # Whatever is left of it (an argument the driver could not encode leaves
                    # its statement half sent): start afresh.
                    self.connection.terminate()
                if attempt == last or not lost:
                    raise failure(exc, "appending to the log", lost=lost) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, connection: asyncpg.Connection[asyncpg.Record],
                       requests: Sequence[AppendRequest], pending: list[int],
                       now: float) -> dict[int, list[Record]]:
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute("LOCK TABLE events IN EXCLUSIVE MODE")
            found = await connection.fetchrow(
                _HEAD_AND_KNOWN, [e.id for i in pending for e in requests[i].events])
            assert found is not None  # one row, always
            head, present = found
            self.trust(head)
            # Only a retry finds its ids already there: then the stored records answer it.
            known = self.stored(await self._session.fetch(_STORED, (present,))) if present else {}
            added, rows, position = await self.fold_group(requests, pending, known, head, now)
            if rows:
                await connection.executemany(_INSERT, rows)
                await self.projector.save()
                await advance(self._session, "", head, position)
                await connection.execute("SELECT pg_notify($1, '')", self.channel)
            await transaction.commit()
        except BaseException:
            self.forget()
            if not connection.is_closed():
                try:
                    await transaction.rollback()
                except Exception:
                    connection.terminate()  # a connection stuck in a transaction is no use
            raise
        self.committed(position)
        return added
