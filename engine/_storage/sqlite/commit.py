"""Group commits on SQLite: the one place where events enter the log.

A group of requests is one ``BEGIN IMMEDIATE`` transaction (SQLite's one writer: the rowid is
the position, and commit order is position order). ``engine._storage.commit`` assigns positions
and versions and folds each event through the projector, which refuses what the projections
cannot take; here the events are written and it all commits together. A request the
projections refuse rolls the transaction back and the group is replayed without it.

The projections' rows are saved behind the log, not with every commit. A small commit changes
a few rows of many tables and indexes: saved with it, each commit wrote (and, at
``durability="full"``, synced) some 45 pages of 16 KiB, and creating a run cost three times
what writing its events does. The fold still happens at once — it is what refuses bad
requests — and its rows wait in the projector's cache, to be saved with the checkpoints' move
by a later commit once they are ``LAG`` seconds old or numerous, by a save of their own that
long after the last commit, before any read of the projections, and at close. Every read
therefore sees everything committed before it, in this process and in any other: a reader
that finds the projections behind the log's head folds the missing events itself
(:meth:`Committer.settle`), from the log, which holds them durably. So does the next writer
when this one crashed first, or when its save failed: nothing the log holds is lost.

(Committing a large flush as a pipeline of smaller transactions, folding one while the next
commits, was measured and lost: aiosqlite sends each statement to its thread separately, and
every hand-off waits for the GIL while the fold holds it. See docs/performance.md.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio

from engine._core.events import RUN_CREATED, Record, Upcasters
from engine._projections.rows import PROJECTIONS, Changes, RunRow
from engine._projections.stored import (
    EVENT_COLUMNS,
    RUN_COLUMNS,
    change_rows,
    run_row,
    unreadable,
)
from engine._storage.commit import GroupCommit, Refused
from engine._storage.contract import AppendRequest
from engine._storage.io import TableIO, statements
from engine._storage.session import Row

from .session import Check, SqliteSession, Write

__all__ = ["LAG", "Committer"]

T = TypeVar("T")

LAG = 0.05
"""Seconds the projections' rows may wait in the cache after the commit that made them (unless
a read of them comes first)."""
_PENDING_RUNS = 256  # unsaved run rows that make the next commit save them at once
_PENDING_CHUNKS = 64  # unsaved series chunks (of up to 4,096 points) that do the same
_ID_BATCH = 500  # ids per "already in the log?" query (SQLite binds at most 32766 values)
_TAIL_PAGE = 1000  # events per read when folding what another writer left unsaved
_INSERT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
_POSITIONS = ("SELECT (SELECT coalesce(max(position), 0) FROM events), "
              "(SELECT min(position) FROM checkpoints), (SELECT max(position) FROM checkpoints)")
_TAIL = (f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? AND position <= ? "
         "ORDER BY position LIMIT ?")
_ADVANCE = "UPDATE checkpoints SET position = ? WHERE position = ?"
_BEHIND = ("projection checkpoints are not at position {head}: refusing to apply events twice "
           "or skip them; run `kittiwake rebuild`")


class _Unsaved(Exception):
    """A fold outside a transaction needed the projector's rows in the database."""


class _GuardedIO(TableIO):
    """The projector's loads and saves; a save refused while the fold runs ahead of its
    transaction (the optimistic path), where it would commit on its own."""

    outside = False

    async def save(self, changes: Changes) -> None:
        if self.outside:
            raise _Unsaved
        await super().save(changes)


class Committer(GroupCommit):
    """Appends requests on the writer connection; owns the live projector and its cache, and
    the projections' rows not saved yet."""

    def __init__(self, session: SqliteSession, lock: anyio.Lock, upcasters: Upcasters, *,
                 committed: Callable[[], None] | None = None) -> None:
        self.session = session
        self._after_commit = committed
        self._worded = statements("")
        self._io = _GuardedIO(session)
        super().__init__(self._io, upcasters, lock)
        self.checkpoint = -1
        """Where the projections' checkpoints are in the file, as of this writer's last
        transaction (-1: not known). Below ``known_head``, the cache holds the rows of the
        events in between, not saved yet."""
        self._since: float | None = None  # when the oldest unsaved row was made
        self._timer: asyncio.TimerHandle | None = None
        self._saving: asyncio.Task[None] | None = None

    @property
    def pending(self) -> bool:
        """Whether committed events' projection rows wait in the cache, unsaved."""
        return 0 <= self.checkpoint < self.known_head

    def forget(self) -> None:
        super().forget()
        self.checkpoint = -1
        self._since = None

    async def close(self) -> None:
        """Save what waits, before the connection closes. A save that fails leaves it to the
        next opening of the file, which folds it from the log: nothing is lost."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        saving = self._saving
        if saving is not None:
            with anyio.CancelScope(shield=True):
                await saving
        if self.pending:
            try:
                await self.settle()
            except Exception:
                self.forget()  # the log holds the events; see above

    async def transaction(self, requests: Sequence[AppendRequest], pending: list[int],
                          now: float) -> dict[int, list[Record]]:
        added = await self._optimistic(requests, pending, now)
        if added is None:
            added = await self._checked(requests, pending, now)
        if self._after_commit is not None:
            self._after_commit()
        return added

    async def _optimistic(self, requests: Sequence[AppendRequest], pending: list[int],
                          now: float) -> dict[int, list[Record]] | None:
        """The usual group — this writer appended last, the events are new, every run is
        cached or being created — in ONE hand-off: fold first, assuming the head is where
        this writer left it, no id is in the log yet and no run being created exists; then
        check all three inside the transaction before writing. None when the group is not
        like that, or a check failed (rolled back; the cache forgotten): the checked path
        takes it from the start."""
        head = self.known_head
        saved = self.checkpoint
        events = [e for i in pending for e in requests[i].events]
        streams = self.projector.uncached(
            (requests[i].project, requests[i].run_id) for i in pending)
        creating = {(requests[i].project, requests[i].run_id) for i in pending
                    if requests[i].events and requests[i].events[0].type == RUN_CREATED}
        if (head < 0 or saved < 0 or len(events) > _ID_BATCH
                or len(streams) > _ID_BATCH // 2 or not creating.issuperset(streams)):
            return None
        self.projector.prime(dict.fromkeys(streams))  # assumed absent: checked below
        self._io.outside = True
        try:
            added, rows, position = await self.fold_group(requests, pending, {}, head, now)
        except (Refused, _Unsaved):
            self.forget()  # maybe refused on a stale cache: the checked path decides
            return None
        except BaseException:
            self.forget()
            raise
        finally:
            self._io.outside = False
        if not rows:
            return added
        ids = [e.id for e in events]
        check = Check(
            "SELECT (SELECT coalesce(max(position), 0) FROM events), "
            "(SELECT min(position) FROM checkpoints), (SELECT max(position) FROM checkpoints), "
            f"(SELECT count(*) FROM events WHERE event_id IN ({','.join('?' * len(ids))})), "
            + (f"(SELECT count(*) FROM runs WHERE (project, run_id) IN "
               f"(VALUES {','.join(['(?, ?)'] * len(streams))}))" if streams else "0"),
            [*ids, *(x for key in streams for x in key)], (head, saved, saved, 0, 0))
        due = self._due()
        writes = [Write(_INSERT, rows, many=True)]
        if due:
            writes += self._saves(position, saved)
        try:
            committed = await self.session.commit_if(check, writes)
        except BaseException:
            self.forget()
            raise
        if not committed:
            self.forget()
            return None
        self._moved(position, saved=due)
        return added

    def _due(self) -> bool:
        """Whether the next commit saves the projections' rows: they are ``LAG`` old, or
        many."""
        changes = self.projector.changes
        return ((self._since is not None and time.monotonic() - self._since >= LAG)
                or len(changes.runs) >= _PENDING_RUNS or len(changes.chunks) >= _PENDING_CHUNKS)

    def _saves(self, position: int, saved: int) -> list[Write]:
        """The projection writes pending, and the checkpoints' move from ``saved`` to
        ``position``."""
        return [
            *(Write(self._worded[write], changed, many=True)
              for write, changed in change_rows(self.projector.take_changes()) if changed),
            Write(_ADVANCE, (position, saved), expect=len(PROJECTIONS),
                  refusal=_BEHIND.format(head=saved)),
        ]

    def _moved(self, position: int, *, saved: bool) -> None:
        """Note a commit that moved the head to ``position`` (and the checkpoints with it, when
        ``saved``); a save of what it left unsaved comes ``LAG`` later at the latest."""
        if saved:
            self.checkpoint = position
            self._since = None
        elif self._since is None:
            self._since = time.monotonic()
        self.committed(position)
        if self.pending and self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(LAG, self._save_later)

    def _save_later(self) -> None:
        self._timer = None
        if self._saving is None:
            self._saving = asyncio.get_running_loop().create_task(self._save())

    async def _save(self) -> None:
        try:
            await self.settle()
        except Exception:
            # Whatever failed forgot the unsaved rows (``forget``): the log holds their
            # events, and the next commit or read of the projections folds them again.
            self.forget()
        finally:
            self._saving = None

    async def settle(self) -> None:
        """Bring the projections in the file to the log's head: save the rows this writer
        has not saved, or fold from the log the events another writer left unsaved (it
        crashed, or is yet to save them) and save those. Nothing to do costs one read."""
        with anyio.CancelScope(shield=True):  # a cancelled save may still commit: finish it
            async with self.lock:
                await self.settle_locked()

    async def settle_locked(self) -> None:
        """:meth:`settle`, for a caller that holds the write lock."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.pending:
            ((head, low, high),) = await self.session.fetch(_POSITIONS)
            if low is None or low != high or low >= head:
                return  # current; or a projection is new: the rebuild at open's
        await self._settle()

    async def _settle(self) -> None:
        async def save(found: list[list[Row]]) -> tuple[list[Write], int | None, bool]:
            ((head, low, high),) = found[0]
            if low is None or low != high or low >= head:
                self.forget()  # saved by someone else; or a projection is new (see above)
                return [], None, False
            await self._fold_tail(self.session, head, low)
            return self._saves(head, low), head, True

        if await self._transaction([(_POSITIONS, ())], save) and self._after_commit:
            self._after_commit()

    async def _transaction(
            self, reads: Sequence[tuple[str, Sequence[Any]]],
            work: Callable[[list[list[Row]]], Awaitable[tuple[list[Write], int | None, T]]],
    ) -> T:
        """``BEGIN`` with the ``reads``; ``work`` folds on what they found and returns the
        writes, the head they move the log and the checkpoints to (None: nothing moved) and
        its result; then the writes and ``COMMIT``. On any error everything is rolled back
        and the cache forgotten."""
        session = self.session
        try:
            found = await session.begin_with(reads)
            try:
                writes, position, result = await work(found)
            except BaseException:
                await session.rollback()
                raise
            await session.commit_with(writes)
        except BaseException:
            self.forget()
            raise
        if position is not None:
            self._moved(position, saved=True)
        return result

    async def _fold_tail(self, session: SqliteSession, head: int, saved: int) -> None:
        """Inside a transaction that read the log's ``head`` and the checkpoints at
        ``saved``: have the projector's cache and unsaved rows reach ``head`` — those this
        writer holds, or, when the file moved on without it, the events after ``saved``
        folded from the log."""
        if head == self.known_head and saved == self.checkpoint:
            return
        self.projector.clear()
        self.checkpoint = saved
        while saved < head:
            rows = await session.fetch(_TAIL, (saved, head, _TAIL_PAGE))
            for record in self.stored(rows).values():
                await self.projector.apply(record)
            saved = rows[-1][0]
        self.known_head = head

    async def _checked(self, requests: Sequence[AppendRequest], pending: list[int],
                       now: float) -> dict[int, list[Record]]:
        """Any group, in two hand-offs to the connection's thread: ``BEGIN`` with the head,
        the ids already in the log and the rows of runs not cached, then — after the fold, on
        the event loop — every insert and projection write, the checkpoints and ``COMMIT``.
        (The fold's own loads of rows it has not cached add theirs.)"""
        ids = list(dict.fromkeys(e.id for i in pending for e in requests[i].events))
        # The rows of runs the projector has not cached come with the first hand-off too:
        # a group that starts a run would otherwise spend a hand-off to learn it is new.
        streams = self.projector.uncached(
            (requests[i].project, requests[i].run_id) for i in pending)
        reads: list[tuple[str, Sequence[Any]]] = [
            (_POSITIONS, ()),
            *((f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE (project, run_id) IN "
               f"(VALUES {','.join(['(?, ?)'] * len(batch))})", [x for k in batch for x in k])
              for batch in _batches(streams, _ID_BATCH // 2)),
            *((f"SELECT {EVENT_COLUMNS} FROM events "
               f"WHERE event_id IN ({','.join('?' * len(batch))})", batch)
              for batch in _batches(ids, _ID_BATCH)),
        ]
        runs = len(reads) - 1 - len(range(0, len(ids), _ID_BATCH))

        async def fold(found: list[list[Row]],
                       ) -> tuple[list[Write], int, dict[int, list[Record]]]:
            ((head, low, high),) = found[0]
            if low is not None and low == high and low < head:
                await self._fold_tail(self.session, head, low)  # before the runs it read
            else:
                if head != self.known_head or low != self.checkpoint:
                    self.projector.clear()  # someone else wrote, or saved ours
                self.checkpoint = -1 if low is None else low
            primed: dict[tuple[str, str], RunRow | None] = dict.fromkeys(streams)
            for row in (r for rows in found[1:1 + runs] for r in rows):
                with unreadable("a run's row"):
                    decoded = run_row(row)
                primed[(decoded.project, decoded.run_id)] = decoded
            self.projector.prime(primed)
            known = self.stored([row for rows in found[1 + runs:] for row in rows])
            added, rows, position = await self.fold_group(requests, pending, known, head, now)
            # This path is the rare one (a run not cached, a foreign append, a retry): it
            # saves everything, which also keeps the rows saved mid-fold right.
            writes = ([Write(_INSERT, rows, many=True), *self._saves(position, low)]
                      if rows or low != position else [])
            return writes, position, added

        return await self._transaction(reads, fold)


def _batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
