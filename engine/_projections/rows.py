"""The projections' rows, and the contract a backend fulfils to load and save them.

The projector (``projector``) works on these rows only: ``RunRow``, ``MetricRow``,
``Segment`` and ``ChunkHead`` are what it loads through :class:`ProjectionIO`, and
:class:`Changes` is what it hands back to be written at commit. Each backend implements
``ProjectionIO`` inside its write transactions; both do it with ``engine._storage.io``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from engine._core.series import Chunk, Summary

__all__ = [
    "PROJECTIONS",
    "Changes",
    "ChunkHead",
    "MetricRow",
    "ProjectionIO",
    "RunRow",
    "Segment",
]

# Each projection keeps its own checkpoint, written in the transaction that changes its state.
PROJECTIONS = ("runs", "metrics", "series", "lineage", "experiments")


@dataclass(slots=True)
class RunRow:
    """The ``runs`` projection row of one run."""

    rk: int  # the position of the run's RunCreated event: stable across rebuilds
    project: str
    run_id: str
    name: str
    experiment: str | None
    status: str
    status_reason: str | None
    tags: list[str]
    config: dict[str, Any]
    fork_rk: int | None
    fork_run_id: str | None
    fork_step: int | float | None
    created_at: float
    updated_at: float
    ended_at: float | None
    deleted: bool
    version: int
    position: int
    epoch: int  # bumped by each rewind; the run's own points live in (rk, epoch) chunks
    floor: int | float | None  # every new step must be greater (fork step, then rewind step)
    started_position: int  # the RunCreated or latest RunResumed: older aborts do not apply
    abort_position: int | None
    abort_reason: str | None
    heartbeat_interval: float | None = None  # the promise of its latest (re)start, if any
    crash_timeout: float | None = None
    queue: str | None = None  # a job's queue (None: not a job)
    job: dict[str, Any] | None = None  # command, env, cwd, max_attempts
    attempt: int | None = None  # claims so far
    max_attempts: int | None = None
    worker: str | None = None  # the worker of its latest claim
    notes: str = ""
    env: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> plain ref + "at"
    # Each non-metric key's kind and the last step the run sees logged under it (None for a
    # file attribute); inherited by forks, capped by rewinds.
    kinds: dict[str, list[Any]] = field(default_factory=dict)
    # ``[src_rk, src_epoch, cap_step, cap_position | None]``: the entries of other runs (or
    # earlier epochs of this one) the run sees, before its own current epoch's.
    entry_segments: list[list[Any]] = field(default_factory=list)


@dataclass(slots=True)
class MetricRow:
    """Summary of a run's effective series for one metric, and where its own tail chunk is."""

    rk: int
    metric: str
    summary: Summary
    tail_epoch: int | None
    tail_seq: int | None


@dataclass(slots=True, frozen=True)
class Segment:
    """Points of ``(rk, epoch)`` with step <= ``cap``: a frozen piece of an effective series."""

    rk: int
    epoch: int
    cap: int | float


@dataclass(slots=True)
class ChunkHead:
    """A stored chunk's summary columns, with its step and value columns when asked for."""

    n: int
    first_step: int | float
    last_step: int | float
    last_value: float
    vmin: float
    vmax: float
    steps: bytes | None = None
    values: bytes | None = None


@dataclass(slots=True)
class Changes:
    """Rows to write at commit, keyed so that a row touched twice is written once."""

    runs: dict[int, RunRow] = field(default_factory=dict)
    metrics: dict[tuple[int, str], MetricRow] = field(default_factory=dict)
    dropped_metrics: set[tuple[int, str]] = field(default_factory=set)
    chunks: dict[tuple[int, str, int, int], Chunk] = field(default_factory=dict)
    segments: dict[tuple[int, str], list[Segment]] = field(default_factory=dict)
    lineage: list[tuple[int, int, int, int | float]] = field(default_factory=list)
    experiments: dict[tuple[str, str], int | None] = field(default_factory=dict)
    projects: dict[str, int] = field(default_factory=dict)
    # Runs whose config or tags changed: their query rows (run_configs, run_tags) are
    # written again in full, which is cheap because configs and tags change rarely.
    configs: dict[int, RunRow] = field(default_factory=dict)
    tags: dict[int, RunRow] = field(default_factory=dict)
    # Entries to add: ``(rk, path, epoch, step, position, kind, at, encoded value)``.
    entries: list[tuple[Any, ...]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.runs or self.metrics or self.dropped_metrics or self.chunks
                    or self.segments or self.lineage or self.experiments or self.projects
                    or self.configs or self.tags or self.entries)


class ProjectionIO(ABC):
    """What a backend provides the projector, inside its write transaction."""

    @abstractmethod
    async def load_run(self, project: str, run_id: str) -> RunRow | None:
        """The run's row, or None."""

    @abstractmethod
    async def load_metrics(self, rk: int) -> dict[str, MetricRow]:
        """Every metric row of the run."""

    @abstractmethod
    async def load_segments(self, rk: int) -> dict[str, list[Segment]]:
        """The run's frozen segments per metric, in order."""

    @abstractmethod
    async def load_chunk(self, rk: int, metric: str, epoch: int, seq: int) -> Chunk:
        """One stored chunk with its columns."""

    @abstractmethod
    async def load_heads(self, rk: int, metric: str, epoch: int,
                         cap: int | float) -> list[ChunkHead]:
        """Chunks of ``(rk, metric, epoch)`` with first step <= cap, in order; the one that
        crosses ``cap`` carries its step and value columns."""

    @abstractmethod
    async def load_ancestors(self, rk: int) -> list[tuple[int, int, int | float]]:
        """``(ancestor_rk, depth, step)`` for every ancestor of the run."""

    @abstractmethod
    async def newest_alive(self, project: str, experiment: str) -> int | None:
        """The newest run of the experiment that is not deleted (sees saved changes only)."""

    @abstractmethod
    async def project_runs(self, project: str) -> int:
        """How many runs were ever created in the project."""

    @abstractmethod
    async def save(self, changes: Changes) -> None:
        """Write the changes (inside the current transaction)."""
