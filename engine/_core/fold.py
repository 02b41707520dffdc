"""The projections as one pure fold over the log: the reference semantics.

``Fold.apply(event)`` is ``(state, event) -> state`` written as plainly as possible: each run
keeps its effective series as whole arrays (a fork copies its parent's, cut at the fork step; a
rewind cuts its own). The database projections are built for speed instead; tests hold them to
this fold, and ``get_run(as_of=)`` answers from it.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import content as ct
from . import events as ev
from .events import Record
from .heartbeat import judge, silence
from .model import (
    Event,
    Experiment,
    ForkPoint,
    Lineage,
    MetricSummary,
    RunState,
    Series,
    Status,
)
from .series import as_step, normalize_steps, steps_array

__all__ = ["Fold"]

Columns = tuple["array[Any]", "array[float]", "array[float]"]


@dataclass
class _Run:
    project: str
    run_id: str
    name: str
    experiment: str | None
    created_at: float
    created_position: int
    fork: ForkPoint | None
    floor: int | float | None
    tags: set[str] = field(default_factory=set)
    config: dict[str, Any] = field(default_factory=dict)
    series: dict[str, Columns] = field(default_factory=dict)
    status: Status = Status.RUNNING
    status_reason: str | None = None
    ended_at: float | None = None
    updated_at: float = 0.0
    deleted: bool = False
    version: int = 0
    position: int = 0
    children: list[str] = field(default_factory=list)
    heartbeat_interval: float | None = None  # the promise of the latest (re)start
    crash_timeout: float | None = None
    attempt: int | None = None  # a job's claims that count, and how many it may have
    max_attempts: int | None = None
    worker: str | None = None  # the worker of a job's latest claim
    notes: str = ""
    env: dict[str, Any] = field(default_factory=dict)
    files: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)
    entries: dict[str, list[ct.EntryRow]] = field(default_factory=dict)


def _cut(columns: Columns, step: int | float) -> Columns:
    steps, values, times = columns
    keep = bisect_right(steps, step)
    return steps[:keep], values[:keep], times[:keep]


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Fold:
    """The whole log folded into memory: runs, series, experiments and lineage."""

    def __init__(self) -> None:
        self.runs: dict[tuple[str, str], _Run] = {}
        self.experiments: dict[tuple[str, str], list[str]] = {}
        self.position = 0

    def apply_all(self, events: Iterable[Event | Record]) -> Fold:
        """Apply events in log order; returns self."""
        for event in events:
            self.apply(event)
        return self

    def apply(self, event: Event | Record) -> None:
        """Fold one event (public or internal form) in. Events must come in position order."""
        self.position = event.position
        key = (event.project, event.run_id)
        data = event.data
        stamp = event.timestamp
        at = stamp.timestamp() if isinstance(stamp, datetime) else stamp
        if event.type == ev.RUN_CREATED:
            self._create(event, data, at)
        run = self.runs.get(key)
        if run is None:
            return
        run.version = event.version
        run.position = event.position
        run.updated_at = at
        kind = event.type
        if kind == ev.METRICS_LOGGED:
            for name, column in data["metrics"].items():
                self._extend(run, name, column)
        elif kind == ev.CONFIGS_LOGGED:
            run.config.update(data["config"])
        elif kind == ev.TAGS_ADDED:
            run.tags.update(data["tags"])
        elif kind == ev.TAGS_REMOVED:
            run.tags.difference_update(data["tags"])
        elif kind == ev.STATUS_CHANGED:
            run.status = Status(data["status"])
            run.status_reason = data.get("reason")
            run.ended_at = at if run.status.terminal else None
        elif kind == ev.RUN_RESUMED:
            run.status, run.status_reason, run.ended_at = Status.RUNNING, None, None
            run.heartbeat_interval = data.get("heartbeat_interval")
            run.crash_timeout = data.get("crash_timeout")
            rewind = data.get("rewind_to")
            if rewind is not None:
                run.floor = rewind
                run.series = {m: c for m, c in ((m, _cut(c, rewind)) for m, c in run.series.items())
                              if c[0]}
                run.entries = _cut_entries(run.entries, rewind)
        elif kind == ev.RUN_DELETED:
            run.deleted = True
        elif kind == ev.JOB_CLAIMED:
            run.status, run.status_reason, run.ended_at = Status.RUNNING, None, None
            run.heartbeat_interval = data.get("heartbeat_interval")
            run.crash_timeout = data.get("crash_timeout")
            run.attempt, run.worker = data["attempt"], data["worker"]
        elif kind == ev.JOB_REQUEUED:
            run.status, run.status_reason, run.ended_at = Status.QUEUED, data.get("reason"), None
            run.attempt = data["attempt"]
        elif kind == ev.NOTES_SET:
            run.notes = data["notes"]
        elif kind == ev.ENV_CAPTURED:
            run.env.update(data["env"])
        elif kind == ev.FILES_UPLOADED:
            for name, ref in data["files"].items():
                run.files[name] = (ref["timestamp"], ref)
                run.kinds[name] = ct.UPLOAD
        elif kind in ct.ENTRY_EVENTS:
            for name, what, rows in ct.entries_of(kind, data):
                run.kinds[name] = what
                run.entries.setdefault(name, []).extend(rows)

    def _create(self, event: Event | Record, data: Mapping[str, Any], at: float) -> None:
        fork = data.get("fork")
        run = _Run(
            project=event.project, run_id=event.run_id, name=data["name"],
            experiment=data.get("experiment"), created_at=at, created_position=event.position,
            fork=ForkPoint(fork["run_id"], fork["step"]) if fork else None,
            floor=fork["step"] if fork else None,
            heartbeat_interval=data.get("heartbeat_interval"),
            crash_timeout=data.get("crash_timeout"),
        )
        if fork:
            parent = self.runs[(event.project, fork["run_id"])]
            parent.children.append(event.run_id)
            run.tags = set(parent.tags)
            run.config = dict(parent.config)
            cut = (_cut(c, fork["step"]) for c in parent.series.values())
            run.series = {m: c for m, c in zip(parent.series, cut, strict=True) if c[0]}
            run.notes, run.env = parent.notes, dict(parent.env)
            run.files, run.kinds = dict(parent.files), dict(parent.kinds)
            run.entries = _cut_entries(parent.entries, fork["step"])
        run.tags.update(data.get("tags") or ())
        run.config.update(data.get("config") or {})
        if data.get("job"):
            run.status = Status.QUEUED
            run.attempt, run.max_attempts = 0, data["job"]["max_attempts"]
        self.runs[(event.project, event.run_id)] = run
        if run.experiment is not None:
            self.experiments.setdefault((event.project, run.experiment), []).append(event.run_id)

    @staticmethod
    def _extend(run: _Run, name: str, column: Mapping[str, Any]) -> None:
        new_steps = steps_array(column["steps"])
        old = run.series.get(name)
        if old is None:
            run.series[name] = (new_steps, array("d", column["values"]),
                                array("d", column["timestamps"]))
            return
        steps, values, times = old
        if steps.typecode != new_steps.typecode:
            steps = array("d", steps)
            new_steps = array("d", new_steps)
        steps.extend(new_steps)
        values.extend(array("d", column["values"]))
        times.extend(array("d", column["timestamps"]))
        run.series[name] = (steps, values, times)

    # Reads -------------------------------------------------------------------------------

    def has_run(self, project: str, run_id: str) -> bool:
        """Whether the run exists (deleted or not)."""
        return (project, run_id) in self.runs

    def run_state(self, project: str, run_id: str, *, at: float | None = None) -> RunState:
        """The run as the fold sees it; with ``at``, its status judged at that instant
        (``heartbeat``) by the signs of life the log holds — its events, as heartbeats are
        not events.

        :raises KeyError: if there is no such run.
        """
        run = self.runs[(project, run_id)]
        status, reason = run.status, run.status_reason
        judged = status if at is None else judge(status, run.crash_timeout, run.updated_at,
                                                 None, at, run.attempt, run.max_attempts)
        if judged != status and run.crash_timeout is not None:
            status, reason = Status(judged), silence(run.crash_timeout)
        return RunState(
            project=run.project, run_id=run.run_id, name=run.name, experiment=run.experiment,
            status=status, status_reason=reason, tags=frozenset(run.tags),
            config=dict(run.config),
            metrics={m: _summary(c) for m, c in sorted(run.series.items())},
            fork=run.fork, created_at=_time(run.created_at), updated_at=_time(run.updated_at),
            ended_at=None if run.ended_at is None else _time(run.ended_at),
            deleted=run.deleted, version=run.version, position=run.position, notes=run.notes,
            env=dict(run.env),
            files={name: ct.ref_of(name, None, at, ref)
                   for name, (at, ref) in sorted(run.files.items())},
            worker=run.worker,
        )

    def run_states(self, project: str, *, at: float | None = None) -> list[RunState]:
        """Every run of the project, oldest first (deleted ones too); ``at`` as in
        ``run_state``."""
        return [self.run_state(p, r, at=at) for p, r in self.runs if p == project]

    def heads(self, project: str) -> frozenset[str]:
        """The run ids that head an experiment of the project."""
        return frozenset(head for (p, name) in self.experiments if p == project
                         if (head := self.experiment(p, name).head) is not None)

    def series(self, project: str, run_id: str, metric: str) -> Series:
        """The run's effective series for ``metric`` (empty if it has none)."""
        columns = self.runs[(project, run_id)].series.get(metric)
        if columns is None:
            return Series(array("q"), array("d"), array("d"))
        steps, values, times = columns
        return Series(normalize_steps(array(steps.typecode, steps)), array("d", values),
                      array("d", times))

    def entries(self, project: str, run_id: str, key: str) -> list[ct.EntryRow]:
        """The run's effective entries under ``key`` in step order (empty if none)."""
        return list(self.runs[(project, run_id)].entries.get(key, ()))

    def kind(self, project: str, run_id: str, key: str) -> str | None:
        """The kind ``key`` holds in the run (``metric``, ``text``, …), or None."""
        run = self.runs[(project, run_id)]
        return ct.METRIC if key in run.series else run.kinds.get(key)

    def experiment(self, project: str, name: str) -> Experiment:
        """The experiment's head (newest run not deleted) and history (oldest first)."""
        history = self.experiments.get((project, name), [])
        alive = [r for r in history if not self.runs[(project, r)].deleted]
        return Experiment(name, alive[-1] if alive else None, tuple(history))

    def lineage(self, project: str, run_id: str) -> Lineage:
        """Ancestors (parent first); descendants and children by depth, then creation."""
        run = self.runs[(project, run_id)]
        chain = []
        node = run
        while node.fork is not None:
            chain.append(ForkPoint(node.fork.run_id, node.fork.step))
            node = self.runs[(project, node.fork.run_id)]
        found: list[tuple[int, int, ForkPoint]] = []
        level, depth = [run], 0
        while level:
            depth += 1
            nxt = []
            for parent in level:
                for child_id in parent.children:
                    child = self.runs[(project, child_id)]
                    assert child.fork is not None
                    point = ForkPoint(child_id, child.fork.step)
                    found.append((depth, child.created_position, point))
                    nxt.append(child)
            level = nxt
        found.sort(key=lambda f: (f[0], f[1]))
        descendants = [f[2] for f in found]
        children = tuple(f[2] for f in found if f[0] == 1)
        return Lineage(run_id, tuple(chain), tuple(descendants), children)


def _cut_entries(entries: dict[str, list[ct.EntryRow]],
                 step: int | float) -> dict[str, list[ct.EntryRow]]:
    cut = {key: [row for row in rows if row[0] <= step] for key, rows in entries.items()}
    return {key: rows for key, rows in cut.items() if rows}


def _summary(columns: Columns) -> MetricSummary:
    steps, values, _ = columns
    finite = [v for v in values if v == v]
    return MetricSummary(
        last=values[-1], last_step=as_step(steps[-1]),
        min=min(finite) if finite else math.nan, max=max(finite) if finite else math.nan,
        count=len(values),
    )
