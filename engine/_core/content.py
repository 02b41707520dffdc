"""What a run records besides metrics and configs, as the log holds it: the kinds of keys,
the entries of the stepped kinds, and file references in plain form.

A key has one kind for the life of a run and its forks: a metric, a text series, a file
series, a histogram series, a confusion-matrix series, or a file attribute (an upload). The
stepped kinds (all but metrics and file attributes) are *entries*: a value at a step, with the
time it was logged. Their events all read as ``(key, kind, [(step, timestamp, value)])``
through :func:`entries_of`, so the pure fold and the database projections agree on them by
construction.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from . import events as ev
from .files import FileRef

__all__ = [
    "CONFUSION_MATRIX",
    "ENTRY_EVENTS",
    "ENV_PREFIX",
    "FILE",
    "HISTOGRAM",
    "METRIC",
    "TEXT",
    "UPLOAD",
    "EntryRow",
    "entries_of",
    "file_plain",
    "ref_of",
]

METRIC = "metric"
TEXT = "text"
FILE = "file"
HISTOGRAM = "histogram"
CONFUSION_MATRIX = "confusion matrix"
UPLOAD = "file attribute"

ENV_PREFIX = "\x01env/"
"""Where a run's env values sit among its config paths in the runs-table query machinery
(``run_configs`` rows, ``Field("config", …)``): under this prefix, which no config path can
start with (paths refuse control characters), so ``env.<path>`` reuses all of it."""

EntryRow = tuple[int | float, float, Any]
"""One entry: ``(step, timestamp in seconds, plain value)``."""

ENTRY_EVENTS: Mapping[str, tuple[str, str]] = {
    ev.TEXT_LOGGED: ("text", TEXT),
    ev.FILES_LOGGED: ("files", FILE),
    ev.HISTOGRAMS_LOGGED: ("histograms", HISTOGRAM),
    ev.CONFUSION_MATRICES_LOGGED: ("matrices", CONFUSION_MATRIX),
}
"""Event type → (payload field, kind) of every event that logs entries."""


def entries_of(kind_of_event: str, data: Mapping[str, Any]) -> Iterator[
        tuple[str, str, list[EntryRow]]]:
    """``(key, kind, entries in step order)`` for each key an entries event logs."""
    field, kind = ENTRY_EVENTS[kind_of_event]
    for key, logged in data[field].items():
        if kind == TEXT:
            rows = list(zip(logged["steps"], logged["timestamps"], logged["values"],
                            strict=True))
        else:
            rows = [(item["step"], item["timestamp"],
                     {k: v for k, v in item.items() if k not in ("step", "timestamp")})
                    for item in logged]
        yield key, kind, rows


def file_plain(ref: FileRef) -> dict[str, Any]:
    """A file reference as an event keeps it (without key, step and timestamp; optional
    fields only when set)."""
    out: dict[str, Any] = {"name": ref.name, "digest": ref.digest, "size": ref.size,
                           "media_type": ref.media_type}
    for field in ("caption", "width", "height"):
        value = getattr(ref, field)
        if value is not None:
            out[field] = value
    return out


def ref_of(key: str, step: int | float | None, timestamp: float,
           plain: Mapping[str, Any]) -> FileRef:
    """The ``FileRef`` a stored plain form stands for."""
    return FileRef(key=key, step=step, name=plain.get("name"), digest=plain["digest"],
                   size=plain["size"], media_type=plain["media_type"],
                   timestamp=datetime.fromtimestamp(timestamp, UTC),
                   caption=plain.get("caption"), width=plain.get("width"),
                   height=plain.get("height"))

