"""The HTTP API's values, both ways: the storage contract's arguments and answers as the JSON
of ``engine._core.wire``, and errors as typed bodies.

An error body is ``{"error": {"type": "RunExistsError", "message": …, "field": …}}``; the
client raises the same ``engine.errors`` type from it, so a caller of the remote tracker
catches what it would catch on the embedded one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine._core.events import NewEvent, Record
from engine._core.files import FileRef
from engine._core.model import (
    Experiment,
    ForkPoint,
    Lineage,
    MetricSummary,
    RunState,
    Series,
    Status,
)
from engine._query.tree import MetricStats, RunGroup
from engine._storage.contract import (
    AppendRequest,
    EventFilter,
    JobRow,
    RunControl,
    StaleRun,
    TokenRow,
)
from engine.errors import (
    AuthError,
    BackpressureError,
    ClosedError,
    ConcurrencyError,
    EngineError,
    FileSourceError,
    IntegrityError,
    QuerySyntaxError,
    RunExistsError,
    RunNotFoundError,
    StorageError,
    ValidationError,
)

__all__ = [
    "STATUS_OF",
    "error_body",
    "error_from",
    "new_event_from",
    "new_event_to",
    "record_from",
    "record_to",
    "request_from",
    "request_to",
]

# Each error type, the HTTP status it is answered with.
STATUS_OF: dict[type[EngineError], int] = {
    FileSourceError: 422,
    ValidationError: 422,
    QuerySyntaxError: 400,
    RunNotFoundError: 404,
    RunExistsError: 409,
    ConcurrencyError: 409,
    BackpressureError: 429,
    AuthError: 401,
    IntegrityError: 500,
    StorageError: 503,
    ClosedError: 503,
}
_BY_NAME: dict[str, type[EngineError]] = {t.__name__: t for t in STATUS_OF}


def error_body(exc: EngineError) -> dict[str, Any]:
    """The JSON that names ``exc``: its type, message and, where it has one, the bad field."""
    body: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, ValidationError):
        body["field"] = exc.key
    elif isinstance(exc, QuerySyntaxError):
        body["field"] = "where"
        body["message"] = exc.message
        body["query"] = exc.query
        body["position"] = exc.position
    elif isinstance(exc, IntegrityError):
        body["where"] = exc.where
    return {"error": body}


def error_from(body: Any, status: int) -> EngineError:
    """The error a server's error body names (``StorageError`` when it names none the client
    knows: the server failed, and what was sent is kept and sent again)."""
    info = body.get("error") if isinstance(body, dict) else None
    if not isinstance(info, dict):
        return StorageError(f"the server answered {status} without saying why")
    kind = _BY_NAME.get(str(info.get("type")))
    message = str(info.get("message", ""))
    if kind is None:
        return StorageError(f"the server answered {status}: {message}")
    if issubclass(kind, ValidationError):
        field = info.get("field")
        return kind(message, key=field if isinstance(field, str) else None)
    if kind is QuerySyntaxError:
        return QuerySyntaxError(message, str(info.get("query", "")),
                                int(info.get("position", 0)))
    if kind is IntegrityError:
        where = info.get("where")
        return IntegrityError(message, where=where if isinstance(where, str) else None)
    return kind(message)


# Events ------------------------------------------------------------------------------------

def new_event_to(event: NewEvent) -> list[Any]:
    return [event.type, event.id.hex(), event.data]


def new_event_from(value: Any) -> NewEvent:
    kind, hex_id, data = value
    if type(kind) is not str or type(data) is not dict:
        raise ValueError("an event is [type, id, data]")
    raw = bytes.fromhex(hex_id)
    if len(raw) != 16:
        raise ValueError(f"an event id is 16 bytes, not {len(raw)}")
    return NewEvent(kind, data, raw)


def request_to(request: AppendRequest) -> dict[str, Any]:
    return {"project": request.project, "run_id": request.run_id,
            "events": [new_event_to(e) for e in request.events],
            "expected_version": request.expected_version}


def request_from(value: Any) -> AppendRequest:
    project, run_id = value["project"], value["run_id"]
    expected = value.get("expected_version")
    if type(project) is not str or type(run_id) is not str:
        raise ValueError("project and run_id must be strings")
    if expected is not None and type(expected) is not int:
        raise ValueError("expected_version must be an int or null")
    return AppendRequest(project, run_id, [new_event_from(e) for e in value["events"]],
                         expected)


def record_to(record: Record) -> list[Any]:
    return [record.position, record.id.hex(), record.project, record.run_id, record.version,
            record.type, record.timestamp, record.data]


def receipt_to(record: Record) -> list[Any]:
    """A record without its payload: what an append answers with (the client has the
    payload: it sent it)."""
    return [record.position, record.id.hex(), record.project, record.run_id, record.version,
            record.type, record.timestamp]


def receipt_from(value: list[Any], data: dict[bytes, dict[str, Any]]) -> Record:
    """The record a receipt stands for, its payload taken from what was sent (``data``, by
    event id)."""
    position, hex_id, project, run_id, version, kind, timestamp = value
    raw = bytes.fromhex(hex_id)
    return Record(position, raw, project, run_id, version, kind, float(timestamp), data[raw])


def record_from(value: list[Any]) -> Record:
    position, hex_id, project, run_id, version, kind, timestamp, data = value
    return Record(position, bytes.fromhex(hex_id), project, run_id, version, kind,
                  float(timestamp), data)


def filter_to(where: EventFilter) -> dict[str, Any]:
    return {"project": where.project,
            "runs": None if where.run_ids is None else sorted(where.run_ids),
            "types": None if where.types is None else sorted(where.types)}


def filter_from(value: Any) -> EventFilter:
    def names(v: Any) -> frozenset[str] | None:
        if v is None:
            return None
        if type(v) is not list or any(type(x) is not str for x in v):
            raise ValueError("a filter holds lists of strings")
        return frozenset(v)

    project = value.get("project")
    if project is not None and type(project) is not str:
        raise ValueError("project must be a string")
    return EventFilter(project, names(value.get("runs")), names(value.get("types")))


# Projections -------------------------------------------------------------------------------

def _summary_to(s: MetricSummary) -> list[Any]:
    return [s.last, s.last_step, s.min, s.max, s.count]


def state_to(state: RunState) -> dict[str, Any]:
    return {
        "project": state.project, "run_id": state.run_id, "name": state.name,
        "experiment": state.experiment, "status": state.status.value,
        "status_reason": state.status_reason, "tags": sorted(state.tags),
        "config": state.config,
        "metrics": {k: _summary_to(v) for k, v in state.metrics.items()},
        "fork": None if state.fork is None else [state.fork.run_id, state.fork.step],
        "created_at": state.created_at, "updated_at": state.updated_at,
        "ended_at": state.ended_at, "deleted": state.deleted, "version": state.version,
        "position": state.position, "notes": state.notes, "env": state.env,
        "files": {k: file_to(f) for k, f in state.files.items()}, "worker": state.worker,
    }


def file_to(f: FileRef) -> list[Any]:
    return [f.key, f.step, f.name, f.digest, f.size, f.media_type, f.timestamp, f.caption,
            f.width, f.height]


def file_from(v: list[Any]) -> FileRef:
    key, step, name, digest, size, media_type, timestamp, caption, width, height = v
    return FileRef(key=key, step=step, name=name, digest=digest, size=size,
                   media_type=media_type, timestamp=_when(timestamp), caption=caption,
                   width=width, height=height)


def state_from(v: dict[str, Any]) -> RunState:
    fork = v["fork"]
    return RunState(
        project=v["project"], run_id=v["run_id"], name=v["name"], experiment=v["experiment"],
        status=Status(v["status"]), status_reason=v["status_reason"],
        tags=frozenset(v["tags"]), config=v["config"],
        metrics={k: MetricSummary(*m) for k, m in v["metrics"].items()},
        fork=None if fork is None else ForkPoint(fork[0], fork[1]),
        created_at=_when(v["created_at"]), updated_at=_when(v["updated_at"]),
        ended_at=None if v["ended_at"] is None else _when(v["ended_at"]),
        deleted=v["deleted"], version=v["version"], position=v["position"],
        notes=v["notes"], env=v["env"],
        files={k: file_from(f) for k, f in v["files"].items()}, worker=v.get("worker"))


def _when(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def series_to(series: Series) -> list[Any]:
    return [series.steps, series.values, series.timestamps]


def series_from(value: list[Any]) -> Series:
    steps, values, timestamps = value
    return Series(steps, values, timestamps)


def experiment_to(e: Experiment) -> dict[str, Any]:
    return {"name": e.name, "head": e.head, "history": list(e.history)}


def experiment_from(v: dict[str, Any]) -> Experiment:
    return Experiment(v["name"], v["head"], tuple(v["history"]))


def _points(points: tuple[ForkPoint, ...]) -> list[list[Any]]:
    return [[p.run_id, p.step] for p in points]


def lineage_to(lineage: Lineage) -> dict[str, Any]:
    return {"run_id": lineage.run_id, "ancestors": _points(lineage.ancestors),
            "descendants": _points(lineage.descendants),
            "children": _points(lineage.children)}


def lineage_from(v: dict[str, Any]) -> Lineage:
    def points(items: list[list[Any]]) -> tuple[ForkPoint, ...]:
        return tuple(ForkPoint(r, s) for r, s in items)

    return Lineage(v["run_id"], points(v["ancestors"]), points(v["descendants"]),
                   points(v["children"]))


def group_to(group: RunGroup) -> dict[str, Any]:
    return {"key": group.key, "count": group.count,
            "metrics": {k: [s.count, s.mean, s.min, s.max] for k, s in group.metrics.items()}}


def group_from(v: dict[str, Any]) -> RunGroup:
    return RunGroup(v["key"], v["count"],
                    {k: MetricStats(*s) for k, s in v["metrics"].items()})


def stale_to(s: StaleRun) -> list[Any]:
    return [s.project, s.run_id, s.version, s.last_seen, s.crash_timeout, s.attempt,
            s.max_attempts]


def stale_from(v: list[Any]) -> StaleRun:
    return StaleRun(*v)


def control_to(key: tuple[str, str], c: RunControl) -> list[Any]:
    return [key[0], key[1], c.started_position, c.abort_position, c.abort_reason, c.status,
            c.floor, c.kinds]


def control_from(v: list[Any]) -> tuple[tuple[str, str], RunControl]:
    project, run_id, *rest = v
    return (project, run_id), RunControl(*rest)


def job_to(j: JobRow) -> list[Any]:
    return [j.run_id, j.version, j.status, j.queue, j.spec, j.attempt, j.max_attempts,
            j.worker, j.started_position, j.created_at]


def job_from(v: list[Any]) -> JobRow:
    return JobRow(*v)


def token_to(t: TokenRow) -> list[Any]:
    return [t.id, t.project, t.role, t.digest, t.created_at, t.expires_at, t.revoked_at]


def token_from(v: list[Any]) -> TokenRow:
    return TokenRow(*v)
