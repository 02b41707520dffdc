"""A run's heartbeat promise, and how a read judges whether it is kept.

A tracker that starts or resumes a run promises, in the event that does it, to beat for
the run every ``heartbeat_interval`` seconds while it lives; a run silent for longer than its
``crash_timeout`` has broken the promise, and every read shows it ``crashed`` from that
instant on — before any reaper records the crash, and the same after. The last sign of life
is the later of the run's last event and its last heartbeat. A run whose (re)start carries no
promise (written by an older release) keeps its recorded status until a reaper records the
crash.

This is the rule in Python; ``engine._query`` writes the same rule in SQL, and the tests hold
the two to each other.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CRASHED", "QUEUED", "RUNNING", "judge", "promise", "silence"]

RUNNING = "running"
CRASHED = "crashed"
QUEUED = "queued"


def promise(heartbeat_interval: float, crash_timeout: float) -> dict[str, Any]:
    """The payload keys of a RunCreated or RunResumed event that record the promise."""
    return {"heartbeat_interval": heartbeat_interval, "crash_timeout": crash_timeout}


def judge(status: str, crash_timeout: float | None, updated_at: float,
          beat_at: float | None, now: float, attempt: int | None = None,
          max_attempts: int | None = None) -> str:
    """The status a read shows at ``now`` for a run recorded as ``status``: ``crashed`` for
    a running run that promised a ``crash_timeout`` and has been silent for longer, since
    both its last event (``updated_at``) and its last heartbeat (``beat_at``, None: never) —
    or ``queued`` for a job whose claims so far (``attempt``) leave it another attempt, as
    the reaper will hand it back to its queue."""
    if status != RUNNING or crash_timeout is None:
        return status
    if updated_at + crash_timeout >= now:
        return status
    if beat_at is not None and beat_at + crash_timeout >= now:
        return status
    if attempt is not None and max_attempts is not None and attempt < max_attempts:
        return QUEUED
    return CRASHED


def silence(crash_timeout: float) -> str:
    """The reason a crash for silence gives, judged or recorded."""
    return f"no heartbeat for {crash_timeout:g} s"
