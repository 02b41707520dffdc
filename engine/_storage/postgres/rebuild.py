"""What a rebuild needs of PostgreSQL (the rebuild itself is ``engine._storage.rebuild``).

A rebuild has a connection of its own, and takes turns with rebuilds of other processes on
the same schema through an advisory lock held by that connection: what the last rebuild left
(its generation, the projections' checkpoints) is read only once it is this one's turn. Its
pages are read on the pooled readers, and its writes commit on its own connection, so appends
from every process go on meanwhile. The last step takes the log's lock (``LOCK TABLE events
IN EXCLUSIVE MODE``, as an append does: no process can append until it commits) and, before
renaming the tables, locks them all: a snapshot read locks every projection table before it
takes its snapshot, in the same order, so one that waits for the swap reads the new tables
whole (``connection``). Should a read still deadlock with the swap (a lone statement that
locks tables in another order), PostgreSQL cancels one of the two, and that one runs again —
the last step from where the pages left off.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TypeVar

import anyio
import asyncpg

from engine._core.events import Upcasters
from engine._projections.tables import PROJECTION_TABLES
from engine._storage.io import fetch_events
from engine._storage.rebuild import RebuildSite
from engine._storage.session import Row, Session

from .connection import Link, Readers, Target, driver_error, failure, open_connection
from .schema import projection_ddl
from .session import PostgresSession

__all__ = ["PostgresRebuild"]

T = TypeVar("T")

_TURN = "SELECT pg_advisory_lock(hashtext('kittiwake rebuild ' || current_schema()))"
_AFTER_DEADLOCK = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
"""Pauses before the last step runs again after PostgreSQL picked it as a deadlock's
victim."""


class PostgresRebuild(RebuildSite):
    """A rebuild beside the live writers of a PostgreSQL schema."""

    def __init__(self, target: Target, readers: Readers, lock: anyio.Lock, *,
                 upcasters: Upcasters, forget: Callable[[], None],
                 head: Callable[[], Awaitable[int]]) -> None:
        self.target = target
        self.readers = readers
        self.lock = lock  # the committer's: held by the last step, as by an append
        self.upcasters = upcasters
        self._forget = forget
        self._head = head
        self._connection: asyncpg.Connection[asyncpg.Record] | None = None
        self._session: PostgresSession | None = None

    @property
    def session(self) -> Session:
        assert self._session is not None, "the rebuild has not started"
        return self._session

    def ddl(self, suffix: str, generation: int | str) -> list[str]:
        return projection_ddl(suffix, generation)

    async def __aenter__(self) -> PostgresRebuild:
        try:
            connection = await open_connection(self.target)
        except Exception as exc:
            if driver_error(exc):
                raise failure(exc, "connecting for a rebuild") from exc
            raise
        self._connection = connection
        self._session = PostgresSession(connection)
        try:
            await connection.execute(_TURN)  # the lock goes with the connection
        except BaseException as exc:
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with anyio.CancelScope(shield=True):
                if connection.is_closed():
                    pass
                elif isinstance(exc, Exception) and driver_error(exc):
                    connection.terminate()
                else:
                    await connection.close()
        if isinstance(exc, Exception) and driver_error(exc):
            raise failure(exc, "rebuilding the projections") from exc

    def _link(self) -> Link:
        assert self._connection is not None, "the rebuild has not started"
        return self._connection

    async def write(self, work: Callable[[Session], Awaitable[T]]) -> T:
        async with self._link().transaction():
            return await work(self.session)

    async def page(self, after: int, limit: int) -> Sequence[Row]:
        async def work(connection: Link) -> Sequence[Row]:
            return await fetch_events(PostgresSession(connection), after, limit)

        return await self.readers.run(work, what="reading the log for a rebuild")

    async def finish(self, work: Callable[[Session], Awaitable[T]]) -> T:
        async with self.lock:
            with anyio.CancelScope(shield=True):
                for attempt, delay in enumerate(_AFTER_DEADLOCK):
                    if delay:
                        await anyio.sleep(delay)
                    try:
                        async with self._link().transaction():
                            await self._link().execute("LOCK TABLE events IN EXCLUSIVE MODE")
                            return await work(self.session)
                    except asyncpg.exceptions.TransactionRollbackError:
                        if attempt == len(_AFTER_DEADLOCK) - 1:
                            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def before_swap(self, session: Session) -> None:
        await session.execute(
            f"LOCK TABLE {', '.join(PROJECTION_TABLES)} IN ACCESS EXCLUSIVE MODE")

    def swapped(self) -> None:
        self._forget()

    async def head(self) -> int:
        return await self._head()
