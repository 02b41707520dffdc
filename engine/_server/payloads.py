"""What an append must hold before the store sees it.

The embedded tracker checks every value at the call site; a request over HTTP may come from
anything. Each event's type must be one this release knows (an unknown type in the log would
make every later read refuse it), and each known payload must have the shape the projections
fold — or the request is refused with a ``ValidationError`` naming the bad field, and nothing
of it is written.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from typing import Any

import numpy as np

from engine._core import events as ev
from engine._core.events import NewEvent, Upcasters
from engine._core.validate import (
    MAX_STEP,
    check_key,
    check_name,
    check_reason,
    check_run_id,
    check_step,
    check_tags,
    normalize_config,
)
from engine._storage.contract import AppendRequest
from engine.errors import ValidationError

__all__ = ["check_request"]

_STATUSES = frozenset({"running", "succeeded", "failed", "aborted", "crashed"})


def check_request(request: AppendRequest, upcasters: Upcasters) -> None:
    """Refuse an append whose events the projections could not fold.

    :raises ValidationError: naming the event and the field.
    """
    if not request.events:
        raise ValidationError("an append needs at least one event", key="events")
    for event in request.events:
        if upcasters.current(event.type) is None:
            raise ValidationError(f"unknown event type {event.type!r}", key="type")
        check = _CHECKS.get(event.type)
        if check is not None:
            event.data = {**event.data, **check(event)}


def _keys(data: dict[str, Any], kind: str, *names: str) -> None:
    """The payload holds at least ``names`` (fields a later version added pass as they are:
    the projections read what they know)."""
    missing = set(names) - set(data)
    if missing:
        raise ValidationError(f"a {kind} payload needs {sorted(names)}; it lacks "
                              f"{sorted(missing)}", key="data")


def _run_created(event: NewEvent) -> dict[str, Any]:
    data = event.data
    _keys(data, event.type, "name", "experiment", "tags", "config", "fork")
    fork = data["fork"]
    if fork is not None:
        if type(fork) is not dict or set(fork) != {"run_id", "step"}:
            raise ValidationError("fork must be null or {run_id, step}", key="fork")
        fork = {"run_id": check_run_id(fork["run_id"]), "step": check_step(fork["step"], "fork")}
    return {"name": check_name(data["name"], "name"),
            "experiment": None if data["experiment"] is None
            else check_name(data["experiment"], "experiment"),
            "tags": _tags(data["tags"]), "config": _config(data["config"]), "fork": fork}


def _tags(value: object) -> list[str]:
    if type(value) is not list:
        raise ValidationError("tags must be a list of strings", key="tags")
    return check_tags(value)


def _config(value: object) -> dict[str, Any]:
    if type(value) is not dict:
        raise ValidationError("config must be an object", key="config")
    return normalize_config(value)


def _run_resumed(event: NewEvent) -> dict[str, Any]:
    _keys(event.data, event.type, "rewind_to")
    rewind = event.data["rewind_to"]
    return {"rewind_to": None if rewind is None else check_step(rewind, "rewind_to")}


def _configs_logged(event: NewEvent) -> dict[str, Any]:
    _keys(event.data, event.type, "config")
    return {"config": _config(event.data["config"])}


def _tags_changed(event: NewEvent) -> dict[str, Any]:
    _keys(event.data, event.type, "tags")
    return {"tags": _tags(event.data["tags"])}


def _status_changed(event: NewEvent) -> dict[str, Any]:
    _keys(event.data, event.type, "status", "reason")
    status = event.data["status"]
    if status not in _STATUSES:
        raise ValidationError(f"status {status!r} is not one of {sorted(_STATUSES)}",
                              key="status")
    return {"status": status, "reason": check_reason(event.data["reason"])}


def _abort_requested(event: NewEvent) -> dict[str, Any]:
    _keys(event.data, event.type, "reason")
    return {"reason": check_reason(event.data["reason"])}


def _run_deleted(event: NewEvent) -> dict[str, Any]:
    _keys(event.data, event.type)
    return {}


def _metrics_logged(event: NewEvent) -> dict[str, Any]:
    _keys(event.data, event.type, "metrics")
    metrics = event.data["metrics"]
    if type(metrics) is not dict or not metrics:
        raise ValidationError("metrics must be a non-empty object", key="metrics")
    out: dict[str, Any] = {}
    for name, column in metrics.items():
        check_key(name, "metric")
        if type(column) is not dict or set(column) != {"steps", "values", "timestamps"}:
            raise ValidationError(f"metric {name!r} must hold steps, values and timestamps",
                                  key=name)
        steps = _steps(name, column["steps"])
        values = _floats(name, column["values"], "values")
        times = _floats(name, column["timestamps"], "timestamps")
        if not len(steps) == len(values) == len(times):
            raise ValidationError(f"metric {name!r}: steps, values and timestamps differ in "
                                  "length", key=name)
        out[name] = {"steps": steps, "values": values, "timestamps": times}
    return {"metrics": out}


def _steps(name: str, value: object) -> array[Any]:
    """A metric's steps as an array: strictly increasing, each a valid step."""
    if type(value) is list:
        value = _list_column(name, value)
    if type(value) is not array or value.typecode not in "qd":
        raise ValidationError(f"metric {name!r}: steps must be a column of ints or floats",
                              key=name)
    view = np.frombuffer(value, dtype=np.int64 if value.typecode == "q" else np.float64)
    if len(view) and (not np.all(np.isfinite(view)) or view.min() < 0 or view.max() > MAX_STEP
                      or (len(view) > 1 and not np.all(np.diff(view) > 0))):
        raise ValidationError(f"metric {name!r}: steps must be finite, >= 0, <= 2**53 and "
                              "strictly increasing", key=name)
    return value


def _list_column(name: str, items: list[Any]) -> array[Any]:
    if all(type(x) is int for x in items):
        try:
            return array("q", items)
        except OverflowError:
            pass
    if not all(type(x) in (int, float) for x in items):
        raise ValidationError(f"metric {name!r}: a column holds numbers only", key=name)
    try:
        return array("d", items)
    except OverflowError:
        raise ValidationError(f"metric {name!r}: a number is too large", key=name) from None


def _floats(name: str, value: object, what: str) -> array[float]:
    if type(value) is list:
        value = _list_column(name, value)
    if type(value) is array and value.typecode == "q":
        value = array("d", value)
    if type(value) is not array or value.typecode != "d":
        raise ValidationError(f"metric {name!r}: {what} must be a column of floats", key=name)
    return value


_CHECKS: dict[str, Callable[[NewEvent], dict[str, Any]]] = {
    ev.RUN_CREATED: _run_created,
    ev.RUN_RESUMED: _run_resumed,
    ev.CONFIGS_LOGGED: _configs_logged,
    ev.METRICS_LOGGED: _metrics_logged,
    ev.TAGS_ADDED: _tags_changed,
    ev.TAGS_REMOVED: _tags_changed,
    ev.STATUS_CHANGED: _status_changed,
    ev.ABORT_REQUESTED: _abort_requested,
    ev.RUN_DELETED: _run_deleted,
}
