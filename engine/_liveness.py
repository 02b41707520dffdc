"""Keeping live runs alive and informed.

A tracker's live runs beat every ``heartbeat_interval``; its reaper marks running runs that
went silent for ``crash_timeout`` as crashed (with ``expected_version``, so two reapers, or a
run that just moved on, never both write). And it follows the log's head as other processes
move it — ``Store.wait_for_head`` is a cheap poll on SQLite and a LISTEN doorbell on
PostgreSQL — to ring subscribers and deliver abort requests made elsewhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from . import _events as ev
from ._events import NewEvent, Record
from ._model import Status
from ._run import Run
from ._store import AppendRequest, Store
from ._subscribe import Hub, Pager
from ._writer import Writer
from .errors import ClosedError, ConcurrencyError, RunNotFoundError

__all__ = ["Liveness"]

Key = tuple[str, str]


class Liveness:
    """Heartbeats, the reaper, abort delivery and the head of the log, for one tracker."""

    def __init__(self, store: Store, writer: Writer, hub: Hub, *, clock: Callable[[], float],
                 heartbeat_interval: float, crash_timeout: float, reap_interval: float,
                 poll_interval: float) -> None:
        self.store = store
        self.writer = writer
        self.hub = hub
        self.clock = clock
        self.heartbeat_interval = heartbeat_interval
        self.crash_timeout = crash_timeout
        self.reap_interval = reap_interval
        self.poll_interval = poll_interval
        self.live: dict[Key, tuple[Run, anyio.CancelScope]] = {}
        self.seen = 0  # the highest position this tracker knows of

    def start(self, tasks: TaskGroup) -> None:
        """Run the background loops in the tracker's task group."""
        tasks.start_soon(self._heartbeats)
        tasks.start_soon(self._reaper)
        tasks.start_soon(self._follow)

    async def watch(self, run: Run, scope: anyio.CancelScope) -> None:
        """Keep ``run`` alive, and cancel ``scope`` if it is aborted — including by a request
        that landed before this call, which no commit hook will deliver again."""
        key = (run.project, run.run_id)
        self.live[key] = (run, scope)
        control = (await self.store.controls([key])).get(key)
        if (control is not None and control.abort_position is not None
                and control.abort_position > run.started_position):
            _abort(self.live[key], control.abort_reason)

    def unwatch(self, run: Run) -> None:
        """Stop watching ``run`` (its block ended)."""
        self.live.pop((run.project, run.run_id), None)

    def on_commit(self, records: list[Record]) -> None:
        """This tracker's own commits: note the head, deliver abort requests at once."""
        if records[0].position == self.seen + 1:
            # Only when nothing from elsewhere came in between: ``_follow`` must still look
            # at what did (an abort request from another process, say).
            self.seen = records[-1].position
        for record in records:
            if record.type == ev.ABORT_REQUESTED:
                live = self.live.get((record.project, record.run_id))
                if live is not None and record.position > live[0].started_position:
                    _abort(live, record.data.get("reason"))

    async def _heartbeats(self) -> None:
        while True:
            await anyio.sleep(self.heartbeat_interval)
            if self.live:
                await self.store.beat(list(self.live), self.clock())

    async def _reaper(self) -> None:
        while True:
            silent_since = self.clock() - self.crash_timeout
            for stale in await self.store.stale_runs(silent_since):
                if (stale.project, stale.run_id) in self.live:
                    continue
                event = NewEvent(ev.STATUS_CHANGED, {
                    "status": Status.CRASHED.value,
                    "reason": f"no heartbeat for {self.crash_timeout:g} s"})
                # It may have moved on, or another reaper got there first: both are fine.
                with contextlib.suppress(ConcurrencyError, RunNotFoundError, ClosedError):
                    await self.writer.submit(AppendRequest(
                        stale.project, stale.run_id, [event], expected_version=stale.version))
            await anyio.sleep(self.reap_interval)

    async def _follow(self) -> None:
        """Notice other processes' appends, only while someone (a subscriber, or a live run
        that may be aborted) cares."""
        while True:
            if not self.live and not len(self.hub):
                await anyio.sleep(self.poll_interval)
                continue
            head = await self.store.wait_for_head(self.seen, self.poll_interval)
            if head <= self.seen:
                continue
            if len(self.hub):
                await self._publish(head)
            self.seen = head
            self.hub.ring(head)
            controls = await self.store.controls(list(self.live))
            for key, control in controls.items():
                live = self.live.get(key)
                if (live is not None and control.abort_position is not None
                        and control.abort_position > live[0].started_position
                        and not live[0].abort_requested):
                    _abort(live, control.abort_reason)


    async def _publish(self, head: int) -> None:
        """Read what other processes appended once, and offer it to every subscriber as if
        this tracker had committed it: a hundred subscribers then cost one read, not a
        hundred. (A subscriber that gets a batch out of order reads the log itself.)"""
        after = self.seen
        pager = Pager()
        while after < head:
            records, covered = await self.store.read(after, limit=pager.limit, arrays=True)
            pager.adapt(records)
            if records:
                self.hub.publish(records)
            if covered <= after:
                return
            after = covered


def _abort(live: tuple[Run, anyio.CancelScope], reason: str | None) -> None:
    run, scope = live
    run.request_abort(reason)
    scope.cancel()
