"""Live subscriptions: history, then live, with no gap and no duplicate.

Every commit of this tracker's writer is offered to each subscriber as a *batch*: the
records of one contiguous range of positions. A subscriber takes a batch only when it starts
right after the subscriber's position; anything else — a gap left by another process's
commit, an overflow, a ring of the doorbell that says the head moved — sends it back to the
log to read from its own position. The live buffer is only a shortcut: correctness rests on
positions alone, so nothing is skipped and nothing is seen twice, whatever interleaves.

Each subscriber's buffer is bounded (in points); when it is full the subscriber is marked
fallen behind and new batches are not kept for it — it reads the log at its own pace instead,
and memory does not grow however slow it is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import anyio

from . import _events as ev
from ._events import Record
from ._model import Event
from ._store import EventFilter, Store
from .errors import ClosedError

__all__ = ["Hub", "Pager", "Subscription", "weight"]

_TARGET_POINTS = 50_000  # points per page read from the log
_MAX_PAGE = 4096


def weight(record: Record) -> int:
    """Points an event carries (1 for events without metrics): what buffers are bounded by."""
    if record.type != ev.METRICS_LOGGED:
        return 1
    return max(1, sum(len(c["values"]) for c in record.data["metrics"].values()))


class Pager:
    """Pages of the log sized by the points they hold, not by how many events they are."""

    def __init__(self) -> None:
        self.limit = 64

    def adapt(self, records: list[Record]) -> None:
        """Aim the next page at ``_TARGET_POINTS`` given what this one held."""
        if records:
            points = sum(weight(r) for r in records)
            self.limit = max(1, min(_MAX_PAGE, len(records) * _TARGET_POINTS // points))


@dataclass(slots=True, frozen=True)
class Batch:
    """One commit: records at positions ``first..last``, all of them, in order."""

    first: int
    last: int
    records: list[Record]
    points: int


class Hub:
    """Fans the writer's commits and the head doorbell out to subscribers."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self.head = 0
        self.closed = False

    def __len__(self) -> int:
        return len(self._subscribers)

    def publish(self, records: list[Record]) -> None:
        """Offer one commit (contiguous, in position order) to every subscriber."""
        if not records:
            return
        batch = Batch(records[0].position, records[-1].position, records,
                      sum(weight(r) for r in records))
        self.head = max(self.head, batch.last)
        for subscriber in self._subscribers:
            subscriber.offer(batch)

    def ring(self, head: int) -> None:
        """The log's head moved (perhaps by another process): subscribers behind it look."""
        if head > self.head:
            self.head = head
        for subscriber in self._subscribers:
            subscriber.wake()

    def add(self, subscriber: Subscription) -> None:
        if self.closed:
            raise ClosedError("the tracker is closed")
        self._subscribers.add(subscriber)

    def remove(self, subscriber: Subscription) -> None:
        self._subscribers.discard(subscriber)

    def close(self) -> None:
        """End every subscription (their loops stop cleanly)."""
        self.closed = True
        for subscriber in list(self._subscribers):
            subscriber.end()
        self._subscribers.clear()


class Subscription:
    """An async iterator of ``Event``s: history from a position, then live.

    ``position`` is the last position the subscription has covered (delivered or skipped as
    not matching). ``caught_up`` turns true, and ``wait_caught_up()`` returns, once it has
    covered the log as it stood when the subscription started.
    """

    def __init__(self, store: Store, hub: Hub, where: EventFilter,
                 metrics: frozenset[str] | None, start: int | str, buffer_points: int) -> None:
        self._store = store
        self._hub = hub
        self._where = where
        self._metrics = metrics
        self._limit = buffer_points
        self._queue: deque[Batch] = deque()
        self._queued_points = 0
        self._behind = False
        self._ready: deque[Event] = deque()
        self._wake = anyio.Event()
        self._caught_up = anyio.Event()
        self._target = 0  # the head when the subscription started
        self._ended = False
        self._started = False
        self._pager = Pager()
        # Listen from the moment of subscribing: what commits before the first read is kept,
        # and "live" means after the head as this tracker knows it now.
        self.position = 0 if start == "start" else hub.head if start == "live" else int(start)
        self._live = start == "live"  # no history to catch up on, by definition
        self._hub.add(self)

    def __repr__(self) -> str:
        return f"<Subscription at {self.position}{' live' if self.caught_up else ''}>"

    @property
    def caught_up(self) -> bool:
        """True once the history that existed when the subscription started was delivered."""
        return self._caught_up.is_set()

    async def wait_caught_up(self) -> int:
        """Wait until the history is delivered (or the subscription ended); the position."""
        await self._begin()
        await self._caught_up.wait()
        return self.position

    # Called by the hub, on the event loop ------------------------------------------------

    def offer(self, batch: Batch) -> None:
        if self._behind:
            return
        if self._queued_points + batch.points > self._limit and self._queue:
            self._behind = True  # fall back to the log rather than hold more in memory
            self._queue.clear()
            self._queued_points = 0
        else:
            self._queue.append(batch)
            self._queued_points += batch.points
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def end(self) -> None:
        self._ended = True
        self._queue.clear()
        self._wake.set()
        self._caught_up.set()

    # The iterator --------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            await self._begin()
            while not self._ready:
                if self._ended:
                    self._hub.remove(self)
                    raise StopAsyncIteration
                await self._fill()
        except ClosedError:  # the tracker closed under us: the subscription simply ends
            self.end()
            self._hub.remove(self)
            raise StopAsyncIteration from None
        return self._ready.popleft()

    async def aclose(self) -> None:
        """Stop the subscription; iteration ends."""
        self.end()
        self._hub.remove(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _begin(self) -> None:
        if self._started:
            return
        self._started = True
        head = await self._store.head()
        self._hub.head = max(self._hub.head, head)
        self._target = head
        if self._live or self.position >= head:
            self._caught_up.set()

    async def _fill(self) -> None:
        """Make at least one event ready, or wait for something to happen."""
        self._take_contiguous()
        if self._ready or self._ended:
            return
        if self._behind or self._queue or self._hub.head > self.position:
            self._behind = False  # from here, new batches are kept again
            await self._read_log()
            return
        if self.position >= self._target:
            self._caught_up.set()
        self._wake = anyio.Event()
        if not (self._queue or self._behind or self._ended or self._hub.head > self.position):
            await self._wake.wait()

    def _take_contiguous(self) -> None:
        queue = self._queue
        while queue:
            batch = queue[0]
            if batch.first > self.position + 1:
                return  # a gap: only the log can fill it
            queue.popleft()
            self._queued_points -= batch.points
            if batch.last <= self.position:
                continue  # already covered by a read of the log
            self._deliver(r for r in batch.records if r.position > self.position)
            self.position = batch.last

    async def _read_log(self) -> None:
        records, covered = await self._store.read(self.position, limit=self._pager.limit,
                                                  where=self._where)
        self._pager.adapt(records)
        self._deliver(records)
        if covered > self.position:
            self.position = covered
        if self.position >= self._target:
            self._caught_up.set()

    def _deliver(self, records: Iterable[Record]) -> None:
        where, metrics = self._where, self._metrics
        for record in records:
            if where.project is not None and record.project != where.project:
                continue
            if where.run_ids is not None and record.run_id not in where.run_ids:
                continue
            if where.types is not None and record.type not in where.types:
                continue
            event = record.to_event()
            if metrics is not None:
                kept = {m: c for m, c in event.data["metrics"].items() if m in metrics}
                if not kept:
                    continue
                event = Event(event.position, event.id, event.project, event.run_id,
                              event.version, event.type, event.timestamp, {"metrics": kept})
            self._ready.append(event)

