"""The same API, blocking: for training scripts that are not async.

``engine.sync.connect(...)`` runs the async engine on a background thread (an anyio blocking
portal) and returns a tracker whose methods block. Logging does not cross threads: the
training thread checks and buffers its points itself, exactly as in async code, and wakes the
writer only when a batch starts or fills. When the buffer is full, ``log_metrics`` waits for the
writer to catch up (real backpressure) instead of raising; when the run is aborted, it raises
``RunAbortedError``.

    with engine.sync.connect("runs.db") as tracker:
        with tracker.start_run(experiment="baseline") as run:
            for step in range(1000):
                run.log_metrics({"loss": 1 / (step + 1)}, step=step)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import partial
from types import TracebackType
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from engine._core.model import Event, Experiment, Lineage, RunState, Series
from engine._query.export import RunsTable
from engine._query.tree import RunGroup
from engine._runtime.run import Run, RunContext, begin_blocking, end_blocking, wait_for_room
from engine._runtime.subscriptions import Subscription
from engine._runtime.tracker import Tracker
from engine._runtime.tracker import connect as _connect
from engine._storage.contract import Progress

from .errors import BackpressureError, ClosedError

__all__ = ["SyncRun", "SyncRunContext", "SyncSubscription", "SyncTracker", "connect"]


def connect(url: str, **settings: Any) -> SyncTracker:
    """Open a blocking tracker on ``url`` (use it as ``with``); settings as ``engine.connect``.

    :raises ValidationError: for a setting out of range.
    """
    return SyncTracker(url, **settings)


class SyncTracker:
    """A tracker whose methods block; the engine runs on a background event loop."""

    def __init__(self, url: str, **settings: Any) -> None:
        self._url = url
        self._settings = settings
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._tracker_cm: AbstractContextManager[Tracker] | None = None
        self._tracker: Tracker | None = None

    def __enter__(self) -> SyncTracker:
        if self._portal_cm is not None:
            raise ClosedError("a tracker can be opened once; call engine.sync.connect() again")
        self._portal_cm = start_blocking_portal("asyncio")
        portal = self._portal = self._portal_cm.__enter__()
        try:
            tracker = portal.call(partial(_make, self._url, self._settings))
            # Enter and exit run in one task of the portal, as the task group inside requires.
            self._tracker_cm = portal.wrap_async_context_manager(tracker)
            self._tracker = self._tracker_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Commit everything buffered and close the tracker and its thread."""
        tracker_cm, portal_cm = self._tracker_cm, self._portal_cm
        self._tracker_cm = self._tracker = None
        if tracker_cm is not None:
            try:
                tracker_cm.__exit__(None, None, None)
            finally:
                if portal_cm is not None:
                    portal_cm.__exit__(None, None, None)

    @property
    def project(self) -> str:
        """The project calls use unless they pass ``project=``."""
        return self._async().project

    def _async(self) -> Tracker:
        if self._tracker is None:
            raise ClosedError("the tracker is not open: use `with engine.sync.connect(...)`")
        return self._tracker

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        assert self._portal is not None
        return self._portal.call(partial(fn, *args, **kwargs))

    # Runs ----------------------------------------------------------------------------------

    def start_run(self, run_id: str | None = None, **options: Any) -> SyncRunContext:
        """Start or resume a run; use it as ``with``. Options as ``Tracker.start_run``."""
        context = self._async().start_run(run_id, **options)
        return SyncRunContext(self, context)

    def abort_run(self, run_id: str, reason: str | None = None, *,
                  project: str | None = None) -> None:
        """Ask a running run to stop (see ``Tracker.abort_run``)."""
        self._call(self._async().abort_run, run_id, reason, project=project)

    def delete_run(self, run_id: str, *, project: str | None = None) -> None:
        """Mark the run deleted (see ``Tracker.delete_run``)."""
        self._call(self._async().delete_run, run_id, project=project)

    # Reads ---------------------------------------------------------------------------------

    def get_run(self, run_id: str, *, as_of: int | None = None,
                project: str | None = None) -> RunState:
        """The run's state, now or at position ``as_of`` (see ``Tracker.get_run``)."""
        return self._call(self._async().get_run, run_id, as_of=as_of, project=project)

    def list_runs(self, where: str | None = None, **options: Any) -> list[RunState]:
        """The project's runs matching ``where``, sorted and paged (see
        ``Tracker.list_runs``)."""
        return self._call(self._async().list_runs, where, **options)

    def group_runs(self, by: str | Sequence[str], **options: Any) -> list[RunGroup]:
        """The matching runs grouped by ``by``, with counts and metric stats (see
        ``Tracker.group_runs``)."""
        return self._call(self._async().group_runs, by, **options)

    def fetch_runs_table(self, where: str | None = None, **options: Any) -> RunsTable:
        """The matching runs flattened into a ``RunsTable``, one column per field, config
        path and metric aggregate (see ``Tracker.fetch_runs_table``)."""
        return self._call(self._async().fetch_runs_table, where, **options)

    def read_series(self, run_id: str, metric: str, **options: Any) -> Series:
        """A metric's series (see ``Tracker.read_series``)."""
        return self._call(self._async().read_series, run_id, metric, **options)

    def get_experiment(self, name: str, *, project: str | None = None) -> Experiment:
        """An experiment's head and history."""
        return self._call(self._async().get_experiment, name, project=project)

    def lineage(self, run_id: str, *, project: str | None = None) -> Lineage:
        """A run's ancestors and descendants."""
        return self._call(self._async().lineage, run_id, project=project)

    def events(self, from_position: int = 0, *, project: str | None = None) -> Iterator[Event]:
        """The project's events after ``from_position``, to the end of the log."""
        return self._iterate(self._async().events(from_position, project=project))

    def subscribe(self, runs: Iterable[str] | None = None, types: Iterable[str] | None = None,
                  metrics: Iterable[str] | None = None, from_position: int | str = "start",
                  **options: Any) -> SyncSubscription:
        """Follow the log, history then live (see ``Tracker.subscribe``); iterate it."""
        tracker = self._async()
        # Made on the event loop: it registers with the tracker and starts a task there.
        subscription: Subscription = self._call(
            tracker.subscribe, runs, types, metrics, from_position, **options)
        return SyncSubscription(self, subscription)

    def rebuild_projections(self, progress: Progress | None = None) -> None:
        """Rebuild every projection from the log and swap it in."""
        self._call(self._async().rebuild_projections, progress)

    def _iterate(self, source: Any) -> Iterator[Any]:
        try:
            while True:
                try:
                    yield self._call(source.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            if self._tracker is not None:
                self._call(source.aclose)


class SyncSubscription:
    """A subscription for blocking code: iterate it; it ends when the tracker closes."""

    def __init__(self, tracker: SyncTracker, subscription: Subscription) -> None:
        self._tracker = tracker
        self._subscription = subscription

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        try:
            event: Event = self._tracker._call(self._subscription._next, _consumer())
        except StopAsyncIteration:
            raise StopIteration from None
        return event

    @property
    def position(self) -> int:
        """The last position covered."""
        return self._subscription.position

    @property
    def caught_up(self) -> bool:
        """True once this iterator has returned every matching event of the history (the log
        up to its head when the subscription started); see ``Subscription.caught_up``."""
        return self._subscription.caught_up

    def wait_caught_up(self) -> int:
        """Block until the history is delivered; returns the position covered. A thread that
        iterates the subscription itself can only call this while the history holds nothing
        more for it (see ``Subscription.wait_caught_up``).

        :raises RuntimeError: when this thread would have to receive history first.
        """
        position: int = self._tracker._call(self._subscription._wait_caught_up, _consumer())
        return position

    def close(self) -> None:
        """Stop the subscription."""
        if self._tracker._tracker is not None:
            self._tracker._call(self._subscription.aclose)

    def __enter__(self) -> SyncSubscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _consumer() -> tuple[str, int]:
    """Who iterates a sync subscription: the calling thread (each call runs in a new task
    of the portal, so the task says nothing)."""
    return ("thread", threading.get_ident())


async def _make(url: str, settings: Mapping[str, Any]) -> Tracker:
    return _connect(url, **settings)  # built inside the loop it will run on


class SyncRunContext:
    """``with tracker.start_run(...) as run``: the blocking counterpart of ``RunContext``."""

    def __init__(self, tracker: SyncTracker, context: RunContext) -> None:
        self._tracker = tracker
        self._context = context
        self._run: SyncRun | None = None

    def __enter__(self) -> SyncRun:
        if self._run is not None:
            raise RuntimeError("a run context can be entered once")
        tracker = self._tracker
        run: Run = tracker._call(begin_blocking, self._context)
        self._run = SyncRun(tracker, run)
        return self._run

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        """End the run; an abort of this run ends the block quietly (the run ends
        ``aborted`` and the code after the block runs), as the async block's cancel scope
        does."""
        assert self._run is not None
        return bool(self._tracker._call(end_blocking, self._context, exc))


class SyncRun:
    """A live run for synchronous code; logging methods are the async handle's own."""

    def __init__(self, tracker: SyncTracker, run: Run) -> None:
        self._tracker = tracker
        self._run = run
        self.project = run.project
        self.run_id = run.run_id
        self.name = run.name

    def __repr__(self) -> str:
        return f"<SyncRun {self.project}/{self.run_id} name={self.name!r}>"

    @property
    def abort_requested(self) -> bool:
        """True once ``abort_run`` was called for this run."""
        return self._run.abort_requested

    def log_metrics(self, metrics: Mapping[str, Any], step: int | float | None = None, *,
                    timestamp: float | None = None) -> None:
        """Log metric values (see ``Run.log_metrics``); waits while the buffer is full.

        :raises RunAbortedError: once the run was aborted.
        """
        self._waiting(partial(self._run.log_metrics, metrics, step, timestamp=timestamp))

    def log_configs(self, config: Mapping[str, Any]) -> None:
        """Set config values (see ``Run.log_configs``); waits while the buffer is full."""
        self._waiting(partial(self._run.log_configs, config))

    def add_tags(self, *tags: str | Iterable[str]) -> None:
        """Add tags; waits while the buffer is full."""
        self._waiting(partial(self._run.add_tags, *tags))

    def remove_tags(self, *tags: str | Iterable[str]) -> None:
        """Remove tags; waits while the buffer is full."""
        self._waiting(partial(self._run.remove_tags, *tags))

    def _waiting(self, call: Callable[[], None]) -> None:
        """Make a logging call, waiting for the writer while the buffer is too full for it."""
        while True:
            try:
                return call()
            except BackpressureError:
                if not wait_for_room(self._run, 0.05):
                    raise  # the call alone is over the limit: waiting cannot help

    def flush(self) -> None:
        """Block until everything logged so far is durable and visible to reads."""
        self._tracker._call(self._run.flush)
