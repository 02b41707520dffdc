"""How a claimed job ends: with a status, or handed back to its queue while attempts remain.

Shared by the worker's own ending of a job (``jobs``) and the reaper that recovers the jobs
of workers gone silent (``liveness``).
"""

from __future__ import annotations

from engine._core import events as ev
from engine._core.events import NewEvent
from engine._core.model import Status
from engine.errors import ValidationError

__all__ = ["requeue_or_end"]


def requeue_or_end(attempt: int | None, max_attempts: int | None, status: str,
                   reason: str | None) -> NewEvent:
    """The event that ends a claimed job with ``status``, or, for ``queued``, hands it back
    while attempts remain (else ends it ``crashed``): the claim counts as an attempt."""
    if status == Status.QUEUED.value:
        if attempt is not None and max_attempts is not None and attempt < max_attempts:
            return NewEvent(ev.JOB_REQUEUED, {"reason": reason, "attempt": attempt})
        status = Status.CRASHED.value
    if status not in ("succeeded", "failed", "aborted", "crashed"):
        raise ValidationError(f"a job ends succeeded, failed, aborted, crashed or queued, "
                              f"not {status!r}", key="status")
    return NewEvent(ev.STATUS_CHANGED, {"status": status, "reason": reason})
