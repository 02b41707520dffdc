"""``engine.sync.init``: a run without a ``with`` block, for notebooks and scripts —
``run = engine.sync.init(...)``, log, ``run.finish()``.

The run is started on a tracker of its own, which ``finish()`` closes. A run never finished
is ended when the interpreter exits — ``succeeded``, or ``failed`` with the uncaught
exception the interpreter is exiting with — and everything it logged is committed first (see
``engine._sync.exit``). With no block to end, an abort makes the run's next logging call
raise ``RunAbortedError``; uncaught, it ends the script, and the run ends ``aborted``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from engine._runtime.captures import DEFAULT_INTERVAL
from engine._runtime.init import default_target
from engine._runtime.settings import Durability

from .run import SyncRun
from .tracker import SyncTracker

__all__ = ["init"]


def init(
    url: str | None = None,
    *,
    run_id: str | None = None,
    name: str | None = None,
    experiment: str | None = None,
    fork: tuple[str, int | float] | None = None,
    tags: Iterable[str] | str = (),
    config: Mapping[str, Any] | None = None,
    resume: bool = False,
    rewind_to: int | float | None = None,
    notes: str | None = None,
    capture_output: bool | None = None,
    capture_env: bool | None = None,
    capture_source: bool | Sequence[str] | None = None,
    system_metrics: bool | None = None,
    system_metrics_interval: float = DEFAULT_INTERVAL,
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
) -> SyncRun:
    """Open a tracker on ``url`` and start a run on it, without a ``with`` block; end it with
    ``run.finish()``, which also closes the tracker. The run's options (``run_id`` to
    ``system_metrics_interval``) are ``SyncTracker.start_run``'s, with its defaults: output
    and system metrics are captured unless turned off; the rest are ``engine.sync.connect``'s.
    Without a URL, ``$KITTIWAKE_DB`` (default ``kittiwake.db``) and ``$KITTIWAKE_PROJECT``
    are used, and inside a job a worker started, ``$KITTIWAKE_RUN_ID`` names the run to
    attach to.

    A run never finished is ended at interpreter exit: ``succeeded``, ``failed`` with an
    uncaught exception, ``aborted`` for ``KeyboardInterrupt`` (a top-level ``sys.exit`` is
    not seen: the run ends ``succeeded``). An abort makes the run's next logging call raise
    ``RunAbortedError`` (there is no block to end quietly); uncaught, it ends the script and
    the run ends ``aborted``, and ``finish()`` after catching it does the same.

    :raises ValidationError: for a bad argument (before the run is written).
    :raises RunExistsError: when ``run_id`` exists and ``resume`` is False.
    :raises RunNotFoundError: when the fork parent does not exist.
    """
    url, project, run_id, resume = default_target(url, project, run_id, resume)
    tracker = SyncTracker(
        url, project=project, durability=durability, flush_interval=flush_interval,
        batch_points=batch_points, max_pending_points=max_pending_points,
        heartbeat_interval=heartbeat_interval, crash_timeout=crash_timeout,
        reap_interval=reap_interval, poll_interval=poll_interval, blobs=blobs, clock=clock,
        token=token, spool=spool, offline=offline).__enter__()
    try:
        context = tracker.start_run(
            run_id, name=name, experiment=experiment, fork=fork, tags=tags, config=config,
            resume=resume, rewind_to=rewind_to, notes=notes, capture_output=capture_output,
            capture_env=capture_env, capture_source=capture_source,
            system_metrics=system_metrics, system_metrics_interval=system_metrics_interval)
        return context.owned_by(tracker).__enter__()
    except BaseException:
        tracker.close()
        raise
