"""Rebuilds, written once: replay the log into fresh tables, then swap them in (or compare).

Three things overlap: the backend reads the next page of events beside the rebuild, a write
transaction saves the previous page with its checkpoints' advance (a transaction per page, so
live appends go on between them), and the event loop folds the current page. The last step
runs under the writer's lock with the log closed to appends from anywhere: it folds the
events still unseen and swaps the tables in (``NEW``) — or compares them with the live ones
row for row and drops them (``CHECK``) — in one transaction. Readers go on reading the old
tables until it commits. Dropping the swapped-out tables reads every page of them, so the
store does that afterwards (``drop_retired``).

What differs between backends is a :class:`RebuildSite`: where the fold's statements run and
how its writes take turns with live appends, where pages are read, and how the last step
keeps everyone else from appending.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import TypeVar

import anyio

from engine._core.events import Upcasters
from engine._projections.projector import Projector
from engine._projections.rows import Changes
from engine._projections.stored import record_of
from engine._projections.tables import PROJECTION_TABLES
from engine._query.dialect import Dialect
from engine._query.sql import Compiled

from .contract import Progress
from .io import TableIO, advance, fetch_events, save
from .reads import BEHIND
from .session import Row, Session

__all__ = ["CHECK", "NEW", "RebuildSite", "build"]

T = TypeVar("T")

NEW = "__new"
"""The suffix of the tables a rebuild fills and swaps in."""
CHECK = "__check"
"""The suffix of the tables a verification fills, compares with the live ones, and drops."""

_PAGE_EVENTS = 4096  # at most this many events per page, and per read of the last step
_PAGE_BYTES = 4 << 20  # pages aim at this much payload


class RebuildSite(ABC):
    """What a backend provides a rebuild; entered around it (connections, locks)."""

    upcasters: Upcasters

    @property
    @abstractmethod
    def session(self) -> Session:
        """Where the fold loads rows and writes them (in :meth:`write` and :meth:`finish`)."""

    @abstractmethod
    def ddl(self, suffix: str, generation: int | str) -> list[str]:
        """The statements creating the projection tables ``<table><suffix>``."""

    @abstractmethod
    async def write(self, work: Callable[[Session], Awaitable[T]]) -> T:
        """``work(session)`` in one write transaction, taking turns with live appends."""

    @abstractmethod
    async def page(self, after: int, limit: int) -> Sequence[Row]:
        """Up to ``limit`` events after ``after``, read beside the rebuild's session."""

    @abstractmethod
    async def finish(self, work: Callable[[Session], Awaitable[T]]) -> T:
        """``work(session)`` in one transaction under the writer's lock, with the log closed
        to appends from anywhere; again from the start if the database picked it as a
        deadlock's victim."""

    @abstractmethod
    async def before_swap(self, session: Session) -> None:
        """Inside the last step, before the tables are renamed."""

    @abstractmethod
    def swapped(self) -> None:
        """The swap is about to commit (the writer's lock is held): rows the live projector
        keeps are dropped, never in the middle of a commit."""

    @abstractmethod
    async def head(self) -> int:
        """The log's head, for progress."""

    async def __aenter__(self) -> RebuildSite:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        return None


async def build(site: RebuildSite, suffix: str, progress: Progress | None, *,
                if_behind: bool = False) -> list[str]:
    """Replay the log into ``<table><suffix>`` tables, then swap them in (``NEW``) or compare
    them with the live tables and drop them (``CHECK``); returns the tables that differ.
    With ``if_behind``, only when some projection is behind the log once the site is entered
    (several processes opening at once need one rebuild, not one each)."""
    async with site:
        try:
            return await _build(site, suffix, progress, if_behind)
        except BaseExceptionGroup as group:
            error = _sole(group)
            raise error from error.__cause__


async def _build(site: RebuildSite, suffix: str, progress: Progress | None,
                 if_behind: bool) -> list[str]:
    session = site.session
    if if_behind and not (await session.fetch(BEHIND))[0][0]:
        return []
    generation: int | str = "check"
    if suffix == NEW:
        generation = int((await session.fetch(
            "SELECT value FROM meta WHERE key = 'generation'"))[0][0]) + 1

    async def create(session: Session) -> None:
        for table in PROJECTION_TABLES:
            await session.execute(f"DROP TABLE IF EXISTS {table}{suffix}")
        for statement in site.ddl(suffix, generation):
            await session.execute(statement)

    await site.write(create)
    io = _PagingIO(site, suffix)
    projector = Projector(io)
    done = await _replay(site, projector, io, progress)
    differ = await site.finish(_LastStep(site, projector, suffix, done, generation).run)
    if progress is not None:
        head = await site.head()
        progress(head, head)
    return differ


async def _replay(site: RebuildSite, projector: Projector, io: _PagingIO,
                  progress: Progress | None) -> int:
    """Fold and save every full page; returns the position saved up to (the rest, a page
    that was not full, is the last step's)."""
    done = 0
    limit = 4
    async with anyio.create_task_group() as tasks:
        page = await site.page(0, limit)
        saved: anyio.Event | None = None
        while len(page) == limit:
            after = page[-1][0]
            # Pages of about _PAGE_BYTES of payload, whatever the events' sizes.
            size = sum(len(row[8]) for row in page) or 1
            limit = max(1, min(_PAGE_EVENTS, limit * _PAGE_BYTES // size))
            upcoming = _Prefetch()
            tasks.start_soon(upcoming.run, site, after, limit)
            for row in page:
                await projector.apply(record_of(row, True, site.upcasters))
            changes, projector.changes = projector.changes, Changes()
            if saved is not None:
                await saved.wait()  # one page in flight: the fold runs ahead by one page
            saved = io.schedule(tasks, changes, (done, after))
            done = after
            if progress is not None:
                progress(done, await site.head())
            page = await upcoming.result()
        if saved is not None:
            await saved.wait()
    return done


class _Prefetch:
    """The next page of events, read while the current one is folded."""

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._rows: Sequence[Row] = []

    async def run(self, site: RebuildSite, after: int, limit: int) -> None:
        try:
            self._rows = await site.page(after, limit)
        finally:
            self._done.set()

    async def result(self) -> Sequence[Row]:
        await self._done.wait()
        return self._rows


class _PagingIO(TableIO):
    """The fold's IO while it pages through the log.

    Saves are write transactions of their own, in the order they were asked for (a page's
    save runs beside the next page's fold; a save the fold needs before it reads back what
    it wrote waits for it), so a row is never written over by an older version of itself.
    The fold's loads and the saves take turns on the site's session, which may be a single
    connection.
    """

    def __init__(self, site: RebuildSite, suffix: str) -> None:
        self.turn = anyio.Lock()
        super().__init__(_Turns(site.session, self.turn), suffix)
        self.site = site
        self._last: anyio.Event | None = None  # set when the last save asked for is done

    def schedule(self, tasks: anyio.abc.TaskGroup, changes: Changes,
                 checkpoints: tuple[int, int]) -> anyio.Event:
        """Save ``changes`` and move the checkpoints from ``checkpoints[0]`` to
        ``checkpoints[1]`` in a task; the event is set once it is done."""
        previous, done = self._last, anyio.Event()
        self._last = done
        tasks.start_soon(self._write, previous, done, changes, checkpoints)
        return done

    async def save(self, changes: Changes) -> None:
        previous, done = self._last, anyio.Event()
        self._last = done
        await self._write(previous, done, changes, None)

    async def _write(self, previous: anyio.Event | None, done: anyio.Event, changes: Changes,
                     checkpoints: tuple[int, int] | None) -> None:
        async def work(session: Session) -> None:
            await save(session, self.worded, changes)
            if checkpoints is not None:
                await advance(session, self.suffix, *checkpoints)

        try:
            if previous is not None:
                await previous.wait()
            async with self.turn:
                await self.site.write(work)
        finally:
            done.set()


class _Turns:
    """A session whose statements wait while a write transaction holds ``turn``."""

    def __init__(self, session: Session, turn: anyio.Lock) -> None:
        self._session = session
        self._turn = turn

    @property
    def dialect(self) -> Dialect:
        return self._session.dialect

    async def fetch(self, sql: str, params: Sequence[object] = ()) -> Sequence[Row]:
        async with self._turn:
            return await self._session.fetch(sql, params)

    async def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        async with self._turn:
            return await self._session.execute(sql, params)

    async def execute_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        async with self._turn:
            await self._session.execute_many(sql, rows)

    async def query(self, statement: Compiled) -> Sequence[Row]:
        async with self._turn:
            return await self._session.query(statement)


class _LastStep:
    """Fold the events still unseen, then swap or compare, inside the site's last
    transaction (which may run more than once: each run starts from what pages saved)."""

    def __init__(self, site: RebuildSite, projector: Projector, suffix: str, done: int,
                 generation: int | str) -> None:
        self.site = site
        self.projector = projector
        self.suffix = suffix
        self.done = done
        self.generation = generation
        self.attempts = 0

    async def run(self, session: Session) -> list[str]:
        if self.attempts:
            self.projector.clear()  # it holds rows a rolled-back attempt changed
        self.attempts += 1
        self.projector.io = TableIO(session, self.suffix)  # plain: no page is in flight
        done = self.done
        while True:
            rows = await fetch_events(session, done, _PAGE_EVENTS)
            for row in rows:
                await self.projector.apply(record_of(row, True, self.site.upcasters))
            if rows:
                await self.projector.save()
                await advance(session, self.suffix, done, rows[-1][0])
                done = rows[-1][0]
            if len(rows) < _PAGE_EVENTS:
                break
        if self.suffix == NEW:
            await self._swap(session)
            return []
        return await self._compare(session)

    async def _swap(self, session: Session) -> None:
        await self.site.before_swap(session)
        for table in PROJECTION_TABLES:
            await session.execute(f"DROP TABLE IF EXISTS {table}__old")
            await session.execute(f"ALTER TABLE {table} RENAME TO {table}__old")
            await session.execute(f"ALTER TABLE {table}{self.suffix} RENAME TO {table}")
        await session.execute("UPDATE meta SET value = ? WHERE key = 'generation'",
                              (self.generation,))
        # The live cache still matches (a rebuild reproduces the same rows), but it is
        # dropped here, under the write lock, never in the middle of a commit.
        self.site.swapped()

    async def _compare(self, session: Session) -> list[str]:
        differ = []
        for table in PROJECTION_TABLES:
            other = f"{table}{self.suffix}"
            ((fewer, more, count),) = await session.fetch(
                f"SELECT (SELECT count(*) FROM (SELECT * FROM {table} EXCEPT "
                f"SELECT * FROM {other}) a), (SELECT count(*) FROM (SELECT * FROM {other} "
                f"EXCEPT SELECT * FROM {table}) b), (SELECT count(*) FROM {table}) - "
                f"(SELECT count(*) FROM {other})")
            if fewer or more or count:
                differ.append(table)
            await session.execute(f"DROP TABLE {other}")
        return differ


def _sole(group: BaseExceptionGroup) -> BaseException:
    """The error a task group's failure stands for: its first that is not a cancellation
    (the others were caused by it)."""
    cancelled = anyio.get_cancelled_exc_class()
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            error = _sole(error)
        if not isinstance(error, cancelled):
            return error
    return group
