"""Reads of the past: the log folded up to a position, for every read that takes ``as_of``.

There are no projection tables of the past to query, so a read ``as_of`` a position reads
the events up to it — the run's own stream and its ancestors' for one run, the whole
project's for the runs table — and folds them with the pure fold (``engine._core.fold``), the
reference the live projections are held to. The cost grows with the log read, not with the
answer: time travel is for looking back, not for dashboards.

``as_of`` is a position (the last event included) or a ``datetime``: the last event recorded
at or before that instant (a naive datetime is UTC, as the query language takes it).
Heartbeat promises are judged at that point of the past (``moment_of``), by the signs of life
the log holds: the runs' events (heartbeats are not events).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

from engine._core.events import Record
from engine._core.fold import Fold
from engine._core.validate import check_position
from engine._storage.contract import EventFilter, Store
from engine.errors import ValidationError

from .subscriptions import Pager

__all__ = ["AsOf", "chain_fold", "moment_of", "position_of", "project_fold"]

AsOf = int | datetime
"""A point in the log's history: a position, or an instant."""


async def position_of(store: Store, project: str, as_of: AsOf) -> int:
    """The position ``as_of`` names: itself, or the last event of the project recorded at
    or before the instant (0 when there is none).

    :raises ValidationError: for anything but an int position or a datetime.
    """
    if isinstance(as_of, datetime):
        when = (as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)).timestamp()
        last = 0
        async for records in _pages(store, project, None):
            for record in records:
                if record.timestamp <= when:
                    last = record.position
        return last
    if isinstance(as_of, bool) or not isinstance(as_of, int):
        raise ValidationError(f"as_of must be a log position (an int) or a datetime, not "
                              f"{as_of!r}", key="as_of")
    return check_position(as_of, "as_of")


async def moment_of(store: Store, as_of: AsOf, upto: int, now: float) -> float:
    """The instant a read ``as_of`` judges heartbeat promises at: the instant itself for a
    ``datetime``, the time the event at position ``upto`` was recorded for a position —
    and never later than ``now`` (at or past the head, a read of the past is one of now)."""
    if isinstance(as_of, datetime):
        return min(now, (as_of if as_of.tzinfo else as_of.replace(tzinfo=UTC)).timestamp())
    if upto <= 0 or upto >= await store.head():
        return now
    # At a position no event holds (PostgreSQL may skip one), the next event's time.
    records, _ = await store.read(upto - 1, limit=1)
    return min(now, records[0].timestamp) if records else now


async def project_fold(store: Store, project: str, upto: int) -> Fold:
    """Every event of the project up to position ``upto``, folded."""
    fold = Fold()
    async for records in _pages(store, project, upto):
        fold.apply_all(records)
    return fold


async def chain_fold(store: Store, project: str, run_id: str, upto: int) -> Fold | None:
    """The run's stream and its ancestors' up to ``upto``, folded (None: no such run now)."""
    chain = await store.ancestry(project, run_id)
    if chain is None:
        return None
    return Fold().apply_all(await store.stream_records(project, chain, upto))


async def _pages(store: Store, project: str,
                 upto: int | None) -> AsyncIterator[list[Record]]:
    """The project's records in pages, in log order, up to ``upto`` (None: the head)."""
    where = EventFilter(project=project)
    after = 0
    pager = Pager()
    while True:
        limit = pager.limit
        records, covered = await store.read(after, limit=limit, where=where, arrays=True)
        pager.adapt(records)
        if upto is not None:
            kept = [r for r in records if r.position <= upto]
            if kept:
                yield kept
            if len(kept) < len(records):
                return
        elif records:
            yield records
        if len(records) < limit or (upto is not None and covered >= upto):
            return
        after = covered
