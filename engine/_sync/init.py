"""``engine.sync.init``: a run without a ``with`` block, for notebooks and scripts —
``run = engine.sync.init(...)``, log, ``run.finish()``.

The run is started on a tracker of its own, which ``finish()`` closes. A run never finished
is ended when the interpreter exits — ``succeeded``, or ``failed`` with the uncaught
exception the interpreter is exiting with — and everything it logged is committed first (see
``engine._sync.exit``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from engine._runtime.init import default_target
from engine._runtime.settings import Durability

from .run import SyncRun
from .tracker import SyncTracker

__all__ = ["init"]


def init(url: str | None = None, *, run_id: str | None = None, name: str | None = None,
         experiment: str | None = None, fork: tuple[str, int | float] | None = None,
         tags: Iterable[str] | str = (), config: Mapping[str, Any] | None = None,
         resume: bool = False, rewind_to: int | float | None = None,
         project: str | None = None, durability: Durability = "full") -> SyncRun:
    """Open a tracker on ``url`` and start a run on it, without a ``with`` block; end it with
    ``run.finish()``, which also closes the tracker. Without a URL, ``$KITTIWAKE_DB``
    (default ``kittiwake.db``) and ``$KITTIWAKE_PROJECT`` are used, and inside a job a worker
    started, ``$KITTIWAKE_RUN_ID`` names the run to attach to.

    :raises ValidationError: for a bad argument.
    :raises RunExistsError: when ``run_id`` exists and ``resume`` is False.
    :raises RunNotFoundError: when the fork parent does not exist.
    """
    url, project, run_id, resume = default_target(url, project, run_id, resume)
    tracker = SyncTracker(url, project=project, durability=durability).__enter__()
    try:
        context = tracker.start_run(run_id, name=name, experiment=experiment, fork=fork,
                                    tags=tags, config=config, resume=resume,
                                    rewind_to=rewind_to)
        return context.owned_by(tracker).__enter__()
    except BaseException:
        tracker.close()
        raise
