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

Where a subscription starts, and when it has caught up (``docs/decisions.md``): it *starts*
by reading the log's head H — right after ``tracker.subscribe()``, in the tracker's
background, or at its first use, whichever comes first. Its *history* is the log up to H.
``"live"`` delivers what comes after the head at the ``subscribe()`` call: after H, and also
every commit this tracker began after the call, even one that landed before H was read. It is
*caught up* once the consumer has been handed every event of its history that it matches.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from engine._core import events as ev
from engine._core.events import Record
from engine._core.model import Event
from engine._storage.contract import EventFilter, Store
from engine.errors import ClosedError

__all__ = ["Hub", "Pager", "Subscription", "admits", "next_for", "start_in_background",
           "trimmed", "wait_caught_up_for", "weight"]

_TARGET_POINTS = 50_000  # points per page read from the log
_MAX_PAGE = 4096


def weight(record: Record) -> int:
    """Points an event carries (1 for events without metrics): what buffers are bounded by."""
    if record.type != ev.METRICS_LOGGED:
        return 1
    return max(1, sum(len(c["values"]) for c in record.data["metrics"].values()))


class Pager:
    """Pages of the log sized by the points they hold, not by how many events they are —
    and never more than ``most`` events."""

    def __init__(self, most: int = _MAX_PAGE) -> None:
        self.most = most
        self.limit = min(64, most)

    def adapt(self, records: list[Record]) -> None:
        """Aim the next page at ``_TARGET_POINTS`` given what this one held."""
        if records:
            points = sum(weight(r) for r in records)
            self.limit = max(1, min(self.most, len(records) * _TARGET_POINTS // points))


@dataclass(slots=True, frozen=True)
class Batch:
    """One commit: records at positions ``first..last``, all of them, in order. ``own`` when
    this tracker's writer committed it (rather than another process, read back by the
    tracker)."""

    first: int
    last: int
    records: list[Record]
    points: int
    own: bool


class Hub:
    """Fans the writer's commits and the head doorbell out to subscribers."""

    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()
        self.head = 0
        self.closed = False
        self.failure: BaseException | None = None
        self.on_add: Callable[[], None] | None = None  # someone now wants the head followed

    def __len__(self) -> int:
        return len(self._subscribers)

    def publish(self, records: list[Record], *, own: bool = True) -> None:
        """Offer one commit (contiguous, in position order) to every subscriber."""
        if not records:
            return
        batch = Batch(records[0].position, records[-1].position, records,
                      sum(weight(r) for r in records), own)
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
        """Register a subscriber: from now on it is offered every commit.

        :raises ClosedError: when the tracker is closed, or stopped on a failure.
        """
        if self.failure is not None:
            raise self.failure
        if self.closed:
            raise ClosedError("the tracker is closed")
        self._subscribers.add(subscriber)
        if self.on_add is not None:
            self.on_add()

    def remove(self, subscriber: Subscription) -> None:
        self._subscribers.discard(subscriber)

    def close(self) -> None:
        """End every subscription (their loops stop cleanly)."""
        self.closed = True
        for subscriber in list(self._subscribers):
            subscriber.end()
        self._subscribers.clear()

    def fail(self, error: BaseException) -> None:
        """End every subscription with ``error``: iterating them raises it."""
        self.failure = error
        for subscriber in list(self._subscribers):
            subscriber.end(error)
        self._subscribers.clear()


class Subscription:
    """An async iterator of ``Event``s: history from a position, then live (see
    [the log and subscriptions][the-log-and-subscriptions]). Use it with ``async for``, and
    end it with ``aclose()`` or an ``async with`` block.

    ``caught_up`` is about the consumer, not the reads: it turns true once ``__anext__`` has
    returned every event that matches the subscription at a position at or below H, the log's
    head when the subscription started (for ``"live"``, at once: it has no history). It flips
    as the last such event is handed over, so a consumer that checks ``caught_up`` after each
    event knows whether that one was the last of the history.

    :ivar position: the last position the subscription has covered (delivered, buffered for
        the consumer, or skipped as not matching).
    """

    def __init__(self, store: Store, hub: Hub, where: EventFilter,
                 metrics: frozenset[str] | None, start: int | str, buffer_points: int, *,
                 committing: bool = False, pager: Pager | None = None) -> None:
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
        self._settled = anyio.Event()  # caught up, or ended
        self._caught_up = False
        self._target: int | None = None  # H, once started
        self._ended = False
        self._failure: BaseException | None = None
        self._starting = anyio.Lock()
        self._reading = anyio.Lock()  # one task moves the subscription on at a time
        self._consumer: object | None = None  # who iterates it: a task, or a thread (sync)
        self._pager = pager or Pager()
        self._live = start == "live"
        # A commit of this tracker's writer already under way at the call may have landed
        # before it: only commits begun after the call are known to be live.
        self._skip_own = committing and self._live
        self._own_after: int | None = None  # the first position such a commit took
        # What the tracker knew of the head at the call is history, whatever H will be.
        self.position = 0 if start == "start" else hub.head if self._live else int(start)
        self._hub.add(self)

    def __repr__(self) -> str:
        return f"<Subscription at {self.position}{' caught up' if self.caught_up else ''}>"

    @property
    def caught_up(self) -> bool:
        """True once the consumer has received every matching event of the history (the log
        up to its head when the subscription started)."""
        return self._caught_up

    async def wait_caught_up(self) -> int:
        """Wait until the consumer has received the history (see ``caught_up``); returns the
        position covered then. Returns at once when the subscription has ended.

        Called while another task iterates the subscription, it waits for that consumer.
        Called where nothing else iterates it (before the first ``async for`` in the same
        task, say), it reads on the consumer's behalf: it returns once the history holds
        nothing more for the consumer — always so for ``"live"`` — and raises otherwise.

        :raises RuntimeError: when the history holds events for the consumer and nothing
            else iterates the subscription (waiting would never end).
        :raises ClosedError: when the tracker stopped on a failure.
        """
        return await self._wait_caught_up(anyio.get_current_task().id)

    # Called by the hub, on the event loop ------------------------------------------------

    def offer(self, batch: Batch) -> None:
        if batch.own and self._target is None and self._live:
            if self._skip_own:
                self._skip_own = False
            elif self._own_after is None:
                self._own_after = batch.first
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

    def end(self, error: BaseException | None = None) -> None:
        """Stop: the consumer gets what is already buffered, then the iteration ends (or
        raises ``error``)."""
        self._ended = True
        if self._failure is None:
            self._failure = error
        self._queue.clear()
        self._queued_points = 0
        self._wake.set()
        self._settled.set()

    # The iterator --------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self._next(anyio.get_current_task().id)

    async def aclose(self) -> None:
        """Stop the subscription; iteration ends."""
        self.end()
        self._hub.remove(self)

    async def __aenter__(self) -> Subscription:
        """Start the subscription (fix its history) and return it."""
        await self._start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _next(self, consumer: object) -> Event:
        self._consumer = consumer
        try:
            await self._start()
            while not self._ready:
                if self._ended:
                    self._hub.remove(self)
                    if self._failure is not None:
                        raise self._failure
                    raise StopAsyncIteration
                async with self._reading:
                    moved = await self._step()
                if not moved:
                    await self._idle()
            await self._look_ahead()
        except ClosedError:
            if self._failure is not None:
                raise
            self.end()  # the tracker closed under us: the subscription simply ends
            self._hub.remove(self)
            raise StopAsyncIteration from None
        event = self._ready.popleft()
        self._check_caught_up()
        return event

    async def _wait_caught_up(self, caller: object) -> int:
        await anyio.lowlevel.checkpoint()  # a consumer task just started gets to begin
        await self._start()
        while not self._settled.is_set():
            if self._consumer is not None and self._consumer != caller:
                await self._settled.wait()
                continue
            assert self._target is not None
            if self._ready and self._ready[0].position <= self._target:
                raise RuntimeError(
                    f"{self!r} has history for its consumer, and nothing iterates it: iterate "
                    "it (in another task than this wait) to catch up")
            async with self._reading:
                await self._step()
        if self._failure is not None:
            raise self._failure
        return self.position

    async def _start(self) -> None:
        """Read the head H, once: it bounds the history (and places ``"live"``)."""
        if self._target is not None:
            return
        async with self._starting:
            if self._target is not None:
                return
            head = await self._store.head()
            self._hub.head = max(self._hub.head, head)
            if self._live:
                start = head if self._own_after is None else min(head, self._own_after - 1)
                self.position = max(self.position, start)
                self._target = self.position
            else:
                self._target = head
            self._check_caught_up()

    async def _step(self) -> bool:
        """Move on by what is at hand: queued batches that continue the subscription, else a
        page of the log. False when there is nothing to do until something happens."""
        position = self.position
        self._take_contiguous()
        if self.position != position or self._ended:
            self._check_caught_up()
            return True
        assert self._target is not None
        if (self._behind or self._queue or self._hub.head > self.position
                or self.position < self._target):
            self._behind = False  # from here, new batches are kept again
            await self._read_log()
            return True
        self._check_caught_up()
        return False

    async def _idle(self) -> None:
        self._wake = anyio.Event()
        if not (self._queue or self._behind or self._ended or self._hub.head > self.position):
            await self._wake.wait()

    async def _look_ahead(self) -> None:
        """Before handing over the last buffered event of the history, read on until the
        next one or the end of the history: ``caught_up`` must flip with the last one."""
        target = self._target
        assert target is not None
        while (not self._caught_up and not self._ended and len(self._ready) == 1
               and self.position < target):
            async with self._reading:
                await self._step()

    def _check_caught_up(self) -> None:
        target = self._target
        if (self._caught_up or target is None or self.position < target
                or (self._ready and self._ready[0].position <= target)):
            return
        self._caught_up = True
        self._settled.set()

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
        self._check_caught_up()

    def _deliver(self, records: Iterable[Record]) -> None:
        where, metrics = self._where, self._metrics
        for record in records:
            if admits(where, record.project, record.run_id, record.type):
                event = trimmed(record.to_event(), metrics)
                if event is not None:
                    self._ready.append(event)


def admits(where: EventFilter, project: str, run_id: str, type_: str) -> bool:
    """Whether an event of ``project``, ``run_id`` and ``type_`` passes ``where``."""
    return ((where.project is None or project == where.project)
            and (where.run_ids is None or run_id in where.run_ids)
            and (where.types is None or type_ in where.types))


def trimmed(event: Event, metrics: frozenset[str] | None) -> Event | None:
    """``event`` as a subscription with ``metrics`` sees it: a metric event keeps only those
    metrics, and one that carries none of them is not seen (None). Without ``metrics``,
    ``event`` itself; the filter for metrics also limits the types to metric events."""
    if metrics is None:
        return event
    kept = {m: c for m, c in event.data["metrics"].items() if m in metrics}
    if not kept:
        return None
    return Event(event.position, event.id, event.project, event.run_id, event.version,
                 event.type, event.timestamp, {"metrics": kept})


# Friends of Subscription: the tracker, and the blocking facade whose consumer is a thread.

async def start_in_background(subscription: Subscription) -> None:
    """Fix ``subscription``'s history before its first use (in the tracker's task group); a
    failure is left for the consumer's own start to see."""
    with contextlib.suppress(Exception):
        await subscription._start()


async def next_for(subscription: Subscription, consumer: object) -> Event:
    """``__anext__`` for a consumer that is not a task (a thread: each of its calls runs in
    a new task). Raises as ``__anext__`` does."""
    return await subscription._next(consumer)


async def wait_caught_up_for(subscription: Subscription, consumer: object) -> int:
    """``wait_caught_up`` for a consumer that is not a task (see :func:`next_for`)."""
    return await subscription._wait_caught_up(consumer)
