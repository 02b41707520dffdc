"""The writer task: every append of a tracker goes through it, in group commits.

Run handles buffer what they log in a ``RunBuffer`` (``buffer``); the writer wakes when
something is buffered, waits up to ``flush_interval`` for more (or not at all when a flush is
asked for or the buffers pass ``batch_points``), takes every buffer at once and commits the lot
in one transaction. A buffer is only ever touched under the tracker-wide ``threading.Lock``,
because the sync facade logs from the training thread while the writer runs on the event loop.

What happens to a batch the store did not write is decided by the error's type alone. A
refusal (``ValidationError``, ``RunExistsError``, ``RunNotFoundError``, ``ConcurrencyError``:
nothing of it was written, and no retry would change that) is dropped and reported by the
run's next flush. Anything else — ``StorageError`` above all: a full disk, a database that is
down — keeps the batch's events (and their ids), and they are sent again with the next cycle,
ahead of anything the run logged since: a commit whose outcome was unknown is never written
twice, and nothing accepted is lost. Meanwhile ``flush()`` raises the error; once the store
is back, it succeeds.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import anyio

from engine._core.events import NewEvent, Record
from engine._storage.blobs.contract import BlobStore
from engine._storage.contract import AppendRequest, Store
from engine.errors import (
    ClosedError,
    ConcurrencyError,
    EngineError,
    RunExistsError,
    RunNotFoundError,
    StorageError,
    ValidationError,
)

from .buffer import Rows, RunBuffer, Waiter, event_points, metrics_events
from .files import store_pending

__all__ = ["REFUSALS", "Writer", "contiguous"]

REFUSALS = (ValidationError, RunExistsError, RunNotFoundError, ConcurrencyError)
"""The errors by which the store refuses a request: nothing of it was written, and sending it
again cannot change that."""


class Writer:
    """The single writer of one tracker: group commit, flush waiters, commit hooks."""

    def __init__(self, store: Store, *, clock: Callable[[], float], flush_interval: float,
                 batch_points: int, max_pending: int) -> None:
        self.store = store
        self.blobs: BlobStore | None = None  # where logged files' bytes go
        self.clock = clock
        self.flush_interval = flush_interval
        self.batch_points = batch_points
        self.max_pending = max_pending
        self.lock = threading.Lock()
        self.pending = 0  # points buffered or in flight, across every run
        self.space = threading.Condition(self.lock)  # sync loggers wait here when full
        self.on_commit: list[Callable[[list[Record]], None]] = []
        self._dirty: dict[RunBuffer, None] = {}
        self._control: list[tuple[AppendRequest, Waiter]] = []
        self._signaled = False
        self.urgent_signaled = False
        self._wake = anyio.Event()
        self._urgent = anyio.Event()
        self._closing = False
        self._closed = False
        self._cycling = anyio.Lock(fast_acquire=True)  # no turn of the loop when free
        self._waiting: dict[RunBuffer, None] = {}  # buffers with flushes waiting on them
        self.creating: dict[RunBuffer, None] = {}  # buffers whose RunCreated is not settled
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
        if self.pending >= self.batch_points and not self.urgent_signaled:
            self.urgent_signaled = True
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

        :raises ValidationError: (or another of ``REFUSALS``) the store refused the request.
        :raises StorageError: the store failed.
        """
        if self._closing:
            raise ClosedError("the tracker is closed")
        waiter = Waiter(0)
        self._control.append((request, waiter))
        self._set_urgent()
        return await waiter.wait()

    async def flush(self, buf: RunBuffer) -> None:
        """Wait until everything ``buf`` accepted so far is committed.

        :raises ValidationError: (or another of ``REFUSALS``) the store refused some of what
            the run logged (now or in an earlier batch nobody was waiting for): it will never
            be written.
        :raises ClosedError: the tracker closed before it was written.
        :raises StorageError: the store failed; the data stays buffered and is sent again,
            and a later flush succeeds once it is written.
        """
        with self.lock:
            refusal, buf.refusal = buf.refusal, None
            if refusal is not None:
                raise refusal
            if buf.dead is not None:
                raise buf.dead
            if buf.committed >= buf.logged and not buf.inflight:
                return
            if self._closed:
                raise ClosedError("the tracker closed before this was written")
            waiter = Waiter(buf.logged)
            buf.waiters.append(waiter)
            self._waiting[buf] = None
            self._dirty[buf] = None
        self._set_urgent()
        await waiter.wait()

    async def settle_creations(self) -> None:
        """Wait until the creation of every run whose RunCreated is still buffered is
        settled (committed or refused; a refusal is for the run's own flush to report)."""
        while self.creating:
            buf = next(iter(self.creating))
            try:
                await self.flush(buf)
            except EngineError:
                self.creating.pop(buf, None)  # its flush reports it; do not spin on it

    @property
    def committing(self) -> bool:
        """True while a cycle is under way: a commit may be landing right now."""
        return self._cycling.locked()

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

    def close(self, error: BaseException) -> None:
        """After ``drain`` (or when the tracker stops on a failure): settle whatever still
        waits with ``error``; flushes raise it, and new control requests are refused."""
        self._closing = True
        self._closed = True
        with self.lock:
            waiters = [w for buf in self._waiting for w in buf.waiters]
            for buf in self._waiting:
                buf.waiters = []
            self._waiting.clear()
        control, self._control = self._control, []
        for waiter in [*waiters, *(w for _, w in control)]:
            waiter.settle(error)

    async def cycle(self) -> None:
        """Take every buffer and control request and commit them together.

        Cycles never overlap (``drain`` may be called while the writer task is in one):
        a request is never changed while it is being committed.
        """
        async with self._cycling:
            await self._cycle()

    async def _cycle(self) -> None:
        self._wake = anyio.Event()
        self._urgent = anyio.Event()
        with self.lock:
            self._signaled = self.urgent_signaled = False
            taken = [(buf, *self._swap(buf)) for buf in self._dirty]
            self._dirty.clear()
        control, self._control = self._control, []
        sending = [(buf, request) for buf, items, points, logged in taken
                   for request in self._requests(buf, items, points, logged)]
        for buf, *_ in taken:
            if buf.dead is not None:
                self._settle(buf, [])  # what it logged since is dropped, not left pending
        requests = [r for _, r in sending] + [r for r, _ in control]
        if not requests:
            return
        outcomes = await self._append_with_files(requests)
        committed: list[Record] = []
        results: dict[RunBuffer, list[tuple[AppendRequest, list[Record] | BaseException]]] = {}
        for (buf, request), outcome in zip(sending, outcomes, strict=False):
            results.setdefault(buf, []).append((request, outcome))
            if isinstance(outcome, list):
                committed.extend(outcome)
        for buf, settled in results.items():
            self._settle(buf, settled)
        for (_, waiter), outcome in zip(control, outcomes[len(sending):], strict=True):
            waiter.settle(outcome)
            if isinstance(outcome, list):
                committed.extend(outcome)
        for batch in contiguous(committed):
            for hook in self.on_commit:
                hook(batch)

    async def _append_with_files(self, requests: list[AppendRequest],
                                 ) -> list[list[Record] | BaseException]:
        """Store the bytes of the files the requests log, then append the requests whose
        bytes are stored; the others get why not (a refusal, or a failure kept for later)."""
        failed = await store_pending(self.blobs, requests)
        if not failed:
            return await self._append(requests)
        keep = [r for i, r in enumerate(requests) if i not in failed]
        appended = iter(await self._append(keep) if keep else [])
        return [failed[i] if i in failed else next(appended) for i in range(len(requests))]

    async def _append(self, requests: list[AppendRequest]) -> list[list[Record] | BaseException]:
        try:
            return await self.store.append(requests, now=self.clock())
        except StorageError as exc:
            return [exc] * len(requests)  # the store failed, not a request: keep them all
        except Exception as exc:
            if len(requests) == 1:
                return [exc]
        # The group failed as a whole. Try each request alone: a request the store cannot
        # write must not hold back every other run's data, cycle after cycle.
        outcomes: list[list[Record] | BaseException] = []
        down: StorageError | None = None
        for request in requests:
            if down is not None:
                outcomes.append(down)  # no need to ask again: keep the rest for next time
                continue
            try:
                outcomes.extend(await self.store.append([request], now=self.clock()))
            except StorageError as exc:
                down = exc
                outcomes.append(exc)
            except Exception as exc:
                outcomes.append(exc)
        return outcomes

    @staticmethod
    def _swap(buf: RunBuffer) -> tuple[list[Rows | NewEvent], int, int]:
        items, buf.items, buf.group, buf.lines = buf.items, [], None, None
        buf.marked = False
        # The points the items hold (a control event as ``event_points`` counts it): what
        # leaves ``pending`` when they are committed.
        points = sum(i.points() if isinstance(i, Rows) else event_points(i) for i in items)
        return items, points, buf.logged

    @staticmethod
    def _requests(buf: RunBuffer, items: list[Rows | NewEvent], points: int,
                  logged: int) -> list[AppendRequest]:
        """Turn taken items into requests, one per event, after any still in flight
        (outside the lock: only the writer touches ``inflight``). One event per request, so a
        refused batch of points does not take the run's tags or final status with it."""
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
        buf.inflight_logged = logged
        buf.inflight_points += points
        if buf.dead is not None:
            return []  # its id may be another run's: nothing more of it reaches the log
        if buf.creating:
            # The creation and all that follows it until it commits: one request, all or
            # nothing (a retry skips whatever an earlier attempt committed).
            if buf.inflight:
                buf.inflight[0].events.extend(events)
            else:
                buf.inflight.append(AppendRequest(buf.project, buf.run_id, events))
        else:
            buf.inflight.extend(AppendRequest(buf.project, buf.run_id, [e]) for e in events)
        return list(buf.inflight)

    def _settle(self, buf: RunBuffer,
                results: list[tuple[AppendRequest, list[Record] | BaseException]]) -> None:
        failed = [r for r, o in results if isinstance(o, BaseException)
                  and not isinstance(o, REFUSALS)]
        errors = [o for _, o in results if isinstance(o, BaseException)]
        refusals = [o for o in errors if isinstance(o, REFUSALS)]
        if buf.creating and results and not failed:
            buf.creating = False
            self.creating.pop(buf, None)
            if refusals:
                buf.dead = refusals[0]
                if buf.halt is not None:
                    buf.halt(refusals[0])
        with self.lock:
            if failed:
                # Committed and refused requests are done with; the rest keeps its event ids
                # and goes again (a retry of an unknown outcome is not written twice).
                buf.inflight = failed
                self._dirty[buf] = None
                error: BaseException | None = next(e for e in errors if e not in refusals)
            else:
                buf.inflight = []
                buf.committed = buf.inflight_logged
                self.pending -= buf.inflight_points
                buf.inflight_points = 0
                self.space.notify_all()
                error = refusals[0] if refusals else buf.dead
            settled = [w for w in buf.waiters if failed or w.target <= buf.committed]
            buf.waiters = [w for w in buf.waiters if w not in settled]
            if not buf.waiters:
                self._waiting.pop(buf, None)
            if refusals and (failed or not settled):
                buf.refusal = buf.refusal or refusals[0]  # reported by the next flush
        for waiter in settled:
            waiter.settle(error if error is not None else [])


def contiguous(records: list[Record]) -> list[list[Record]]:
    """Records in position order, once each, cut where positions jump: commit hooks take a
    list to be one unbroken range of the log, and a cycle's records may be several (a retry
    answered with records an earlier commit stored, requests committed one by one)."""
    batches: list[list[Record]] = []
    for record in sorted({r.position: r for r in records}.values(), key=lambda r: r.position):
        if batches and record.position == batches[-1][-1].position + 1:
            batches[-1].append(record)
        else:
            batches.append([record])
    return batches
