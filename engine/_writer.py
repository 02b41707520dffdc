"""The writer task: every append of a tracker goes through it, in group commits.

Run handles buffer what they log in a :class:`RunBuffer`; the writer wakes when something is
buffered, waits up to ``flush_interval`` for more (or not at all when a flush is asked for or
the buffers pass ``batch_points``), takes every buffer at once and commits the lot in one
transaction. A buffer is only ever touched under the tracker-wide ``threading.Lock``, because
the sync facade logs from the training thread while the writer runs on the event loop.

A batch whose commit failed keeps its events (and their ids) and is sent again first next
time, so a commit whose outcome was unknown is never written twice and nothing accepted is
lost.
"""

from __future__ import annotations

import asyncio
import threading
from array import array
from collections.abc import Callable
from typing import Any

import anyio

from . import _events as ev
from ._events import NewEvent, Record
from ._store import AppendRequest, Store
from .errors import ClosedError, EngineError

__all__ = ["EVENT_POINTS", "RunBuffer", "Rows", "Writer", "metrics_event", "metrics_events"]

class Rows:
    """Consecutive calls that logged the same keys in the same order: their values row after
    row in one flat array (``keys`` order), with a step and a timestamp per row. A flat array
    allocates no object per call, and a metric's column is a strided slice of it."""

    __slots__ = ("keys", "steps", "times", "values")

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = keys
        self.steps: list[Any] = []
        self.times: list[float] = []
        self.values = array("d")


def _column(steps: list[Any]) -> array[Any]:
    try:
        return array("q", steps)
    except TypeError:  # a float step somewhere
        return array("d", steps)


EVENT_POINTS = 50_000  # the most points one MetricsLogged event holds


def metrics_events(groups: list[Rows]) -> list[NewEvent]:
    """MetricsLogged events for consecutive groups of rows, none above ``EVENT_POINTS``
    points: the store commits a large flush as a pipeline of such pieces."""
    events: list[NewEvent] = []
    pending: list[Rows] = []
    points = 0
    for group in groups:
        width = len(group.keys)
        rows = len(group.steps)
        if width * rows > EVENT_POINTS:
            if pending:
                events.append(metrics_event(pending))
                pending, points = [], 0
            step = max(1, EVENT_POINTS // width)
            for start in range(0, rows, step):
                piece = Rows(group.keys)
                piece.steps = group.steps[start : start + step]
                piece.times = group.times[start : start + step]
                piece.values = group.values[start * width : (start + step) * width]
                events.append(metrics_event([piece]))
            continue
        pending.append(group)
        points += width * rows
        if points >= EVENT_POINTS:
            events.append(metrics_event(pending))
            pending, points = [], 0
    if pending:
        events.append(metrics_event(pending))
    return events


def metrics_event(groups: list[Rows]) -> NewEvent:
    """One MetricsLogged event for consecutive groups of rows, its columns as arrays.

    A metric's column is a strided slice of its group's flat values. When one group holds
    every point, all metrics share one steps array and one timestamps array, which the codec
    stores once.
    """
    if len(groups) == 1:
        group = groups[0]
        steps = _column(group.steps)
        times = array("d", group.times)
        width = len(group.keys)
        return NewEvent(ev.METRICS_LOGGED, {"metrics": {
            key: {"steps": steps, "values": group.values[i::width], "timestamps": times}
            for i, key in enumerate(group.keys)}})
    columns: dict[str, tuple[list[Any], array[float], list[float]]] = {}
    for group in groups:
        width = len(group.keys)
        for i, key in enumerate(group.keys):
            column = columns.get(key)
            if column is None:
                column = columns[key] = ([], array("d"), [])
            column[0].extend(group.steps)
            column[1].extend(group.values[i::width])
            column[2].extend(group.times)
    return NewEvent(ev.METRICS_LOGGED, {"metrics": {
        key: {"steps": _column(s), "values": v, "timestamps": array("d", t)}
        for key, (s, v, t) in columns.items()}})


class RunBuffer:
    """What one run handle has logged and the writer has not yet committed."""

    __slots__ = ("committed", "group", "inflight", "inflight_logged", "inflight_points",
                 "items", "logged", "marked", "project", "run_id", "waiters")

    def __init__(self, project: str, run_id: str) -> None:
        self.project = project
        self.run_id = run_id
        self.items: list[Rows | NewEvent] = []
        self.group: Rows | None = None  # the open group the hot path appends rows to
        self.marked = False  # the writer knows this buffer has something since it last took it
        self.logged = 0  # accepted calls so far
        self.committed = 0  # accepted calls whose fate is settled (committed or refused)
        self.inflight: AppendRequest | None = None  # sent, not yet known committed
        self.inflight_logged = 0
        self.inflight_points = 0
        self.waiters: list[_Waiter] = []


class Writer:
    """The single writer of one tracker: group commit, flush waiters, commit hooks."""

    def __init__(self, store: Store, *, clock: Callable[[], float], flush_interval: float,
                 batch_points: int, max_pending: int) -> None:
        self.store = store
        self.clock = clock
        self.flush_interval = flush_interval
        self.batch_points = batch_points
        self.max_pending = max_pending
        self.lock = threading.Lock()
        self.pending = 0  # points buffered or in flight, across every run
        self.space = threading.Condition(self.lock)  # sync loggers wait here when full
        self.on_commit: list[Callable[[list[Record]], None]] = []
        self._dirty: dict[RunBuffer, None] = {}
        self._control: list[tuple[AppendRequest, _Waiter]] = []
        self._signaled = False
        self._urgent_signaled = False
        self._wake = anyio.Event()
        self._urgent = anyio.Event()
        self._closing = False
        # Made inside the event loop, so loggers on other threads know where to wake it.
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    # Signals from loggers (called with ``lock`` held) ----------------------------------------

    def mark(self, buf: RunBuffer) -> None:
        """Note that ``buf`` has something new; wake the writer if it sleeps."""
        buf.marked = True
        self._dirty[buf] = None
        if not self._signaled:
            self._signaled = True
            self._call(self._set_wake)
        if self.pending >= self.batch_points and not self._urgent_signaled:
            self._urgent_signaled = True
            self._call(self._set_urgent)

    def _call(self, fn: Callable[[], None]) -> None:
        if threading.get_ident() == self._loop_thread:
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)

    def _set_wake(self) -> None:
        self._wake.set()

    def _set_urgent(self) -> None:
        self._wake.set()
        self._urgent.set()

    # Requests from the event loop ------------------------------------------------------------

    async def submit(self, request: AppendRequest) -> list[Record]:
        """Append one request as soon as possible; returns its records.

        :raises EngineError: the store's refusal of the request, or its failure.
        """
        if self._closing:
            raise ClosedError("the tracker is closed")
        waiter = _Waiter(0)
        self._control.append((request, waiter))
        self._set_urgent()
        return await waiter.wait()

    async def flush(self, buf: RunBuffer) -> None:
        """Wait until everything ``buf`` accepted so far is committed.

        :raises EngineError: the store refused some of it (it will never be written).
        :raises Exception: the database failed; the data stays buffered and is sent again.
        """
        with self.lock:
            if buf.committed >= buf.logged and buf.inflight is None:
                return
            waiter = _Waiter(buf.logged)
            buf.waiters.append(waiter)
            self._dirty[buf] = None
        self._set_urgent()
        await waiter.wait()

    # The loop --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Commit until cancelled; ``drain`` before cancelling to lose nothing."""
        while True:
            await self._wake.wait()
            if not self._urgent.is_set():
                with anyio.move_on_after(self.flush_interval):
                    await self._urgent.wait()
            await self.cycle()

    async def drain(self) -> None:
        """Commit everything buffered, then refuse new control requests."""
        self._closing = True
        for _ in range(3):  # a batch the database keeps failing is reported, not spun on
            if not (self._dirty or self._control):
                break
            await self.cycle()

    async def cycle(self) -> None:
        """Take every buffer and control request and commit them together."""
        self._wake = anyio.Event()
        self._urgent = anyio.Event()
        with self.lock:
            self._signaled = self._urgent_signaled = False
            taken = [(buf, *self._swap(buf)) for buf in self._dirty]
            self._dirty.clear()
        control, self._control = self._control, []
        sending = [(buf, self._request(buf, items, points, logged))
                   for buf, items, points, logged in taken]
        sending = [(buf, r) for buf, r in sending if r is not None]
        requests = [r for _, r in sending] + [r for r, _ in control]
        if not requests:
            return
        try:
            outcomes = await self.store.append(requests, now=self.clock())
        except Exception as exc:  # the database itself failed: nothing committed
            outcomes = [exc] * len(requests)
        committed: list[Record] = []
        for (buf, _), outcome in zip(sending, outcomes, strict=False):
            self._settle(buf, outcome)
            if isinstance(outcome, list):
                committed.extend(outcome)
        for (_, waiter), outcome in zip(control, outcomes[len(sending):], strict=True):
            waiter.settle(outcome)
            if isinstance(outcome, list):
                committed.extend(outcome)
        if committed:
            committed.sort(key=lambda r: r.position)
            for hook in self.on_commit:
                hook(committed)

    @staticmethod
    def _swap(buf: RunBuffer) -> tuple[list[Rows | NewEvent], int, int]:
        items, buf.items, buf.group = buf.items, [], None
        buf.marked = False
        # The points the items hold (a control event counts as one): what leaves ``pending``
        # when they are committed.
        points = sum(len(i.values) if isinstance(i, Rows) else 1 for i in items)
        return items, points, buf.logged

    @staticmethod
    def _request(buf: RunBuffer, items: list[Rows | NewEvent], points: int,
                 logged: int) -> AppendRequest | None:
        """Add taken items to the buffer's in-flight request (outside the lock: only the
        writer touches ``inflight``)."""
        events: list[NewEvent] = []
        groups: list[Rows] = []
        for item in items:
            if isinstance(item, Rows):
                groups.append(item)
                continue
            if groups:
                events.extend(metrics_events(groups))
                groups = []
            events.append(item)
        if groups:
            events.extend(metrics_events(groups))
        if buf.inflight is not None:
            buf.inflight.events.extend(events)
        elif events:
            buf.inflight = AppendRequest(buf.project, buf.run_id, events)
        buf.inflight_logged = logged
        buf.inflight_points += points
        return buf.inflight

    def _settle(self, buf: RunBuffer, outcome: list[Record] | BaseException) -> None:
        retry = isinstance(outcome, BaseException) and not isinstance(outcome, EngineError)
        with self.lock:
            if retry:
                self._dirty[buf] = None  # keep the events and their ids; send them again
            else:
                buf.committed = buf.inflight_logged
                buf.inflight = None
                self.pending -= buf.inflight_points
                buf.inflight_points = 0
                self.space.notify_all()
            settled = [w for w in buf.waiters if retry or w.target <= buf.committed]
            buf.waiters = [w for w in buf.waiters if w not in settled]
        for waiter in settled:
            waiter.settle(outcome)


class _Waiter:
    """One flush or control request waiting for the commit that settles it."""

    __slots__ = ("done", "result", "target")

    def __init__(self, target: int) -> None:
        self.target = target
        self.done = anyio.Event()
        self.result: list[Record] | BaseException | None = None

    def settle(self, result: list[Record] | BaseException) -> None:
        self.result = result
        self.done.set()

    async def wait(self) -> list[Record]:
        await self.done.wait()
        if isinstance(self.result, BaseException):
            raise self.result
        assert self.result is not None
        return self.result
