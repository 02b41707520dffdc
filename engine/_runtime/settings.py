"""A tracker's settings and what each may be: checked once, when the tracker is made.

``connect`` documents what every setting means; this module refuses the ones out of range
before anything is opened, so a bad setting never surfaces later as a stalled writer or a
reaper that crashes live runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from engine._core.validate import check_project
from engine.errors import ValidationError

__all__ = ["Durability", "Settings", "check_settings"]

Durability = Literal["full", "normal"]
"""What a flushed point survives: power loss (``full``) or a crash of the process."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The checked settings of one tracker (their meaning: ``connect``'s parameters)."""

    project: str
    durability: str
    flush_interval: float
    batch_points: int
    max_pending_points: int
    heartbeat_interval: float
    crash_timeout: float
    reap_interval: float
    poll_interval: float


def check_settings(*, project: str, durability: str, flush_interval: float, batch_points: int,
                   max_pending_points: int, heartbeat_interval: float, crash_timeout: float,
                   reap_interval: float | None, poll_interval: float) -> Settings:
    """The settings, checked; ``reap_interval`` None becomes a quarter of ``crash_timeout``.

    :raises ValidationError: for a setting out of range, naming it.
    """
    if durability not in ("full", "normal"):
        raise ValidationError(f"durability must be 'full' or 'normal', not {durability!r}",
                              key="durability")
    for name, count in (("batch_points", batch_points),
                        ("max_pending_points", max_pending_points)):
        if type(count) is not int or count < 1:
            raise ValidationError(f"{name} must be a positive int, not {count!r}", key=name)
    project = check_project(project)
    flush = _positive("flush_interval", flush_interval)
    heartbeat = _positive("heartbeat_interval", heartbeat_interval)
    timeout = _positive("crash_timeout", crash_timeout)
    reap = _positive("reap_interval", reap_interval or crash_timeout / 4)
    if heartbeat >= timeout:
        raise ValidationError(
            f"heartbeat_interval ({heartbeat_interval}) must be shorter than crash_timeout "
            f"({crash_timeout}), or live runs would be reaped", key="heartbeat_interval")
    poll = _positive("poll_interval", poll_interval)
    return Settings(project=project, durability=durability, flush_interval=flush,
                    batch_points=batch_points, max_pending_points=max_pending_points,
                    heartbeat_interval=heartbeat, crash_timeout=timeout, reap_interval=reap,
                    poll_interval=poll)


def _positive(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValidationError(f"{name} must be a positive number, not {value!r}", key=name)
    return float(value)

