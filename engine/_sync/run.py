"""The blocking run handle and its ``with`` contexts: a run's own, and an edit's.

Logging does not cross threads: the training thread checks and buffers its points itself,
with the async handle's own methods, and wakes the writer only when a batch starts or fills.
When the buffer is full, a logging call waits for the writer to take some points and tries
again (real backpressure) instead of raising; when the run was aborted, it raises
``RunAbortedError``, which the run's ``with`` block swallows. Only starting, flushing and
ending the run are calls into the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from functools import partial
from types import TracebackType
from typing import Any

from engine._core.files import FileRef
from engine._runtime.context import EditContext, RunContext, begin_blocking, end_blocking
from engine._runtime.run import Run, wait_for_room
from engine.errors import BackpressureError

from .exit import Closable, forget_run, keep_run
from .portal import Portal

__all__ = ["SyncEditContext", "SyncRun", "SyncRunContext"]

_ROOM_WAIT = 0.05  # seconds between retries of a call the buffer had no room for


class SyncRunContext:
    """``with tracker.start_run(...) as run``: the blocking twin of ``RunContext``. Entering
    starts the run; leaving flushes it and records ``succeeded``, ``failed`` (the exception's
    type and message) or ``aborted``."""

    def __init__(self, portal: Portal, context: RunContext) -> None:
        self._portal = portal
        self._context = context
        self._run: SyncRun | None = None
        self._owner: Closable | None = None

    def owned_by(self, tracker: Closable) -> SyncRunContext:
        """The same context, whose run closes ``tracker`` when it finishes (``init``)."""
        self._owner = tracker
        return self

    def __enter__(self) -> SyncRun:
        """Start the run.

        :raises RunExistsError: when the run exists and ``resume`` was not asked.
        :raises RunNotFoundError: when the fork parent does not exist.
        :raises RuntimeError: when this context was entered before.
        """
        if self._run is not None:
            raise RuntimeError("a run context can be entered once")
        run = self._portal.call(partial(begin_blocking, self._context))
        self._run = SyncRun(self._portal, run, ending=self, owner=self._owner)
        keep_run(self)
        return self._run

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        """Flush the run and record how its block ended. An abort of this run ends the block
        quietly (the run ends ``aborted`` and the code after the block runs), as the async
        block's cancel scope does; any other exception goes on.

        :raises ClosedError: when the tracker closed first (the run stays ``running`` until a
            reaper marks it crashed).
        """
        assert self._run is not None
        forget_run(self)
        return self._portal.call(partial(end_blocking, self._context, exc))


class SyncEditContext:
    """``with tracker.edit_run(run_id) as run``: the blocking twin of ``EditContext``, a
    handle on an existing run that logs without touching its status. Leaving the block
    flushes what it logged."""

    def __init__(self, portal: Portal, context: EditContext) -> None:
        self._portal = portal
        self._context = context

    def __enter__(self) -> SyncRun:
        """Open the handle on the run.

        :raises RunNotFoundError: if there is no such run (or it was deleted).
        :raises RuntimeError: when this context was entered before.
        """
        return SyncRun(self._portal, self._portal.call(self._context.__aenter__))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        """Flush what the block logged; later logging calls raise ``ClosedError``. The
        block's exception, if any, goes on.

        :raises EngineError: when the store refused or failed to write it.
        """
        self._portal.call(partial(self._context.__aexit__, exc_type, exc, tb))


class SyncRun:
    """A live run for blocking code: the async ``Run``'s logging methods, which wait while
    the buffer is full instead of raising ``BackpressureError``."""

    def __init__(self, portal: Portal, run: Run, *, ending: SyncRunContext | None = None,
                 owner: Closable | None = None) -> None:
        self._portal = portal
        self._run = run
        self._ending = ending  # the block that ends it, if any
        self._owner = owner  # the tracker ``init`` opened for it, closed when it finishes
        self.project = run.project
        self.run_id = run.run_id
        self.name = run.name

    def __repr__(self) -> str:
        return f"<SyncRun {self.project}/{self.run_id} name={self.name!r}>"

    @property
    def abort_reason(self) -> str | None:
        """The reason of the abort request this run saw (None: none was)."""
        return self._run.abort_reason

    @property
    def abort_requested(self) -> bool:
        """True once ``abort_run`` was called for this run (here or in another process)."""
        return self._run.abort_requested

    def log_metrics(self, metrics: Mapping[str, Any], step: int | float | None = None, *,
                    timestamp: float | None = None) -> None:
        """Log metric values at ``step`` (see ``Run.log_metrics``); waits while the buffer is
        full.

        :raises ValidationError: naming the bad key, value or step; nothing is logged.
        :raises RunAbortedError: once the run was aborted.
        :raises BackpressureError: when this call alone holds more points than the tracker
            lets wait.
        :raises ClosedError: after the run ended.
        """
        try:
            self._run.log_metrics(metrics, step, timestamp=timestamp)
        except BackpressureError as full:
            self._when_room(partial(self._run.log_metrics, metrics, step, timestamp=timestamp),
                            full)

    def log_configs(self, config: Mapping[str, Any]) -> None:
        """Set config values (see ``Run.log_configs``); waits while the buffer is full.

        :raises ValidationError: naming the bad key or value; nothing is logged.
        :raises RunAbortedError: once the run was aborted.
        :raises ClosedError: after the run ended.
        """
        try:
            self._run.log_configs(config)
        except BackpressureError as full:
            self._when_room(partial(self._run.log_configs, config), full)

    def add_tags(self, *tags: str | Iterable[str]) -> None:
        """Add tags (see ``Run.add_tags``); waits while the buffer is full.

        :raises ValidationError: naming the bad tag; nothing is logged.
        :raises RunAbortedError: once the run was aborted.
        """
        try:
            self._run.add_tags(*tags)
        except BackpressureError as full:
            self._when_room(partial(self._run.add_tags, *tags), full)

    def remove_tags(self, *tags: str | Iterable[str]) -> None:
        """Remove tags (see ``Run.remove_tags``); waits while the buffer is full.

        :raises ValidationError: naming the bad tag; nothing is logged.
        :raises RunAbortedError: once the run was aborted.
        """
        try:
            self._run.remove_tags(*tags)
        except BackpressureError as full:
            self._when_room(partial(self._run.remove_tags, *tags), full)

    def set_notes(self, notes: str) -> None:
        """Set the run's notes, replacing them whole (see ``Run.set_notes``).

        :raises ValidationError: for notes that are not a str, or longer than 1 MiB.
        """
        self._blocking(partial(self._run.set_notes, notes))

    def log_text(self, texts: Mapping[str, Any], step: int | float | None = None, *,
                 timestamp: float | None = None) -> None:
        """Log text values at ``step`` (see ``Run.log_text``); waits while the buffer is full.

        :raises ValidationError: naming the bad key, value or step; nothing is logged.
        """
        self._blocking(partial(self._run.log_text, texts, step, timestamp=timestamp))

    def log_histograms(self, histograms: Mapping[str, Any], step: int | float | None = None,
                       *, timestamp: float | None = None) -> None:
        """Log histograms at ``step`` (see ``Run.log_histograms``).

        :raises ValidationError: naming the bad key, histogram or step; nothing is logged.
        """
        self._blocking(partial(self._run.log_histograms, histograms, step,
                               timestamp=timestamp))

    def log_confusion_matrices(self, matrices: Mapping[str, Any],
                               step: int | float | None = None, *,
                               timestamp: float | None = None) -> None:
        """Log confusion matrices at ``step`` (see ``Run.log_confusion_matrices``).

        :raises ValidationError: naming the bad key, matrix or step; nothing is logged.
        """
        self._blocking(partial(self._run.log_confusion_matrices, matrices, step,
                               timestamp=timestamp))

    def log(self, values: Mapping[str, Any], step: int | float | None = None, *,
            timestamp: float | None = None) -> None:
        """Log a mix of values, each routed by its type (see ``Run.log``).

        :raises ValidationError: naming the bad key, value or step; nothing is logged.
        """
        self._blocking(partial(self._run.log, values, step, timestamp=timestamp))

    def log_files(self, files: Mapping[str, Any], step: int | float | None = None, *,
                  timestamp: float | None = None) -> None:
        """Log files at ``step`` (see ``Run.log_files``); waits while the buffer is full.

        :raises FileSourceError: for a source that cannot be read; nothing is logged.
        :raises ValidationError: naming the bad key, value or step; nothing is logged.
        """
        self._blocking(partial(self._run.log_files, files, step, timestamp=timestamp))

    def upload(self, files: Mapping[str, Any]) -> dict[str, FileRef]:
        """Store files as the run's file attributes; returns once they are durable (see
        ``Run.upload``).

        :raises FileSourceError: for a source that cannot be read; nothing is stored.
        """
        return self._portal.call(partial(self._run.upload, files))

    def _blocking(self, call: Callable[[], None]) -> None:
        try:
            call()
        except BackpressureError as full:
            self._when_room(call, full)

    def _when_room(self, call: Callable[[], None], full: BackpressureError) -> None:
        """Make ``call`` again each time the writer has taken some pending points, until it
        fits; when nothing is pending, waiting cannot help (the call alone is too big) and
        ``full``, what it raised last, is raised."""
        while wait_for_room(self._run, _ROOM_WAIT):
            try:
                return call()
            except BackpressureError as again:
                full = again
        raise full

    def flush(self) -> None:
        """Block until everything logged so far is durable and visible to every read (see
        ``Run.flush``).

        :raises EngineError: when the store refused or failed to write it.
        :raises ClosedError: when the tracker is closed.
        """
        self._portal.call(self._run.flush)

    def finish(self, status: str = "succeeded", reason: str | None = None) -> None:
        """End the run: record its status after everything logged and wait until all of it
        is durable (see ``Run.finish``); a run from ``engine.sync.init`` also closes the
        tracker it opened. A run's ``with`` block does this when it ends; finishing twice
        does nothing.

        :param status: ``"succeeded"``, ``"failed"`` or ``"aborted"``.
        :param reason: why, shown with the status.
        :raises ValidationError: for another status.
        :raises EngineError: when the store refused or failed to write what it logged.
        """
        if self._ending is not None:
            forget_run(self._ending)
        try:
            if self._portal.running:
                self._portal.call(partial(self._run.finish, status, reason))
        finally:
            owner, self._owner = self._owner, None
            if owner is not None:
                owner.close()
