"""What a rebuild needs of SQLite (the rebuild itself is ``engine._storage.rebuild``).

The fold writes on the writer connection, a transaction per page under the write lock, so
live appends go on between pages; pages are read on a connection of the rebuild's own (an
in-memory database has a single connection, and reads there). The last step's
``BEGIN IMMEDIATE`` under the write lock is enough to close the log: SQLite has one writer
at a time across every process.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TypeVar

import anyio

from engine._core.events import Upcasters
from engine._storage.io import fetch_events
from engine._storage.rebuild import RebuildSite
from engine._storage.session import Row, Session

from .schema import projection_ddl
from .session import SqliteSession, connect

__all__ = ["SqliteRebuild"]

T = TypeVar("T")


class SqliteRebuild(RebuildSite):
    """A rebuild beside the live writer of a SQLite store."""

    def __init__(self, writer: SqliteSession, lock: anyio.Lock, *, synchronous: str,
                 upcasters: Upcasters, forget: Callable[[], None],
                 head: Callable[[], Awaitable[int]],
                 settle: Callable[[], Awaitable[None]]) -> None:
        self.writer = writer
        self.lock = lock
        self.synchronous = synchronous
        self.upcasters = upcasters
        self._forget = forget
        self._head = head
        self._settle = settle
        self._pages: SqliteSession | None = None

    @property
    def session(self) -> Session:
        return self.writer

    def ddl(self, suffix: str, generation: int | str) -> list[str]:
        return projection_ddl(suffix, generation)

    async def __aenter__(self) -> SqliteRebuild:
        path = self.writer.path
        self._pages = self.writer if path == ":memory:" else await connect(
            path, synchronous=self.synchronous, doing="reading the log of")
        # Who is rebuilding: a process that opens the file meanwhile leaves this rebuild's
        # tables alone while that process lives (``SqliteStore.drop_retired``).
        await self.write(lambda session: session.execute(
            "INSERT OR REPLACE INTO meta VALUES ('rebuilding', ?)", (os.getpid(),)))
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        pages, self._pages = self._pages, None
        if pages is not None and pages is not self.writer:
            await pages.close()
        with anyio.CancelScope(shield=True):
            await self.write(lambda session: session.execute(
                "DELETE FROM meta WHERE key = 'rebuilding' AND value = ?", (os.getpid(),)))

    async def write(self, work: Callable[[Session], Awaitable[T]]) -> T:
        async with self.lock:
            with anyio.CancelScope(shield=True):
                async with self.writer.transaction() as session:
                    done = await work(session)
        return done

    async def page(self, after: int, limit: int) -> Sequence[Row]:
        assert self._pages is not None, "the rebuild has not started"
        return await fetch_events(self._pages, after, limit)

    async def finish(self, work: Callable[[Session], Awaitable[T]]) -> T:
        async with self.lock:
            with anyio.CancelScope(shield=True):
                # The live tables at the log's head first: a comparison needs them there
                # (the rows of the last commits may not be saved yet), a swap drops them.
                await self._settle()
                async with self.writer.transaction() as session:
                    done = await work(session)
        return done

    async def before_swap(self, session: Session) -> None:
        return None  # readers keep their snapshot of the old tables; nothing to wait for

    def swapped(self) -> None:
        self._forget()

    async def head(self) -> int:
        return await self._head()
