"""The tracker's calls on runs: start one (or resume it), edit one, abort one, delete one.

Each checks its arguments where it is called, before anything is written, so a bad argument
raises at the call and not at the block's entry; opening the run is ``RunOpener``'s
(``opening``). ``Tracker`` (``tracker``) inherits them and supplies the parts they work
with, which exist only while it is open.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from anyio.abc import TaskGroup

from engine._core import events as ev
from engine._core.events import NewEvent
from engine._core.model import RunState, Status
from engine._core.text import check_text
from engine._core.validate import (
    check_project,
    check_reason,
    check_run_id,
    check_run_labels,
    check_step,
    check_tags,
    normalize_config,
)
from engine._storage.blobs.contract import BlobStore
from engine._storage.contract import AppendRequest, Store
from engine.errors import RunExistsError, ValidationError

from .captures import (
    DEFAULT_INTERVAL,
    CaptureOptions,
    Captures,
    check_capture_options,
    lines_from,
)
from .context import EditContext, RunContext, Watcher
from .liveness import Liveness
from .opening import RunOpener
from .run import Run, attach_captures, run_kinds, system_start
from .snapshot import Named
from .writer import Writer

__all__ = ["TrackerRuns"]


class TrackerRuns:
    """The run half of the tracker's API, over the parts the open tracker holds."""

    # Declared, not defined: supplied by the Tracker and its reads and jobs.
    project: str
    _clock: Callable[[], float]
    _blocking: bool
    _named: Named
    _opener: RunOpener | None
    _liveness: Liveness | None
    _tasks: TaskGroup | None
    _open: Callable[[], tuple[Store, Writer]]
    _blob_store: Callable[[], BlobStore]
    _project: Callable[[str | None], str]
    _state_or_raise: Callable[[str, str], Coroutine[Any, Any, RunState]]
    _cancel_queued: Callable[[str, str, str | None], Coroutine[Any, Any, bool]]

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
    ) -> RunContext:
        """Start (or, with ``resume=True``, re-open) a run; use it as ``async with``.

        ``fork=(parent_run_id, step)`` inherits the parent's series up to ``step`` and its
        configs and tags. ``resume=True`` re-opens an existing run (creating it if missing);
        with ``rewind_to=step`` reads show only points up to ``step`` and logging continues
        after it. Without ``run_id`` (and ``fork``) inside a job a worker started
        (``$KITTIWAKE_RUN_ID`` set), it attaches to the job's run; the job's output is then
        the worker's to keep (``capture_output`` defaults off for that run).

        ``notes`` sets the run's notes. While the block runs, the run records: its
        environment (``capture_env``, default on) and source (``capture_source``, default
        on: the script and ``git diff HEAD``, or a list of globs of more files) at its
        start; its stdout and stderr as the text series ``logs/stdout`` and ``logs/stderr``
        (``capture_output``, default off here, on in ``engine.sync``); and system metrics
        under ``system/`` every ``system_metrics_interval`` seconds (``system_metrics``,
        default off here, on in ``engine.sync``). ``KITTIWAKE_CAPTURE=off`` in the
        environment turns every default off.

        :raises ValidationError: for a bad argument (raised here, before anything is written).
        :raises RunExistsError: on entry, when ``run_id`` exists and ``resume`` is False.
        :raises RunNotFoundError: on entry, when the fork parent does not exist.
        """
        project = self.project if project is None else check_project(project)
        attach = os.environ.get("KITTIWAKE_RUN_ID")
        if run_id is None and fork is None and attach:
            run_id, resume = attach, True  # inside a job: its run
        if capture_output is None and attach and run_id == attach:
            capture_output = False  # the job's worker keeps its whole process group's output
        check_run_labels(run_id, name, experiment)
        if fork is not None:
            if not isinstance(fork, tuple) or len(fork) != 2:
                raise ValidationError("fork must be a tuple (parent_run_id, step)", key="fork")
            fork = (check_run_id(fork[0]), check_step(fork[1]))
        tag_list = check_tags(tags)
        flat_config = normalize_config(config or {})
        if notes is not None:
            notes = check_text("notes", notes)
        options = check_capture_options(
            capture_output=capture_output, capture_env=capture_env,
            capture_source=capture_source, system_metrics=system_metrics,
            system_metrics_interval=system_metrics_interval, blocking=self._blocking)
        if rewind_to is not None:
            if not resume:
                raise ValidationError("rewind_to needs resume=True", key="rewind_to")
            rewind_to = check_step(rewind_to)
        start = partial(self._start, project, run_id, name, experiment, fork, tag_list,
                        flat_config, resume, rewind_to, notes, options)
        return RunContext(start)

    async def _start(self, project: str, run_id: str | None, name: str | None,
                     experiment: str | None, fork: tuple[str, int | float] | None,
                     tags: list[str], config: dict[str, Any], resume: bool,
                     rewind_to: int | float | None, notes: str | None,
                     options: CaptureOptions) -> tuple[Run, Watcher]:
        self._open()
        assert self._opener is not None and self._liveness is not None
        if run_id is not None and (project, run_id) in self._liveness.live:
            raise RunExistsError(f"run {run_id!r} is already open in this tracker; end its "
                                 "block before resuming it")
        run = await self._opener.open(project, run_id, name, experiment, fork, tags, config,
                                      resume, rewind_to)
        if notes is not None:
            run.set_notes(notes)
        if options.output or options.env or options.source or options.system:
            assert self._tasks is not None
            captures = Captures(run, options, self._tasks, clock=self._clock,
                                first_lines=lines_from(run_kinds(run)),
                                system_from=system_start(run, self._clock()),
                                blobs=self._blob_store(), named=self._named)
            attach_captures(run, captures)
            captures.start()
        return run, self._liveness

    def edit_run(self, run_id: str, *, project: str | None = None) -> EditContext:
        """A handle on an existing run, running or ended, to add to it later — a leaderboard
        score, a tag, a config value — without reopening it: use it as ``async with``. Its
        status, status reason, heartbeat and captures stay as they are; leaving the block
        flushes what was logged. Metric steps follow the usual rule (greater than the
        metric's last step).

        :raises RunNotFoundError: on entry, if there is no such run (or it was deleted).
        """
        project = self._project(project)
        check_run_id(run_id)
        return EditContext(partial(self._edit, project, run_id))

    async def _edit(self, project: str, run_id: str) -> Run:
        self._open()
        assert self._opener is not None
        return await self._opener.edit(project, run_id)

    async def abort_run(self, run_id: str, reason: str | None = None, *,
                        project: str | None = None) -> None:
        """Ask a running run to stop: its live handle, in any process, cancels its body and
        ends it ``aborted`` (a job's worker stops its process). A job still queued ends
        ``aborted`` at once and never runs. Does nothing for a run that already ended.

        :raises RunNotFoundError: if there is no such run.
        :raises ValidationError: for a ``run_id`` no run can have.
        """
        _, writer = self._open()
        project = self._project(project)
        check_run_id(run_id)
        reason = check_reason(reason)
        state = await self._state_or_raise(project, run_id)
        if state.status is Status.QUEUED and await self._cancel_queued(project, run_id,
                                                                        reason):
            return  # never started, now never will
        if state.status.terminal:
            return
        await writer.submit(AppendRequest(project, run_id,
                                          [NewEvent(ev.ABORT_REQUESTED, {"reason": reason})]))

    async def delete_run(self, run_id: str, *, project: str | None = None) -> None:
        """Mark the run deleted (its events stay in the log). Deleting twice is harmless.

        :raises RunNotFoundError: if there is no such run.
        :raises ValidationError: for a ``run_id`` no run can have.
        """
        _, writer = self._open()
        project = self._project(project)
        check_run_id(run_id)
        state = await self._state_or_raise(project, run_id)
        if not state.deleted:
            await writer.submit(AppendRequest(project, run_id, [NewEvent(ev.RUN_DELETED, {})]))
