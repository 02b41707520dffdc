"""The event vocabulary: type names, payload shapes, schema versions and upcasters.

Payloads (schema version 1)::

    RunCreated      {"name", "experiment", "tags": [..], "config": {path: value},
                     "fork": {"run_id", "step"} | None,
                     "heartbeat_interval"?, "crash_timeout"?}
    RunResumed      {"rewind_to": step | None, "heartbeat_interval"?, "crash_timeout"?}
    ConfigsLogged   {"config": {path: value}}
    MetricsLogged   {"metrics": {name: {"steps": [..], "values": [..], "timestamps": [..]}}}
    TagsAdded       {"tags": [..]}
    TagsRemoved     {"tags": [..]}
    StatusChanged   {"status": "succeeded" | "failed" | "aborted" | "crashed", "reason"}
    AbortRequested  {"reason"}
    RunDeleted      {}
    NotesSet        {"notes": str}
    TextLogged      {"text": {key: {"steps": [..], "values": [str], "timestamps": [..]}}}
    FilesLogged     {"files": {key: [{"step", "timestamp", "name", "digest", "size",
                                      "media_type", "caption"?, "width"?, "height"?}]}}
    FilesUploaded   {"files": {key: {"timestamp", "name", "digest", ...}}}
    HistogramsLogged {"histograms": {key: [{"step", "timestamp", "edges", "counts"}]}}
    ConfusionMatricesLogged {"matrices": {key: [{"step", "timestamp", "labels", "matrix"}]}}
    EnvCaptured     {"env": {path: value}}
    JobClaimed      {"worker", "host", "pid", "attempt", "heartbeat_interval",
                     "crash_timeout"}
    JobRequeued     {"reason", "attempt": the claims that count against max_attempts}

A RunCreated with a ``"job"`` key ({"command": [..], "queue", "env": {..}, "cwd",
"max_attempts"}) creates a run ``queued`` rather than ``running``: a job waiting for a
worker. ``JobClaimed`` (appended with ``expected_version``, so one worker wins) starts it,
``JobRequeued`` hands a job whose worker went away back to its queue.

Keys marked ``?`` may be absent: a release that knew nothing of them wrote none, and a read
gives an absent key its old meaning (``heartbeat_interval`` and ``crash_timeout`` are the
run's heartbeat promise, ``engine._core.heartbeat``; without them a run stays ``running``
until a reaper records its crash). Adding such a key needs no new schema version.

Events are never rewritten. Every row keeps the schema version its payload was written at, and
reads lift old payloads through a chain of upcasters before anything else sees them.

Event types belong to the engine, so the registry does too: when a release changes a payload's
shape, it raises the type's number in ``CURRENT_VERSIONS`` and adds the step from the old
version to ``UPCASTS``. Every tracker checks the registry for gaps when it starts (and the test
suite does too), and a reader refuses an event whose type or version is newer than it knows,
rather than misread a log a newer release wrote.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine.errors import EngineError

from .codec import plain
from .ids import event_id, event_id_str
from .model import Event

__all__ = [
    "ABORT_REQUESTED",
    "CONFIGS_LOGGED",
    "METRICS_LOGGED",
    "RUN_CREATED",
    "RUN_DELETED",
    "RUN_RESUMED",
    "STATUS_CHANGED",
    "TAGS_ADDED",
    "TAGS_REMOVED",
    "UPCASTS",
    "CONFUSION_MATRICES_LOGGED",
    "CONTENT_TYPES",
    "ENV_CAPTURED",
    "FILES_LOGGED",
    "FILES_UPLOADED",
    "HISTOGRAMS_LOGGED",
    "JOB_CLAIMED",
    "JOB_REQUEUED",
    "NOTES_SET",
    "TEXT_LOGGED",
    "NewEvent",
    "Record",
    "Upcasters",
    "default_upcasters",
]

RUN_CREATED = "RunCreated"
RUN_RESUMED = "RunResumed"
CONFIGS_LOGGED = "ConfigsLogged"
METRICS_LOGGED = "MetricsLogged"
TAGS_ADDED = "TagsAdded"
TAGS_REMOVED = "TagsRemoved"
STATUS_CHANGED = "StatusChanged"
ABORT_REQUESTED = "AbortRequested"
RUN_DELETED = "RunDeleted"
JOB_CLAIMED = "JobClaimed"
JOB_REQUEUED = "JobRequeued"
# What a run records besides metrics and configs (see ``content``).
NOTES_SET = "NotesSet"
TEXT_LOGGED = "TextLogged"
FILES_LOGGED = "FilesLogged"
FILES_UPLOADED = "FilesUploaded"
HISTOGRAMS_LOGGED = "HistogramsLogged"
CONFUSION_MATRICES_LOGGED = "ConfusionMatricesLogged"
ENV_CAPTURED = "EnvCaptured"
CONTENT_TYPES = frozenset({NOTES_SET, TEXT_LOGGED, FILES_LOGGED, FILES_UPLOADED,
                           HISTOGRAMS_LOGGED, CONFUSION_MATRICES_LOGGED, ENV_CAPTURED})

CURRENT_VERSIONS: Mapping[str, int] = {
    RUN_CREATED: 1,
    RUN_RESUMED: 1,
    CONFIGS_LOGGED: 1,
    METRICS_LOGGED: 1,
    TAGS_ADDED: 1,
    TAGS_REMOVED: 1,
    STATUS_CHANGED: 1,
    ABORT_REQUESTED: 1,
    RUN_DELETED: 1,
    JOB_CLAIMED: 1,
    JOB_REQUEUED: 1,
    NOTES_SET: 1,
    TEXT_LOGGED: 1,
    FILES_LOGGED: 1,
    FILES_UPLOADED: 1,
    HISTOGRAMS_LOGGED: 1,
    CONFUSION_MATRICES_LOGGED: 1,
    ENV_CAPTURED: 1,
}

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

UPCASTS: Mapping[tuple[str, int], Upcaster] = {}
"""The engine's own upcasters: ``(type, from_version)`` → the function that lifts a payload
of that version to the next. Empty while every type is at version 1."""


@dataclass(slots=True)
class NewEvent:
    """An event not yet in the log. Its id is fixed at creation so a retry is idempotent."""

    type: str
    data: dict[str, Any]
    id: bytes = field(default_factory=event_id)


@dataclass(slots=True)
class Record:
    """An event in internal form, committed or committing; ``data`` may hold arrays."""

    position: int
    id: bytes
    project: str
    run_id: str
    version: int
    type: str
    timestamp: float
    data: dict[str, Any]
    public: Event | None = field(default=None, repr=False, compare=False)

    def to_event(self) -> Event:
        """The public view, with arrays in the payload turned into lists. Made once: every
        subscriber of a commit receives the same object."""
        if self.public is None:
            self.public = Event(self.position, event_id_str(self.id), self.project,
                                self.run_id, self.version, self.type,
                                datetime.fromtimestamp(self.timestamp, UTC), plain(self.data))
        return self.public


class Upcasters:
    """Schema versions per event type, and the functions that lift old payloads.

    ``register(type, from_version, fn)`` adds the step from ``from_version`` to the next one.
    """

    def __init__(self, versions: Mapping[str, int] = CURRENT_VERSIONS,
                 steps: Mapping[tuple[str, int], Upcaster] | None = None) -> None:
        self._versions = dict(versions)
        self._steps: dict[tuple[str, int], Upcaster] = dict(steps or {})

    def version(self, event_type: str) -> int:
        """The schema version new events of this type are written with (1 for unknown types)."""
        return self._versions.get(event_type, 1)

    def register(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """Register the step that lifts ``event_type`` payloads from ``from_version``.

        :raises EngineError: for a version below 1 or a step registered twice.
        """
        if type(from_version) is not int or from_version < 1:
            raise EngineError(f"upcaster for {event_type}: from_version must be an int >= 1, "
                              f"not {from_version!r}")
        if (event_type, from_version) in self._steps:
            raise EngineError(f"an upcaster for {event_type} from version {from_version} is "
                              "already registered")
        self._steps[(event_type, from_version)] = upcaster

    def check(self) -> None:
        """Refuse a registry with gaps: every old version must have a step to the next.

        :raises EngineError: naming the first missing or superfluous step.
        """
        for event_type, current in self._versions.items():
            for version in range(1, current):
                if (event_type, version) not in self._steps:
                    raise EngineError(
                        f"no upcaster for {event_type} from version {version} to {version + 1}"
                    )
        for event_type, version in self._steps:
            newest = self._versions.get(event_type)
            if newest is None:
                raise EngineError(f"upcaster for {event_type}, a type with no current version")
            if version >= newest:
                raise EngineError(
                    f"upcaster for {event_type} from version {version} is past the current "
                    f"version {newest}"
                )

    def current(self, event_type: str) -> int | None:
        """The version this registry reads ``event_type`` at; None for a type it does not
        know."""
        return self._versions.get(event_type)

    def upcast(self, event_type: str, version: int, data: dict[str, Any], *,
               position: int | None = None) -> dict[str, Any]:
        """Lift a payload written at ``version`` to the current version of its type.

        :raises EngineError: when the type or the version is newer than this registry knows:
            a newer release wrote it, and reading it as something else would be wrong.
        """
        current = self._versions.get(event_type)
        where = "an event" if position is None else f"the event at position {position}"
        if current is None:
            raise EngineError(
                f"{where} has type {event_type!r} (schema version {version}), which this "
                "release does not know; upgrade kittiwake to read this log")
        if version > current:
            raise EngineError(
                f"{where} is {event_type} at schema version {version}, newer than this release "
                f"reads (up to {current}); upgrade kittiwake to read this log")
        while version < current:
            data = self._steps[(event_type, version)](data)
            version += 1
        return data


def default_upcasters() -> Upcasters:
    """The registry this release reads its own log with: ``CURRENT_VERSIONS`` and
    ``UPCASTS``."""
    return Upcasters(CURRENT_VERSIONS, UPCASTS)
