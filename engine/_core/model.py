"""The values users receive: run state, summaries, series, experiments, lineage, events."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .files import FileRef


class Status(StrEnum):
    """A run's lifecycle state: ``running`` until exactly one terminal state — ``succeeded``,
    ``failed``, ``aborted`` or ``crashed`` — is recorded (see [States][states]); a job
    waits ``queued`` before it runs.

    A ``str`` enum, so ``state.status == "succeeded"`` holds.
    """

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"
    CRASHED = "crashed"
    QUEUED = "queued"  # a job waiting for a worker: before ``running``

    @property
    def terminal(self) -> bool:
        """True for every state but ``running`` and ``queued``."""
        return self is not Status.RUNNING and self is not Status.QUEUED


@dataclass(frozen=True, slots=True)
class MetricSummary:
    """What a run's effective series for one metric adds up to (a fork's inherited points
    included, a rewind's cut ones not).

    :ivar last: the value at the highest step, whatever it is (NaN included).
    :ivar last_step: the highest step.
    :ivar min: the smallest value, passing over NaN (NaN only when every value is).
    :ivar max: the largest value, passing over NaN (NaN only when every value is).
    :ivar count: how many points the series has.
    """

    last: float
    last_step: int | float
    min: float
    max: float
    count: int


@dataclass(frozen=True, slots=True)
class ForkPoint:
    """A run and a step: where a fork left its parent, or where a child left a run.

    :ivar run_id: the parent (or the child, in ``Lineage.descendants``).
    :ivar step: the fork step: the last step the child inherits.
    """

    run_id: str
    step: int | float


@dataclass(frozen=True, slots=True)
class RunState:
    """One run as the log says it is (at the latest position, or at ``as_of``).

    :ivar project: the project the run belongs to.
    :ivar run_id: the run's id, unique within its project.
    :ivar name: a human-readable label, not unique.
    :ivar experiment: the experiment the run was created in, or None.
    :ivar status: where the run is in its life.
    :ivar status_reason: why it ended so: ``"<ExceptionType>: <message>"`` for ``failed``, the
        abort's reason for ``aborted``, the silence for ``crashed``; None otherwise.
    :ivar tags: the run's tags.
    :ivar config: config values by flat ``a/b`` path.
    :ivar metrics: each metric's summary, by metric name.
    :ivar fork: the parent run and the step the run was forked at, or None.
    :ivar created_at: when the run was created (UTC).
    :ivar updated_at: when its last event was committed (UTC).
    :ivar ended_at: when it reached its terminal state (UTC), or None while it runs.
    :ivar deleted: True once the run was deleted.
    :ivar version: the run's stream version: how many events it has.
    :ivar position: the log position of the run's last event; as ``as_of``, it shows the run
        as it is now.
    :ivar notes: the run's description (``""`` when never set).
    :ivar env: where the run ran, by flat path (``host/name``, ``python/version``,
        ``git/commit``, …), as captured when it started.
    :ivar files: each file attribute (``run.upload``) by key, its current ``FileRef``.
    :ivar worker: for a job (``Tracker.enqueue``), the worker of its latest claim; None for a
        run that is not a job, or a job no worker claimed yet.
    """

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
    notes: str = ""
    env: dict[str, Any] = field(default_factory=dict)
    files: dict[str, FileRef] = field(default_factory=dict)
    worker: str | None = None


@dataclass(frozen=True, slots=True)
class Experiment:
    """An experiment: its head and every run ever created in it.

    :ivar name: the experiment's name.
    :ivar head: the newest run of the experiment that is not deleted, or None.
    :ivar history: the run ids of every run ever created in it, oldest first.
    """

    name: str
    head: str | None
    history: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a run sits in its fork tree.

    :ivar run_id: the run asked about.
    :ivar ancestors: from the parent to the root; each ``ForkPoint`` carries the step at which
        the line below it forked off.
    :ivar descendants: every run forked from this one, directly or not, with its own fork
        step (parents before their children).
    :ivar children: the runs forked from this one directly.
    """

    run_id: str
    ancestors: tuple[ForkPoint, ...]
    descendants: tuple[ForkPoint, ...]
    children: tuple[ForkPoint, ...]


@dataclass(frozen=True, slots=True)
class Series:
    """A metric's points in step order; iterating gives ``(step, value, timestamp)``.

    The three columns are ``array.array`` objects of equal length. They support the buffer
    protocol, so ``numpy.asarray(series.values)`` copies nothing. NaN and ±inf come back
    exactly as logged.

    :ivar steps: typecode ``'q'`` when every step is an int, else ``'d'``.
    :ivar values: typecode ``'d'``.
    :ivar timestamps: typecode ``'d'``, seconds since the epoch.
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
    """One immutable record of the log (see [the log][the-log-and-subscriptions]).

    :ivar position: global, strictly increasing from 1.
    :ivar id: the event's unique id (a UUIDv7).
    :ivar project: the project of the run.
    :ivar run_id: the run the event belongs to.
    :ivar version: the event's place in the run's stream, from 1.
    :ivar type: the event's name: ``RunCreated``, ``MetricsLogged``, ``StatusChanged``, …
    :ivar timestamp: when the event was committed (UTC).
    :ivar data: the payload as plain values; treat it as read-only: the same object may be
        handed to several subscribers.
    """

    position: int
    id: str
    project: str
    run_id: str
    version: int
    type: str
    timestamp: datetime
    data: Mapping[str, Any] = field(repr=False)



@dataclass(frozen=True, slots=True)
class Job:
    """A run enqueued to be started by a worker (see ``Tracker.enqueue``).

    :ivar project: the project of its run.
    :ivar run_id: its run.
    :ivar queue: the queue it waits in.
    :ivar command: the program and its arguments.
    :ivar env: variables added to the worker's environment.
    :ivar cwd: the working directory, or None for the worker's.
    :ivar status: ``queued``, ``running`` or where it ended (as recorded).
    :ivar attempt: how many times a worker claimed it.
    :ivar max_attempts: how many claims it may have before a lost worker ends it ``crashed``.
    :ivar worker: the worker of its latest claim, or None.
    :ivar claimed_position: the log position of that claim (of its creation while never
        claimed).
    :ivar created_at: when it was enqueued (UTC).
    """

    project: str
    run_id: str
    queue: str
    command: tuple[str, ...]
    env: dict[str, str]
    cwd: str | None
    status: Status
    attempt: int
    max_attempts: int
    worker: str | None
    claimed_position: int
    created_at: datetime
