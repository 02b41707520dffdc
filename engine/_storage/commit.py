"""Group commit, the part every backend shares: positions, versions, refusals.

A group of append requests is one transaction. Inside it the backend takes the log's head
(with whatever makes it the only appender for the moment), and :meth:`GroupCommit.fold_group`
assigns positions from the head on and versions per stream, checks ``expected_version``,
skips events already in the log and folds every event into the projections through the
shared ``Projector``. A request the projections refuse raises :class:`Refused`: the backend
rolls the transaction back and :meth:`GroupCommit.append` replays the group without it, so
nothing is half-applied.

An event whose id is already in the log — a retry after a commit whose reply was lost, or a
second copy of it earlier in the same group — is not written again, and its request gets the
record stored for it: a caller learns where its events are whichever attempt wrote them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import anyio

from engine._core.checksum import event_checksum
from engine._core.codec import encode
from engine._core.events import NewEvent, Record, Upcasters
from engine._projections.projector import Projector
from engine._projections.rows import ProjectionIO
from engine._projections.stored import record_of
from engine.errors import ConcurrencyError, EngineError, ValidationError

from .contract import AppendRequest

__all__ = ["EventRow", "GroupCommit", "Refused"]

EventRow = tuple[int, bytes, str, str, int, str, int, float, bytes, int]
"""An ``events`` row to insert, in ``EVENT_COLUMNS`` order."""


class Refused(Exception):
    """The projections refused request ``index`` of a group: roll back and replay without it."""

    def __init__(self, index: int, error: EngineError) -> None:
        super().__init__(index, error)
        self.index = index
        self.error = error


class GroupCommit(ABC):
    """Appends groups of requests one transaction at a time; owns the live projector.

    The projector caches the rows it touches across transactions. ``known_head`` is the
    log's head as of this writer's last commit: while the head is still there inside the
    next transaction, nobody else appended and the cache is current.
    """

    def __init__(self, io: ProjectionIO, upcasters: Upcasters, lock: anyio.Lock) -> None:
        self.lock = lock
        self.upcasters = upcasters
        self.projector = Projector(io)
        self.known_head = -1

    def forget(self) -> None:
        """Drop cached rows (call with the write lock held)."""
        self.projector.clear()
        self.known_head = -1

    def trust(self, head: int) -> None:
        """Keep the cache only if the head (read inside the transaction) is where this writer
        left it: another process's append may have changed any row."""
        if head != self.known_head:
            self.projector.clear()

    def committed(self, head: int) -> None:
        """Note a commit that moved the head to ``head``."""
        self.known_head = head
        if not self.projector.changes:  # a row not saved yet must stay, or it would be lost
            self.projector.trim(max_runs=10_000)

    async def append(self, requests: Sequence[AppendRequest], *,
                     now: float) -> list[list[Record] | BaseException]:
        """Append the requests (see ``Store.append``)."""
        outcomes: list[list[Record] | BaseException] = [[] for _ in requests]
        pending = list(range(len(requests)))
        with anyio.CancelScope(shield=True):  # a cancelled commit may still commit: finish it
            async with self.lock:
                while True:
                    try:
                        added = await self.transaction(requests, pending, now)
                    except Refused as refused:
                        outcomes[refused.index] = refused.error
                        pending.remove(refused.index)
                        continue
                    for index, records in added.items():
                        outcomes[index] = records
                    break
        return outcomes

    @abstractmethod
    async def transaction(self, requests: Sequence[AppendRequest], pending: list[int],
                          now: float) -> dict[int, list[Record]]:
        """Append ``requests[i]`` for each ``i`` in ``pending`` in one transaction; the
        records of each one's events (from :meth:`fold_group`). On any error roll back and
        :meth:`forget` before raising."""

    def stored(self, rows: Sequence[Sequence[Any]]) -> dict[bytes, Record]:
        """The records of ``events`` rows (in ``EVENT_COLUMNS`` order), by event id."""
        records = (record_of(row, True, self.upcasters) for row in rows)
        return {record.id: record for record in records}

    async def fold_group(self, requests: Sequence[AppendRequest], pending: list[int],
                         known: dict[bytes, Record], head: int, now: float,
                         ) -> tuple[dict[int, list[Record]], list[EventRow], int]:
        """Assign positions after ``head`` and fold the events not in ``known`` (the records
        of ids already in the log); returns the records per request — one per distinct event
        id, stored or new, in the request's order — the rows to insert and the new head.

        :raises Refused: a request the projections refuse, or a version mismatch.
        """
        position = head
        written = dict(known)  # grows as the group folds: a second copy is already written
        added: dict[int, list[Record]] = {}
        rows: list[EventRow] = []
        for index in pending:
            request = requests[index]
            fresh: list[NewEvent] = []
            ids: dict[bytes, None] = {}
            for event in request.events:
                if event.id not in written and event.id not in ids:
                    fresh.append(event)
                ids[event.id] = None
            if fresh:
                try:
                    records, position = await self._fold(request, fresh, position, now, rows)
                except EngineError as exc:
                    raise Refused(index, exc) from None
                written.update((r.id, r) for r in records)
            added[index] = [written[i] for i in ids]
        return added, rows, position

    async def _fold(self, request: AppendRequest, events: list[NewEvent], position: int,
                    now: float, rows: list[Any]) -> tuple[list[Record], int]:
        run = await self.projector.run(request.project, request.run_id)
        version = run.version if run is not None else 0
        expected = request.expected_version
        if expected is not None and expected != version:
            raise ConcurrencyError(f"run {request.run_id!r} is at version {version}, "
                                   f"not the expected {expected}")
        records = []
        for event in events:
            position += 1
            version += 1
            data = _encoded(event, request.run_id)
            record = Record(position, event.id, request.project, request.run_id, version,
                            event.type, now, event.data)
            await self.projector.apply(record)
            records.append(record)
            schema = self.upcasters.version(event.type)
            rows.append((position, event.id, request.project, request.run_id, version,
                         event.type, schema, now, data,
                         event_checksum(position, event.id, request.project, request.run_id,
                                        version, event.type, schema, now, data)))
        return records, position


def _encoded(event: NewEvent, run_id: str) -> bytes:
    """The event's payload as stored.

    :raises ValidationError: a value the codec cannot store (the request is refused).
    """
    try:
        return encode(event.data)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValidationError(f"the store cannot write this {event.type} event of run "
                              f"{run_id!r}: {type(exc).__name__}: {exc}") from exc
