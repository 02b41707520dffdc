"""``engine.init``: a run without a block, for notebooks and scripts that cannot wrap their
training in ``async with`` — ``run = await engine.init(...)``, log, ``await run.finish()``.

The tracker and the run live in a task of their own on the running event loop, so that
every later call — from another notebook cell, another task — may log to the run and finish
it (a task group must be left by the task that entered it). ``finish()`` ends the run and
closes that tracker. A run never finished is ended when the event loop shuts down:
``failed`` with the exception the loop is ending on, if any (or a ``sys.exit`` with a
non-zero code), else ``succeeded``.

Without a URL, ``$KITTIWAKE_DB`` (default ``kittiwake.db``) and ``$KITTIWAKE_PROJECT`` are
used; inside a job a worker started, ``$KITTIWAKE_RUN_ID`` names the run to attach to.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .captures import DEFAULT_INTERVAL
from .connect import connect
from .context import begin_blocking, end_blocking, end_blocking_later
from .run import Run, on_finish
from .settings import Durability

__all__ = ["default_target", "init"]

_OWNERS: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks


def default_target(url: str | None, project: str | None, run_id: str | None,
                   resume: bool) -> tuple[str, str, str | None, bool]:
    """The database, project and run an ``init`` without them names: the environment's
    (``KITTIWAKE_DB``, ``KITTIWAKE_PROJECT``, ``KITTIWAKE_RUN_ID``), else the defaults. A run
    named by the environment is attached to (resumed), as a job's script expects."""
    url = url or os.environ.get("KITTIWAKE_DB") or "kittiwake.db"
    project = project or os.environ.get("KITTIWAKE_PROJECT") or "default"
    if run_id is None and os.environ.get("KITTIWAKE_RUN_ID"):
        run_id, resume = os.environ["KITTIWAKE_RUN_ID"], True
    return url, project, run_id, resume


async def init(
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
) -> Run:
    """Open a tracker on ``url`` and start a run on it, without a block; end it with
    ``await run.finish()``, which also closes the tracker. The run's options (``run_id``
    to ``system_metrics_interval``) are ``Tracker.start_run``'s, with its defaults: output
    and system metrics are not captured unless asked; the rest are ``engine.connect``'s.

    An abort makes the run's next logging call raise ``RunAbortedError`` (there is no block
    to cancel), and ``finish()`` then ends it ``aborted``.

    :raises ValidationError: for a bad argument (before anything is written).
    :raises RunExistsError: when ``run_id`` exists and ``resume`` is False.
    :raises RunNotFoundError: when the fork parent does not exist.
    """
    url, project, run_id, resume = default_target(url, project, run_id, resume)
    tracker = connect(
        url, project=project, durability=durability, flush_interval=flush_interval,
        batch_points=batch_points, max_pending_points=max_pending_points,
        heartbeat_interval=heartbeat_interval, crash_timeout=crash_timeout,
        reap_interval=reap_interval, poll_interval=poll_interval, blobs=blobs, clock=clock,
        token=token, spool=spool, offline=offline)
    context = tracker.start_run(
        run_id, name=name, experiment=experiment, fork=fork, tags=tags, config=config,
        resume=resume, rewind_to=rewind_to, notes=notes, capture_output=capture_output,
        capture_env=capture_env, capture_source=capture_source, system_metrics=system_metrics,
        system_metrics_interval=system_metrics_interval)
    loop = asyncio.get_running_loop()
    started: asyncio.Future[Run] = loop.create_future()
    done = asyncio.Event()

    async def own() -> None:
        async with tracker:
            try:
                run = await begin_blocking(context)
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                return
            started.set_result(run)
            try:
                await done.wait()
                error: BaseException | None = None
            except asyncio.CancelledError as cancelled:  # the event loop is shutting down
                # Its writer is being cancelled too: the status is buffered, and leaving the
                # tracker's block commits it with the rest.
                error = cancelled.__context__ if isinstance(cancelled.__context__,
                                                            Exception | SystemExit) else None
                end_blocking_later(context, error)
                raise
            await end_blocking(context, error)

    owner = loop.create_task(own(), name=f"kittiwake run {run_id or '(new)'}")
    _OWNERS.add(owner)
    owner.add_done_callback(_OWNERS.discard)
    run = await started

    async def close_tracker() -> None:
        done.set()
        await owner

    on_finish(run, close_tracker)
    return run
