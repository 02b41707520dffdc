"""The blocking twins of the tracker's job-queue calls (``engine._runtime.jobs``)."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

from engine._core.model import Job
from engine._runtime.tracker import Tracker

from .portal import Portal

__all__ = ["SyncJobs"]


class SyncJobs(ABC):
    """``enqueue``, ``claim_job``, ``list_jobs``, ``get_job`` and ``end_job``, blocking."""

    _portal: Portal

    @abstractmethod
    def _open(self) -> Tracker: ...

    def enqueue(self, command: str | Iterable[str], *, queue: str = "default",
                run_id: str | None = None, name: str | None = None,
                experiment: str | None = None, config: Mapping[str, Any] | None = None,
                tags: Iterable[str] | str = (), env: Mapping[str, str] | None = None,
                cwd: str | os.PathLike[str] | None = None, max_attempts: int = 1,
                project: str | None = None) -> str:
        """Create a run ``queued`` for a worker to start (see ``Tracker.enqueue``).

        :raises ValidationError: for a bad argument.
        :raises RunExistsError: when ``run_id`` is taken.
        """
        tracker = self._open()
        return self._portal.call(partial(
            tracker.enqueue, command, queue=queue, run_id=run_id, name=name,
            experiment=experiment, config=config, tags=tags, env=env, cwd=cwd,
            max_attempts=max_attempts, project=project))

    def claim_job(self, queues: str | Iterable[str] = "default", *,
                  worker: str | None = None, project: str | None = None) -> Job | None:
        """Claim the oldest queued job of ``queues`` (see ``Tracker.claim_job``)."""
        tracker = self._open()
        return self._portal.call(partial(tracker.claim_job, queues, worker=worker,
                                         project=project))

    def list_jobs(self, queues: str | Iterable[str] | None = None, *,
                  statuses: Iterable[str] | None = ("queued", "running"),
                  project: str | None = None) -> list[Job]:
        """The project's jobs (see ``Tracker.list_jobs``)."""
        tracker = self._open()
        return self._portal.call(partial(tracker.list_jobs, queues, statuses=statuses,
                                         project=project))

    def get_job(self, run_id: str, *, project: str | None = None) -> Job | None:
        """The job of a run, or None (see ``Tracker.get_job``)."""
        tracker = self._open()
        return self._portal.call(partial(tracker.get_job, run_id, project=project))

    def end_job(self, run_id: str, status: str, reason: str | None = None, *,
                project: str | None = None) -> bool:
        """Record how a claimed job ended (see ``Tracker.end_job``)."""
        tracker = self._open()
        return self._portal.call(partial(tracker.end_job, run_id, status, reason,
                                         project=project))
