"""The blocking tracker: every method of the async ``Tracker``, one call into the loop each.

Its settings and parameters are the async API's own, spelled out, so that editors and type
checkers help blocking code as much as async code; the tests hold the two signatures equal.
"""

from __future__ import annotations

import enum
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import partial
from types import TracebackType
from typing import Any, Literal

from engine._core.confusion import ConfusionMatrix
from engine._core.entries import Entry
from engine._core.files import FileRef
from engine._core.histograms import Histogram
from engine._core.model import Event, Experiment, Lineage, RunState, Series
from engine._core.text import TextSeries
from engine._query.export import RunsTable
from engine._query.tree import RunGroup
from engine._runtime.captures import DEFAULT_INTERVAL
from engine._runtime.connect import connect as async_connect
from engine._runtime.files import GC_GRACE
from engine._runtime.past import AsOf
from engine._runtime.settings import Durability
from engine._runtime.tracker import Tracker, use_blocking_defaults
from engine._storage.blobs.contract import Collected
from engine._storage.contract import Progress
from engine.errors import ClosedError

from .exit import forget_tracker, keep_tracker
from .jobs import SyncJobs
from .portal import Portal
from .run import SyncEditContext, SyncRunContext
from .subscription import SyncSubscription

__all__ = ["SyncTracker", "connect"]


def connect(
    url: str | None = None,
    *,
    project: str | None = None,
    durability: Durability = "full",
    flush_interval: float = 0.02,
    batch_points: int = 50_000,
    max_pending_points: int = 1_000_000,
    heartbeat_interval: float = 10.0,
    crash_timeout: float = 120.0,
    reap_interval: float | None = None,
    poll_interval: float = 0.025,
    blobs: str | os.PathLike[str] | None = None,
    clock: Callable[[], float] = time.time,
    token: str | None = None,
    spool: str | None = None,
    offline: bool = False,
) -> SyncTracker:
    """Open a blocking tracker on ``url`` (use it as ``with``). The settings are
    ``engine.connect``'s, with the same meaning (``url`` and ``project`` default to
    ``$KITTIWAKE_DB`` and ``$KITTIWAKE_PROJECT``), except that past ``max_pending_points``
    logging waits for the writer instead of raising ``BackpressureError``.

    :raises ValidationError: for a setting out of range (raised here, before anything opens).
    """
    return SyncTracker(
        url, project=project, durability=durability, flush_interval=flush_interval,
        batch_points=batch_points, max_pending_points=max_pending_points,
        heartbeat_interval=heartbeat_interval, crash_timeout=crash_timeout,
        reap_interval=reap_interval, poll_interval=poll_interval, blobs=blobs, clock=clock,
        token=token, spool=spool, offline=offline,
    )


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


class SyncTracker(SyncJobs):
    """A tracker whose methods block, while the engine runs on an event loop in a background
    thread. Make one with :func:`connect`; the constructor takes the same settings."""

    def __init__(
        self,
        url: str | None = None,
        *,
        project: str | None = None,
        durability: Durability = "full",
        flush_interval: float = 0.02,
        batch_points: int = 50_000,
        max_pending_points: int = 1_000_000,
        heartbeat_interval: float = 10.0,
        crash_timeout: float = 120.0,
        reap_interval: float | None = None,
        poll_interval: float = 0.025,
        blobs: str | os.PathLike[str] | None = None,
        clock: Callable[[], float] = time.time,
        token: str | None = None,
        spool: str | None = None,
        offline: bool = False,
    ) -> None:
        # Made here, so that a bad setting raises at the call; it starts on the loop.
        self._tracker = async_connect(
            url, project=project, durability=durability, flush_interval=flush_interval,
            batch_points=batch_points, max_pending_points=max_pending_points,
            heartbeat_interval=heartbeat_interval, crash_timeout=crash_timeout,
            reap_interval=reap_interval, poll_interval=poll_interval, blobs=blobs,
            clock=clock, token=token, spool=spool, offline=offline,
        )
        use_blocking_defaults(self._tracker)  # output and system metrics on by default
        self._portal = Portal()
        self._state = _State.NEW
        self._entered: AbstractContextManager[Tracker] | None = None

    def __repr__(self) -> str:
        return f"<SyncTracker {self.url!r} project={self.project!r} {self._state.value}>"

    @property
    def url(self) -> str:
        """The database this tracker opens."""
        return self._tracker.url

    @property
    def project(self) -> str:
        """The project calls use unless they pass ``project=``."""
        return self._tracker.project

    @property
    def closed(self) -> bool:
        """True once the tracker has been closed."""
        return self._state is _State.CLOSED

    # Lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> SyncTracker:
        """Start the event loop's thread and open the tracker on it.

        :raises ClosedError: when this tracker was opened before.
        """
        if self._state is not _State.NEW:
            raise ClosedError("a tracker can be opened once; call engine.sync.connect() again")
        self._state = _State.CLOSED  # until it is open: a failed opening is not retried
        portal = self._portal
        portal.start()
        try:
            entered = portal.wrap(self._tracker)
            entered.__enter__()
        except BaseException:
            portal.stop()
            raise
        self._entered = entered
        self._state = _State.OPEN
        keep_tracker(self)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Commit everything buffered, close the tracker and stop its thread (see
        ``Tracker.aclose``). Closing again does nothing.

        :raises ClosedError: when the tracker had stopped on a failure of its background work.
        """
        entered, self._entered = self._entered, None
        self._state = _State.CLOSED
        forget_tracker(self)
        if entered is not None:
            try:
                entered.__exit__(None, None, None)
            finally:
                self._portal.stop()

    def _open(self) -> Tracker:
        if self._state is not _State.OPEN:
            raise ClosedError("the tracker is not open: use `with engine.sync.connect(...)`")
        return self._tracker

    # Runs ----------------------------------------------------------------------------------

    def start_run(
        self,
        run_id: str | None = None,
        *,
        name: str | None = None,
        experiment: str | None = None,
        fork: tuple[str, int | float] | None = None,
        tags: Iterable[str] | str = (),
        config: Mapping[str, Any] | None = None,
        resume: bool = False,
        rewind_to: int | float | None = None,
        project: str | None = None,
        notes: str | None = None,
        capture_output: bool | None = None,
        capture_env: bool | None = None,
        capture_source: bool | Sequence[str] | None = None,
        system_metrics: bool | None = None,
        system_metrics_interval: float = DEFAULT_INTERVAL,
    ) -> SyncRunContext:
        """Start (or, with ``resume=True``, re-open) a run; use it as ``with`` (see
        ``Tracker.start_run``). An abort makes the block's next logging call raise
        ``RunAbortedError``, and the run ends ``aborted``. Here ``capture_output`` and
        ``system_metrics`` are on by default.

        :raises ValidationError: for a bad argument (raised here, before anything is written).
        :raises RunExistsError: on entry, when ``run_id`` exists and ``resume`` is False.
        :raises RunNotFoundError: on entry, when the fork parent does not exist.
        """
        context = self._open().start_run(
            run_id, name=name, experiment=experiment, fork=fork, tags=tags, config=config,
            resume=resume, rewind_to=rewind_to, project=project, notes=notes,
            capture_output=capture_output, capture_env=capture_env,
            capture_source=capture_source, system_metrics=system_metrics,
            system_metrics_interval=system_metrics_interval)
        return SyncRunContext(self._portal, context)

    def edit_run(self, run_id: str, *, project: str | None = None) -> SyncEditContext:
        """A handle on an existing run, running or ended, to add configs, tags or metrics to
        it later without reopening it; use it as ``with`` (see ``Tracker.edit_run``).

        :raises ValidationError: for a bad ``run_id`` or ``project``.
        :raises RunNotFoundError: on entry, if there is no such run (or it was deleted).
        """
        context = self._open().edit_run(run_id, project=project)
        return SyncEditContext(self._portal, context)

    def abort_run(self, run_id: str, reason: str | None = None, *,
                  project: str | None = None) -> None:
        """Ask a running run to stop, in any process (see ``Tracker.abort_run``).

        :raises RunNotFoundError: if there is no such run.
        """
        tracker = self._open()
        self._portal.call(partial(tracker.abort_run, run_id, reason, project=project))

    def delete_run(self, run_id: str, *, project: str | None = None) -> None:
        """Mark the run deleted; its events stay in the log (see ``Tracker.delete_run``).

        :raises RunNotFoundError: if there is no such run.
        """
        tracker = self._open()
        self._portal.call(partial(tracker.delete_run, run_id, project=project))

    # Reads ---------------------------------------------------------------------------------

    def get_run(self, run_id: str, *, as_of: AsOf | None = None,
                project: str | None = None) -> RunState:
        """The run's state now, or as it was at ``as_of``, a log position or a ``datetime``
        (see ``Tracker.get_run``).

        :raises RunNotFoundError: if there is no such run (or none yet at ``as_of``).
        """
        tracker = self._open()
        return self._portal.call(partial(tracker.get_run, run_id, as_of=as_of, project=project))

    def list_runs(self, where: str | None = None, *,
                  order_by: str | Sequence[str] | None = None, limit: int | None = None,
                  offset: int = 0, include_deleted: bool = False, heads_only: bool = False,
                  as_of: AsOf | None = None, project: str | None = None) -> list[RunState]:
        """The runs matching ``where``, sorted by ``order_by`` and paged, now or as they were
        at ``as_of`` (see ``Tracker.list_runs``).

        :raises QuerySyntaxError: for a ``where`` or ``order_by`` that does not parse.
        :raises ValidationError: for a bad ``limit``, ``offset``, ``as_of`` or ``project``.
        """
        tracker = self._open()
        return self._portal.call(partial(
            tracker.list_runs, where, order_by=order_by, limit=limit, offset=offset,
            include_deleted=include_deleted, heads_only=heads_only, as_of=as_of,
            project=project))

    def group_runs(self, by: str | Sequence[str], *, where: str | None = None,
                   aggregates: str | Sequence[str] | None = None,
                   include_deleted: bool = False, heads_only: bool = False,
                   as_of: AsOf | None = None, project: str | None = None) -> list[RunGroup]:
        """The runs matching ``where`` grouped by ``by``, with counts and metric statistics,
        now or as they were at ``as_of`` (see ``Tracker.group_runs``).

        :raises QuerySyntaxError: for a ``by``, ``where`` or ``aggregates`` that does not
            parse.
        """
        tracker = self._open()
        return self._portal.call(partial(
            tracker.group_runs, by, where=where, aggregates=aggregates,
            include_deleted=include_deleted, heads_only=heads_only, as_of=as_of,
            project=project))

    def fetch_runs_table(self, where: str | None = None, *,
                         order_by: str | Sequence[str] | None = None,
                         limit: int | None = None, offset: int = 0,
                         columns: str | Sequence[str] | None = None,
                         include_deleted: bool = False, heads_only: bool = False,
                         as_of: AsOf | None = None, project: str | None = None) -> RunsTable:
        """``list_runs`` flattened into a ``RunsTable``, one column per field, config path and
        metric aggregate (see ``Tracker.fetch_runs_table``).

        :raises QuerySyntaxError: for a query, ordering or column that does not parse.
        """
        tracker = self._open()
        return self._portal.call(partial(
            tracker.fetch_runs_table, where, order_by=order_by, limit=limit, offset=offset,
            columns=columns, include_deleted=include_deleted, heads_only=heads_only,
            as_of=as_of, project=project))

    def read_series(self, run_id: str, metric: str, *, min_step: int | float | None = None,
                    max_step: int | float | None = None, max_points: int | None = None,
                    as_of: AsOf | None = None, project: str | None = None) -> Series:
        """The run's series for ``metric`` within ``[min_step, max_step]``, downsampled to
        about ``max_points``, now or as it was at ``as_of`` (see ``Tracker.read_series``).

        :raises RunNotFoundError: if there is no such run (or none yet at ``as_of``).
        :raises ValidationError: for a bad bound or ``max_points``.
        """
        tracker = self._open()
        return self._portal.call(partial(
            tracker.read_series, run_id, metric, min_step=min_step, max_step=max_step,
            max_points=max_points, as_of=as_of, project=project))

    def read_text(self, run_id: str, key: str, *, tail: int | None = None,
                  as_of: AsOf | None = None, project: str | None = None) -> TextSeries:
        """The run's text series ``key`` (see ``Tracker.read_text``).

        :raises RunNotFoundError: if there is no such run.
        """
        tracker = self._open()
        return self._portal.call(partial(tracker.read_text, run_id, key, tail=tail,
                                         as_of=as_of, project=project))

    def read_histograms(self, run_id: str, key: str, *, tail: int | None = None,
                        as_of: AsOf | None = None,
                        project: str | None = None) -> list[Entry[Histogram]]:
        """The run's histograms under ``key`` (see ``Tracker.read_histograms``).

        :raises RunNotFoundError: if there is no such run.
        """
        tracker = self._open()
        return self._portal.call(partial(tracker.read_histograms, run_id, key, tail=tail,
                                         as_of=as_of, project=project))

    def read_confusion_matrices(self, run_id: str, key: str, *, tail: int | None = None,
                                as_of: AsOf | None = None, project: str | None = None,
                                ) -> list[Entry[ConfusionMatrix]]:
        """The run's confusion matrices under ``key`` (see
        ``Tracker.read_confusion_matrices``).

        :raises RunNotFoundError: if there is no such run.
        """
        tracker = self._open()
        return self._portal.call(partial(tracker.read_confusion_matrices, run_id, key,
                                         tail=tail, as_of=as_of, project=project))

    def read_files(self, run_id: str, key: str, *, tail: int | None = None,
                   as_of: AsOf | None = None, project: str | None = None) -> list[FileRef]:
        """The run's file series ``key`` (see ``Tracker.read_files``).

        :raises RunNotFoundError: if there is no such run.
        """
        tracker = self._open()
        return self._portal.call(partial(tracker.read_files, run_id, key, tail=tail,
                                         as_of=as_of, project=project))

    def read_file(self, ref: FileRef) -> bytes:
        """A logged file's bytes, checked (see ``Tracker.read_file``).

        :raises IntegrityError: when the stored bytes do not match the digest, or are gone.
        """
        tracker = self._open()
        return self._portal.call(partial(tracker.read_file, ref))

    def open_file(self, ref: FileRef) -> Iterator[bytes]:
        """A logged file's bytes in chunks, checked as they pass (see
        ``Tracker.open_file``); each chunk is one call into the loop.

        :raises IntegrityError: when the stored bytes do not match the digest, or are gone.
        """
        tracker = self._open()
        return self._portal.iterate(tracker.open_file(ref))

    def download(self, ref: FileRef, path: str | os.PathLike[str]) -> str:
        """Write a logged file's bytes to ``path``, checked (see ``Tracker.download``).

        :raises IntegrityError: when the stored bytes do not match the digest, or are gone.
        """
        tracker = self._open()
        return self._portal.call(partial(tracker.download, ref, path))

    def gc(self, *, grace: float = GC_GRACE, dry_run: bool = False) -> Collected:
        """Remove stored file bytes no event names (see ``Tracker.gc``).

        :raises ValidationError: for a negative ``grace``.
        """
        tracker = self._open()
        return self._portal.call(partial(tracker.gc, grace=grace, dry_run=dry_run))

    def list_projects(self) -> dict[str, int]:
        """Every project with runs and how many runs each created (see
        ``Tracker.list_projects``)."""
        return self._portal.call(self._open().list_projects)

    def get_experiment(self, name: str, *, as_of: AsOf | None = None,
                       project: str | None = None) -> Experiment:
        """The experiment's head and history, now or as they were at ``as_of`` (see
        ``Tracker.get_experiment``).

        :raises ValidationError: for a bad experiment name.
        """
        tracker = self._open()
        return self._portal.call(partial(tracker.get_experiment, name, as_of=as_of,
                                         project=project))

    def lineage(self, run_id: str, *, as_of: AsOf | None = None,
                project: str | None = None) -> Lineage:
        """The run's ancestors (parent first) and descendants, now or as they were at
        ``as_of`` (see ``Tracker.lineage``).

        :raises RunNotFoundError: if there is no such run (or none yet at ``as_of``).
        """
        tracker = self._open()
        return self._portal.call(partial(tracker.lineage, run_id, as_of=as_of,
                                         project=project))

    def events(self, from_position: int = 0, *, project: str | None = None) -> Iterator[Event]:
        """The project's events after ``from_position``, in log order, to the end of the log
        (see ``Tracker.events``); each item is one call into the loop.

        :raises ValidationError: at the first item, for a bad ``from_position``.
        """
        tracker = self._open()
        return self._portal.iterate(tracker.events(from_position, project=project))

    # Following the log and rebuilding ------------------------------------------------------

    def subscribe(self, runs: Iterable[str] | None = None, types: Iterable[str] | None = None,
                  metrics: Iterable[str] | None = None,
                  from_position: int | Literal["start", "live"] = "start", *,
                  project: str | None = None,
                  buffer_points: int = 1_000_000) -> SyncSubscription:
        """Follow the project's events, history then live, without a gap or a duplicate (see
        ``Tracker.subscribe``); iterate it, and close it (or use it as ``with``) when done.

        :raises ValidationError: for a bad argument.
        :raises ClosedError: when the tracker is closed.
        """
        tracker = self._open()
        # Made on the loop: it registers with the tracker and starts a task there.
        subscription = self._portal.call_sync(partial(
            tracker.subscribe, runs, types, metrics, from_position, project=project,
            buffer_points=buffer_points))
        return SyncSubscription(self._portal, subscription)

    def check(self, progress: Callable[[int], None] | None = None) -> list[str]:
        """Verify the database; one line per finding, empty when healthy (see
        ``Tracker.check``); ``progress`` is called on the loop's thread.

        :raises StorageError: when the database cannot be read at all.
        """
        tracker = self._open()
        return self._portal.call(partial(tracker.check, progress))

    def rebuild_projections(self, progress: Progress | None = None) -> None:
        """Rebuild every projection from the log into fresh tables and swap them in (see
        ``Tracker.rebuild_projections``); ``progress`` is called on the loop's thread."""
        tracker = self._open()
        self._portal.call(partial(tracker.rebuild_projections, progress))
