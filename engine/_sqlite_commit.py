"""Group commits on SQLite: the one place where events enter the log.

A group of requests is one transaction: positions and versions are assigned, each event is
folded into the projections through the projector, events and projection rows are written,
checkpoints advance, and it all commits together. A request the projections refuse rolls the
transaction back and the group is replayed without it, so nothing is half-applied.

(Committing a large flush as a pipeline of smaller transactions, folding one while the next
commits, was measured and lost: aiosqlite sends each statement to its thread separately, and
every hand-off waits for the GIL while the fold holds it. See docs/performance.md.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite
import anyio

from ._codec import encode
from ._events import NewEvent, Record, Upcasters
from ._projector import Projector
from ._sqlite_io import EVENT_COLUMNS, SqliteIO, advance
from ._store import AppendRequest
from .errors import ConcurrencyError, EngineError

__all__ = ["Committer"]

_ID_BATCH = 500  # ids per "already in the log?" query (SQLite binds at most 32766 values)
_INSERT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"


class _Refused(Exception):
    def __init__(self, index: int, error: EngineError) -> None:
        self.index = index
        self.error = error


class Committer:
    """Appends requests on the writer connection; owns the live projector and its cache."""

    def __init__(self, db: aiosqlite.Connection, lock: anyio.Lock, upcasters: Upcasters) -> None:
        self.db = db
        self.lock = lock
        self.upcasters = upcasters
        self.io = SqliteIO(db)
        self.projector = Projector(self.io)
        # The head as of this connection's last commit: while the log's head is still there,
        # nobody else appended and the projector's cached rows are current.
        self.known_head = -1

    def forget(self) -> None:
        """Drop cached rows (call with the write lock held)."""
        self.projector.clear()
        self.known_head = -1

    async def append(self, requests: Sequence[AppendRequest], *,
                     now: float) -> list[list[Record] | BaseException]:
        """Append the requests (see ``Store.append``)."""
        outcomes: list[list[Record] | BaseException] = [[] for _ in requests]
        pending = list(range(len(requests)))
        with anyio.CancelScope(shield=True):  # a cancelled commit may still commit: finish it
            async with self.lock:
                while True:
                    try:
                        added = await self._transaction(requests, pending, now)
                    except _Refused as refused:
                        outcomes[refused.index] = refused.error
                        pending.remove(refused.index)
                        continue
                    for index, records in added.items():
                        outcomes[index] = records
                    return outcomes

    # One transaction -------------------------------------------------------------------------

    async def _transaction(self, requests: Sequence[AppendRequest], pending: list[int],
                           now: float) -> dict[int, list[Record]]:
        db, projector = self.db, self.projector
        await db.execute("BEGIN IMMEDIATE")
        try:
            head = await self._head()
            known = await self._existing_ids([e.id for i in pending for e in requests[i].events])
            position = head
            added: dict[int, list[Record]] = {}
            rows: list[tuple[Any, ...]] = []
            for index in pending:
                request = requests[index]
                fresh = [e for e in request.events if e.id not in known]
                if not fresh:
                    added[index] = []
                    continue
                try:
                    records, position = await self._fold(request, fresh, position, now, rows,
                                                         check_version=True)
                except EngineError as exc:
                    raise _Refused(index, exc) from None
                added[index] = records
            if rows:
                await db.executemany(_INSERT, rows)
                await projector.save()
                await advance(db, "", head, position)
            await db.execute("COMMIT")
        except BaseException:
            self.forget()
            await db.execute("ROLLBACK")
            raise
        self.known_head = position
        projector.trim(max_runs=10_000)
        return added

    async def _head(self) -> int:
        (head,), = await self.db.execute_fetchall("SELECT coalesce(max(position), 0) FROM events")
        if head != self.known_head:
            self.projector.clear()  # another process appended: cached rows may be stale
        return int(head)

    async def _fold(self, request: AppendRequest, events: list[NewEvent], position: int,
                    now: float, rows: list[tuple[Any, ...]], *,
                    check_version: bool) -> tuple[list[Record], int]:
        """Assign positions and versions to ``events`` and fold them into the projector."""
        run = await self.projector.run(request.project, request.run_id)
        version = run.version if run is not None else 0
        expected = request.expected_version
        if check_version and expected is not None and expected != version:
            raise ConcurrencyError(f"run {request.run_id!r} is at version {version}, "
                                   f"not the expected {expected}")
        records = []
        for event in events:
            position += 1
            version += 1
            record = Record(position, event.id, request.project, request.run_id, version,
                            event.type, now, event.data)
            await self.projector.apply(record)
            records.append(record)
            rows.append((position, event.id, request.project, request.run_id, version,
                         event.type, self.upcasters.version(event.type), now,
                         encode(event.data)))
        return records, position

    async def _existing_ids(self, ids: list[bytes]) -> set[bytes]:
        found: set[bytes] = set()
        for start in range(0, len(ids), _ID_BATCH):
            batch = ids[start : start + _ID_BATCH]
            rows = await self.db.execute_fetchall(
                f"SELECT event_id FROM events WHERE event_id IN ({','.join('?' * len(batch))})",
                batch)
            found.update(r[0] for r in rows)
        return found
