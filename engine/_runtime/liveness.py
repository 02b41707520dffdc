"""Keeping live runs alive and informed.

A tracker's live runs beat every ``heartbeat_interval``; its reaper records as crashed the
running runs silent for longer than their crash timeout (the one their (re)start promised,
else this tracker's ``crash_timeout``), which every read has shown since the promise broke
(with ``expected_version``, so two reapers, or a run that just moved on, never both write).
And it follows the log's head as other processes move it — ``Store.wait_for_head`` is a
cheap poll on SQLite and a LISTEN doorbell on PostgreSQL — to ring subscribers and deliver
abort requests made elsewhere. It follows the head only while someone cares (a subscriber,
or a live run that may be aborted): an idle tracker makes no query at all.

These loops run under the tracker's ``Supervisor``, which retries a failing step and stops
the tracker when one cannot go on; every step here is therefore safe to repeat.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import anyio

from engine._core import events as ev
from engine._core.events import Record
from engine._core.heartbeat import silence
from engine._core.model import Status
from engine._storage.contract import AppendRequest, Store
from engine.errors import ClosedError, ConcurrencyError, RunNotFoundError

from .requeue import requeue_or_end
from .run import Run
from .subscriptions import Hub, Pager
from .supervisor import Supervisor
from .writer import Writer

__all__ = ["Liveness"]

Key = tuple[str, str]


class Liveness:
    """Heartbeats, the reaper, abort delivery and the head of the log, for one tracker."""

    def __init__(self, store: Store, writer: Writer, hub: Hub, supervisor: Supervisor, *,
                 clock: Callable[[], float], heartbeat_interval: float, crash_timeout: float,
                 reap_interval: float, poll_interval: float) -> None:
        self.store = store
        self.writer = writer
        self.hub = hub
        self.supervisor = supervisor
        self.clock = clock
        self.heartbeat_interval = heartbeat_interval
        self.crash_timeout = crash_timeout
        self.reap_interval = reap_interval
        self.poll_interval = poll_interval
        self.live: dict[Key, tuple[Run, anyio.CancelScope]] = {}
        self.jobs: set[Key] = set()  # jobs this tracker's worker claimed: beaten, not reaped
        self.seen = 0  # the highest position this tracker knows it has looked at
        self._noticing = 0  # ``_noticed`` calls under way (each reads controls, then moves seen)
        self._interest: anyio.Event | None = None  # set when the head is worth following
        hub.on_add = self._interested

    @property
    def loops(self) -> tuple[Callable[[], Awaitable[None]], ...]:
        """The background loops, for the supervisor to run."""
        return (self._heartbeats, self._reaper, self._follow)

    async def watch(self, run: Run, scope: anyio.CancelScope) -> None:
        """Keep ``run`` alive, and cancel ``scope`` if it is aborted — including by a request
        that landed before this call, which no commit hook will deliver again."""
        key = (run.project, run.run_id)
        self.live[key] = (run, scope)
        if self.supervisor.failure is not None:
            run.halt(self.supervisor.failure)
        self._interested()
        if not run.started_position:
            return  # created by this handle, not yet in the log: no request can predate it
        if self.seen <= run.started_position and not self._noticing:
            # Nothing after the run's start has been looked at, and no look is under way:
            # ``_follow`` will look at any request with the run live. (A read of the
            # controls here would have the store save its projections first: a cost per run.)
            return
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

    def halt(self, error: ClosedError) -> None:
        """The tracker stopped: every live run's logging calls raise ``error`` from now on."""
        for run, _ in list(self.live.values()):
            run.halt(error)

    # The loops -----------------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        while self.supervisor.failure is None:
            await anyio.sleep(self.heartbeat_interval)
            if self.live or self.jobs:
                await self.supervisor.retrying(self._beat)

    async def _beat(self) -> None:
        await self.store.beat([*self.live, *(k for k in self.jobs if k not in self.live)],
                              self.clock())

    async def _reaper(self) -> None:
        while self.supervisor.failure is None:
            await self.supervisor.retrying(self._reap)
            await anyio.sleep(self.reap_interval)

    async def _reap(self) -> None:
        for stale in await self.store.stale_runs(self.clock(), self.crash_timeout):
            if (stale.project, stale.run_id) in self.live or \
                    (stale.project, stale.run_id) in self.jobs:
                continue
            # A job whose worker went silent goes back to its queue while attempts remain.
            event = requeue_or_end(stale.attempt, stale.max_attempts, Status.QUEUED.value,
                                   silence(stale.crash_timeout))
            # It may have moved on, or another reaper got there first: both are fine.
            with contextlib.suppress(ConcurrencyError, RunNotFoundError, ClosedError):
                await self.writer.submit(AppendRequest(
                    stale.project, stale.run_id, [event], expected_version=stale.version))

    def _interested(self) -> None:
        if self._interest is not None:
            self._interest.set()

    async def _follow(self) -> None:
        """Notice other processes' appends, only while someone (a subscriber, or a live run
        that may be aborted) cares; otherwise wait, without a query, until someone does."""
        while self.supervisor.failure is None:
            if not self.live and not len(self.hub):
                interest = self._interest = anyio.Event()
                # A script that runs one run after another leaves a gap between them: within
                # a poll interval, a run that comes back finds the head still followed.
                with anyio.move_on_after(self.poll_interval):
                    await interest.wait()
                if interest.is_set() and not len(self.hub):
                    continue
                if not self.live and not len(self.hub):
                    await interest.wait()
                # Idle, we looked at nothing: what others appended meanwhile is history for
                # whoever arrived now (they read it themselves), not something to hand out.
                await self.supervisor.retrying(self._catch_up)
                continue
            await self.supervisor.retrying(self._look)

    async def _catch_up(self) -> None:
        await self._noticed(await self.store.head(), publish=False)

    async def _look(self) -> None:
        await self._noticed(await self.store.wait_for_head(self.seen, self.poll_interval),
                            publish=True)

    async def _noticed(self, head: int, *, publish: bool) -> None:
        """Deal with the log up to ``head``. ``seen`` moves last, so that a step that fails
        half-way is done again in full (each part of it is harmless to repeat)."""
        if head <= self.seen:
            return
        self._noticing += 1
        try:
            await self._notice(head, publish=publish)
        finally:
            self._noticing -= 1

    async def _notice(self, head: int, *, publish: bool) -> None:
        if publish and len(self.hub):
            await self._publish(head)
        self.hub.ring(head)
        controls = await self.store.controls(list(self.live))
        for key, control in controls.items():
            live = self.live.get(key)
            if (live is not None and control.abort_position is not None
                    and control.abort_position > live[0].started_position
                    and not live[0].abort_requested):
                _abort(live, control.abort_reason)
        self.seen = max(self.seen, head)

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
                self.hub.publish(records, own=False)
            if covered <= after:
                return
            after = covered


def _abort(live: tuple[Run, anyio.CancelScope], reason: str | None) -> None:
    run, scope = live
    run.request_abort(reason)
    scope.cancel()
