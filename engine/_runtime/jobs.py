"""The job queue: runs enqueued ``queued``, claimed by workers exactly once, ended or handed
back.

A job is a run whose ``RunCreated`` carries its spec (command, env, cwd, queue,
``max_attempts``); it waits ``queued``. A worker claims it by appending ``JobClaimed`` with
``expected_version``: of several workers that read the same queued run, the store lets one
append and refuses the others (``ConcurrencyError``), which move on to the next job — the
guarantee ``SELECT … FOR UPDATE SKIP LOCKED`` gives PostgreSQL queues, on both backends. The
claim is a lease: the worker's tracker beats for the job like for a live run, and a job whose
worker went silent is recovered by any tracker's reaper — handed back to its queue
(``JobRequeued``) while attempts remain, else ended ``crashed``.
"""

from __future__ import annotations

import os
import shlex
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from engine._core import events as ev
from engine._core.events import NewEvent
from engine._core.model import Job, Status
from engine._core.validate import (
    check_name,
    check_reason,
    check_run_labels,
    check_tags,
    normalize_config,
)
from engine._storage.contract import AppendRequest, JobRow, Store
from engine.errors import ConcurrencyError, ValidationError

from .liveness import Liveness
from .opening import RunOpener
from .requeue import requeue_or_end
from .writer import Writer

__all__ = ["TrackerJobs", "worker_name"]

_CLAIM_PAGE = 16  # queued runs a claim reads at once; racing workers take the next ones


def worker_name() -> str:
    """A worker's default name: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class TrackerJobs(ABC):
    """The job queue half of the tracker's API."""

    project: str
    _clock: Callable[[], float]  # the instant listings judge heartbeat promises at

    @abstractmethod
    def _open(self) -> tuple[Store, Writer]: ...

    @abstractmethod
    def _project(self, project: str | None) -> str: ...

    @abstractmethod
    def _job_parts(self) -> tuple[RunOpener, Liveness, dict[str, Any]]:
        """The opener (for names), liveness (to beat for claimed jobs) and the promise."""

    async def enqueue(self, command: str | Iterable[str], *, queue: str = "default",
                      run_id: str | None = None, name: str | None = None,
                      experiment: str | None = None, config: Mapping[str, Any] | None = None,
                      tags: Iterable[str] | str = (), env: Mapping[str, str] | None = None,
                      cwd: str | os.PathLike[str] | None = None, max_attempts: int = 1,
                      project: str | None = None) -> str:
        """Create a run in status ``queued`` for a worker to start; returns its run id.

        ``command`` is the program and its arguments (a string is split as a shell would,
        without running a shell). ``env`` adds to the worker's environment; ``cwd`` is the
        directory it runs in (default: the worker's). A job whose worker dies goes back to
        the queue until it was claimed ``max_attempts`` times, then ends ``crashed``.

        :raises ValidationError: for a bad argument, naming it.
        :raises RunExistsError: when ``run_id`` is taken.
        """
        self._open()
        project = self._project(project)
        spec = _spec(command, queue, env, cwd, max_attempts)
        check_run_labels(run_id, name, experiment)
        tag_list = check_tags(tags)
        flat = normalize_config(config or {})
        opener, _, _ = self._job_parts()
        return await opener.create_job(project, run_id, name, experiment, tag_list, flat,
                                       spec)

    async def claim_job(self, queues: str | Iterable[str] = "default", *,
                        worker: str | None = None, project: str | None = None) -> Job | None:
        """Claim the oldest queued job of ``queues`` for ``worker`` (default ``host:pid``),
        mark it ``running`` and beat for it from this tracker; None when none waits. Of
        workers racing for one job exactly one gets it.

        :raises ValidationError: for a bad queue or worker name.
        """
        store, writer = self._open()
        project = self._project(project)
        names = [check_name(q, "queues") for q in ([queues] if isinstance(queues, str)
                                                   else list(queues))]
        if not names:
            raise ValidationError("queues must name at least one queue", key="queues")
        worker = check_name(worker or worker_name(), "worker")
        _, liveness, promise = self._job_parts()
        while True:
            rows = await store.jobs(project, queues=names, statuses=["queued"],
                                    limit=_CLAIM_PAGE)
            if not rows:
                return None
            for row in rows:
                data = {"worker": worker, "host": socket.gethostname(), "pid": os.getpid(),
                        "attempt": row.attempt + 1, **promise}
                try:
                    records = await writer.submit(AppendRequest(
                        project, row.run_id, [NewEvent(ev.JOB_CLAIMED, data)],
                        expected_version=row.version))
                except ConcurrencyError:
                    continue  # another worker won it (or it was cancelled): the next one
                liveness.jobs.add((project, row.run_id))
                return _job(project, row, status=Status.RUNNING, attempt=row.attempt + 1,
                            worker=worker, claimed=records[0].position)

    async def list_jobs(self, queues: str | Iterable[str] | None = None, *,
                        statuses: Iterable[str] | None = ("queued", "running"),
                        project: str | None = None) -> list[Job]:
        """The project's jobs in ``queues`` (None: all) and ``statuses`` (None: any),
        oldest first; statuses as every read judges them (a job whose worker went silent is
        ``queued`` again while it has attempts left, else ``crashed``)."""
        store, _ = self._open()
        project = self._project(project)
        names = None if queues is None else ([queues] if isinstance(queues, str)
                                             else list(queues))
        rows = await store.jobs(project, queues=names,
                                statuses=None if statuses is None else list(statuses),
                                now=self._clock())
        return [_job(project, row) for row in rows]

    async def get_job(self, run_id: str, *, project: str | None = None) -> Job | None:
        """The job of run ``run_id``, or None when that run is not a job."""
        store, _ = self._open()
        project = self._project(project)
        rows = await store.jobs(project, queues=None, statuses=None, run_ids=[run_id],
                                now=self._clock())
        return _job(project, rows[0]) if rows else None

    async def end_job(self, run_id: str, status: str, reason: str | None = None, *,
                      project: str | None = None) -> bool:
        """Record how a claimed job ended, unless it ended already (its script ended the run
        itself, or it was aborted); stop beating for it. Returns whether this call ended it.

        ``status`` is ``succeeded``, ``failed``, ``aborted`` or ``crashed``, or ``queued``
        to hand the job back to its queue — a worker asked to stop does that; the claim then
        does not count against ``max_attempts``.
        """
        store, writer = self._open()
        project = self._project(project)
        reason = check_reason(reason)
        _, liveness, _ = self._job_parts()
        try:
            while True:
                rows = await store.jobs(project, queues=None, statuses=None, run_ids=[run_id])
                if not rows or rows[0].status != Status.RUNNING.value:
                    return False
                row = rows[0]
                if status == Status.QUEUED.value:
                    event = NewEvent(ev.JOB_REQUEUED, {"reason": reason,
                                                       "attempt": row.attempt - 1})
                else:
                    event = requeue_or_end(row.attempt, row.max_attempts, status, reason)
                try:
                    await writer.submit(AppendRequest(project, run_id, [event],
                                                      expected_version=row.version))
                    return True
                except ConcurrencyError:
                    continue  # the script logged or ended meanwhile: look again
        finally:
            liveness.jobs.discard((project, run_id))

    async def _cancel_queued(self, project: str, run_id: str, reason: str | None) -> bool:
        """End a job that no worker claimed yet ``aborted``, atomically with its abort
        request; False when it is no longer queued (a worker claimed it meanwhile)."""
        store, writer = self._open()
        while True:
            rows = await store.jobs(project, queues=None, statuses=None, run_ids=[run_id])
            if not rows or rows[0].status != Status.QUEUED.value:
                return False
            events = [NewEvent(ev.ABORT_REQUESTED, {"reason": reason}),
                      NewEvent(ev.STATUS_CHANGED, {"status": Status.ABORTED.value,
                                                   "reason": reason or "cancelled"})]
            try:
                await writer.submit(AppendRequest(project, run_id, events,
                                                  expected_version=rows[0].version))
                return True
            except ConcurrencyError:
                continue


def _spec(command: str | Iterable[str], queue: str, env: Mapping[str, str] | None,
          cwd: str | os.PathLike[str] | None, max_attempts: int) -> dict[str, Any]:
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as exc:  # an unclosed quote
            raise ValidationError(f"command {command!r} does not split into arguments: "
                                  f"{exc}", key="command") from None
    elif isinstance(command, Iterable) and not isinstance(command, (bytes, Mapping)):
        argv = list(command)
    else:
        raise ValidationError(f"command must be a string or a list of strings, not "
                              f"{command!r}", key="command")
    if not argv or any(type(a) is not str or "\x00" in a for a in argv):
        raise ValidationError(f"command must be a non-empty list of strings without NUL, not "
                              f"{command!r}", key="command")
    variables = dict(env or {})
    for key, value in variables.items():
        if type(key) is not str or type(value) is not str or not key or "=" in key \
                or "\x00" in key + value:
            raise ValidationError(f"env must map names to strings; {key!r}: {value!r} is "
                                  "not", key="env")
    if type(max_attempts) is not int or max_attempts < 1:
        raise ValidationError(f"max_attempts must be an int >= 1, not {max_attempts!r}",
                              key="max_attempts")
    return {"command": argv, "queue": check_name(queue, "queue"), "env": variables,
            "cwd": None if cwd is None else os.fspath(cwd), "max_attempts": max_attempts}


def _job(project: str, row: JobRow, *, status: Status | None = None,
         attempt: int | None = None, worker: str | None = None,
         claimed: int | None = None) -> Job:
    spec = row.spec
    return Job(project=project, run_id=row.run_id, queue=row.queue,
               command=tuple(spec["command"]), env=dict(spec.get("env") or {}),
               cwd=spec.get("cwd"), status=status or Status(row.status),
               attempt=row.attempt if attempt is None else attempt,
               max_attempts=row.max_attempts, worker=worker or row.worker,
               claimed_position=row.started_position if claimed is None else claimed,
               created_at=datetime.fromtimestamp(row.created_at, UTC))
