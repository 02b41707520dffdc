"""The values users receive: run state, summaries, series, experiments, lineage, events."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """A run's lifecycle state. ``running`` until exactly one terminal state is recorded."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    CRASHED = "crashed"

    @property
    def terminal(self) -> bool:
        """True for every state but ``running``."""
        return self is not Status.RUNNING


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """What a run's effective series for one metric adds up to.

    ``min`` and ``max`` pass over NaN (they are NaN only when every value is); ``last`` is the
    value at the highest step, whatever it is.
    """

    last: float
    last_step: int | float
    min: float
    max: float
    count: int


@dataclass(frozen=True, slots=True)
class ForkPoint:
    """A run and a step: where a fork left its parent, or where a child left a run."""

    run_id: str
    step: int | float


@dataclass(frozen=True, slots=True)
class RunState:
    """One run as the log says it is (at the latest position, or at ``as_of``)."""

    project: str
    run_id: str
    name: str
    experiment: str | None
    status: Status
    status_reason: str | None
    tags: frozenset[str]
    config: dict[str, Any]
    metrics: dict[str, MetricSummary]
    fork: ForkPoint | None
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    deleted: bool
    version: int
    position: int


@dataclass(frozen=True, slots=True)
class Experiment:
    """An experiment: its head (newest run not deleted) and every run ever created in it."""

    name: str
    head: str | None
    history: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a run sits in its fork tree.

    ``ancestors`` runs from the parent to the root; each ``ForkPoint`` carries the step at which
    the line below it forked off. ``descendants`` lists every run forked from this one, directly
    or not, with its own fork step (parents before their children); ``children`` the direct ones.
    """

    run_id: str
    ancestors: tuple[ForkPoint, ...]
    descendants: tuple[ForkPoint, ...]
    children: tuple[ForkPoint, ...]


@dataclass(frozen=True, slots=True)
class Series:
    """A metric's points in step order.

    The three columns are ``array.array`` objects of equal length: ``steps`` (``'q'`` when every
    step is an int, else ``'d'``), ``values`` and ``timestamps`` (``'d'``, seconds since the
    epoch). They support the buffer protocol, so ``numpy.asarray(series.values)`` copies nothing.
    NaN and ±inf come back exactly as logged.
    """

    steps: array[Any]
    values: array[float]
    timestamps: array[float]

    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[int | float, float, float]]:
        return zip(self.steps, self.values, self.timestamps, strict=True)

    def same_as(self, other: Series) -> bool:
        """Bit-exact equality (NaN equals NaN, -0.0 differs from 0.0)."""
        return (
            _column_bits(self.steps) == _column_bits(other.steps)
            and self.values.tobytes() == other.values.tobytes()
            and self.timestamps.tobytes() == other.timestamps.tobytes()
        )


def _column_bits(steps: array[Any]) -> bytes:
    return steps.tobytes() if steps.typecode == "d" else array("d", steps).tobytes()


@dataclass(frozen=True, slots=True)
class Event:
    """One immutable record of the log.

    ``position`` is global and strictly increasing from 1; ``version`` counts the events of the
    run's stream from 1. ``data`` is the payload as plain values (treat it as read-only: the
    same object may be handed to several subscribers).
    """

    position: int
    id: str
    project: str
    run_id: str
    version: int
    type: str
    timestamp: datetime
    data: Mapping[str, Any] = field(repr=False)

