"""Group commits on SQLite: the one place where events enter the log.

A group of requests is one ``BEGIN IMMEDIATE`` transaction (SQLite's one writer: the rowid is
the position, and commit order is position order). ``engine._storage.commit`` assigns positions
and versions and folds each event through the projector; here events and projection rows are
written, checkpoints advance, and it all commits together. A request the projections refuse
rolls the transaction back and the group is replayed without it.

(Committing a large flush as a pipeline of smaller transactions, folding one while the next
commits, was measured and lost: aiosqlite sends each statement to its thread separately, and
every hand-off waits for the GIL while the fold holds it. See docs/performance.md.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio

from engine._core.events import RUN_CREATED, Record, Upcasters
from engine._projections.rows import PROJECTIONS, RunRow
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

from .session import Check, SqliteSession, Write

__all__ = ["Committer"]

T = TypeVar("T")

_ID_BATCH = 500  # ids per "already in the log?" query (SQLite binds at most 32766 values)
_INSERT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)"
_HEAD = "SELECT coalesce(max(position), 0) FROM events"
_ADVANCE = "UPDATE checkpoints SET position = ? WHERE position = ?"
_BEHIND = ("projection checkpoints are not at position {head}: refusing to apply events twice "
           "or skip them; run `kittiwake rebuild`")


class Committer(GroupCommit):
    """Appends requests on the writer connection; owns the live projector and its cache."""

    def __init__(self, session: SqliteSession, lock: anyio.Lock, upcasters: Upcasters, *,
                 committed: Callable[[], None] | None = None) -> None:
        self.session = session
        self._after_commit = committed
        self._worded = statements("")
        super().__init__(TableIO(session), upcasters, lock)

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
        events = [e for i in pending for e in requests[i].events]
        streams = self.projector.uncached(
            (requests[i].project, requests[i].run_id) for i in pending)
        creating = {(requests[i].project, requests[i].run_id) for i in pending
                    if requests[i].events and requests[i].events[0].type == RUN_CREATED}
        if (head < 0 or len(events) > _ID_BATCH or len(streams) > _ID_BATCH // 2
                or not creating.issuperset(streams)):
            return None
        self.projector.prime(dict.fromkeys(streams))  # assumed absent: checked below
        try:
            added, rows, position = await self.fold_group(requests, pending, {}, head, now)
        except Refused:
            self.forget()  # maybe refused on a stale cache: the checked path decides
            return None
        except BaseException:
            self.forget()
            raise
        if not rows:
            return added
        ids = [e.id for e in events]
        check = Check(
            "SELECT (SELECT coalesce(max(position), 0) FROM events), "
            f"(SELECT count(*) FROM events WHERE event_id IN ({','.join('?' * len(ids))})), "
            + (f"(SELECT count(*) FROM runs WHERE (project, run_id) IN "
               f"(VALUES {','.join(['(?, ?)'] * len(streams))}))" if streams else "0"),
            [*ids, *(x for key in streams for x in key)], (head, 0, 0))
        try:
            committed = await self.session.commit_if(check, self._writes(rows, position, head))
        except BaseException:
            self.forget()
            raise
        if not committed:
            self.forget()
            return None
        self.committed(position)
        return added

    def _writes(self, rows: list[Any], position: int, head: int) -> list[Write]:
        """The inserts, the projection writes and the checkpoints' advance of a fold."""
        return [
            Write(_INSERT, rows, many=True),
            *(Write(self._worded[write], changed, many=True)
              for write, changed in change_rows(self.projector.take_changes()) if changed),
            Write(_ADVANCE, (position, head), expect=len(PROJECTIONS),
                  refusal=_BEHIND.format(head=head)),
        ]

    async def _checked(self, requests: Sequence[AppendRequest], pending: list[int],
                       now: float) -> dict[int, list[Record]]:
        """Any group, in two hand-offs to the connection's thread: ``BEGIN`` with the head,
        the ids already in the log and the rows of runs not cached, then — after the fold, on
        the event loop — every insert and projection write, the checkpoints and ``COMMIT``.
        (The fold's own loads of rows it has not cached add theirs.)"""
        session = self.session
        ids = list(dict.fromkeys(e.id for i in pending for e in requests[i].events))
        # The rows of runs the projector has not cached come with the first hand-off too:
        # a group that starts a run would otherwise spend a hand-off to learn it is new.
        streams = self.projector.uncached(
            (requests[i].project, requests[i].run_id) for i in pending)
        reads: list[tuple[str, Sequence[Any]]] = [
            (_HEAD, ()),
            *((f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE (project, run_id) IN "
               f"(VALUES {','.join(['(?, ?)'] * len(batch))})", [x for k in batch for x in k])
              for batch in _batches(streams, _ID_BATCH // 2)),
            *((f"SELECT {EVENT_COLUMNS} FROM events "
               f"WHERE event_id IN ({','.join('?' * len(batch))})", batch)
              for batch in _batches(ids, _ID_BATCH)),
        ]
        runs = len(reads) - 1 - len(range(0, len(ids), _ID_BATCH))
        try:
            ((head,),), *found = await session.begin_with(reads)
            try:
                self.trust(head)
                primed: dict[tuple[str, str], RunRow | None] = dict.fromkeys(streams)
                for row in (r for rows in found[:runs] for r in rows):
                    with unreadable("a run's row"):
                        decoded = run_row(row)
                    primed[(decoded.project, decoded.run_id)] = decoded
                self.projector.prime(primed)
                known = self.stored([row for rows in found[runs:] for row in rows])
                added, rows, position = await self.fold_group(requests, pending, known, head,
                                                              now)
                writes = self._writes(rows, position, head) if rows else []
            except BaseException:
                await session.rollback()
                raise
            await session.commit_with(writes)
        except BaseException:
            self.forget()
            raise
        self.committed(position)
        return added


def _batches(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
