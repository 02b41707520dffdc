"""Projection rows to and from database tuples, and rows to the values users receive.

Both backends store the same columns in the same order, so the conversions live here once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from ._codec import decode, encode
from ._fold import as_step
from ._model import ForkPoint, MetricSummary, RunState, Status
from ._projector import MetricRow, RunRow, Segment
from ._series import Chunk, Summary, null_nan

__all__ = [
    "CHUNK_COLUMNS",
    "METRIC_COLUMNS",
    "RUN_COLUMNS",
    "chunk_values",
    "config_values",
    "metric_row",
    "metric_values",
    "run_row",
    "run_values",
    "state_of",
    "summary_of",
]

RUN_COLUMNS = (
    "rk", "project", "run_id", "name", "experiment", "status", "status_reason", "tags", "config",
    "fork_rk", "fork_run_id", "fork_step", "created_at", "updated_at", "ended_at", "deleted",
    "version", "position", "epoch", "floor", "started_position", "abort_position",
    "abort_reason",
)
METRIC_COLUMNS = ("rk", "metric", "count", "last", "last_step", "min", "max", "tail_epoch",
                  "tail_seq")
CHUNK_COLUMNS = ("rk", "metric", "epoch", "seq", "n", "first_step", "last_step", "last_value",
                 "vmin", "vmax", "blocks", "steps", "vals", "times")


def run_values(row: RunRow) -> tuple[Any, ...]:
    """The run row as stored, in ``RUN_COLUMNS`` order."""
    return (
        row.rk, row.project, row.run_id, row.name, row.experiment, row.status,
        row.status_reason, encode(row.tags), encode(row.config), row.fork_rk, row.fork_run_id,
        row.fork_step, row.created_at, row.updated_at, row.ended_at, int(row.deleted),
        row.version, row.position, row.epoch, row.floor, row.started_position,
        row.abort_position, row.abort_reason,
    )


def run_row(values: Sequence[Any]) -> RunRow:
    """The inverse of :func:`run_values`."""
    v = list(values)
    v[7] = decode(v[7])
    v[8] = decode(v[8])
    v[15] = bool(v[15])
    return RunRow(*v)


def metric_values(row: MetricRow) -> tuple[Any, ...]:
    """The metric row as stored, in ``METRIC_COLUMNS`` order (NaN as NULL)."""
    s = row.summary
    return (row.rk, row.metric, s.count, _null(s.last), s.last_step, _null(s.min), _null(s.max),
            row.tail_epoch, row.tail_seq)


def metric_row(values: Sequence[Any]) -> MetricRow:
    """The inverse of :func:`metric_values`."""
    rk, metric, count, last, last_step, low, high, tail_epoch, tail_seq = values
    return MetricRow(rk, metric, Summary(count, null_nan(last), last_step, null_nan(low),
                                         null_nan(high)), tail_epoch, tail_seq)


def chunk_values(rk: int, metric: str, chunk: Chunk) -> tuple[Any, ...]:
    """The chunk as stored, in ``CHUNK_COLUMNS`` order."""
    return (rk, metric, *chunk.row())


def segment_values(rk: int, metric: str, segments: Iterable[Segment]) -> list[tuple[Any, ...]]:
    """Rows of ``series_segments`` for one metric of one run."""
    return [(rk, metric, i, s.rk, s.epoch, s.cap) for i, s in enumerate(segments)]


def config_values(row: RunRow) -> list[tuple[Any, ...]]:
    """Rows of ``run_configs`` for a run: ``(rk, path, kind, num, txt)``.

    ``kind`` is ``n`` (int or float: ``num``; NaN as NULL), ``b`` (bool: ``num`` 0 or 1),
    ``s`` (str: ``txt``), ``t`` (datetime: ``txt`` in ISO 8601, in UTC when aware, and
    ``num`` its POSIX time, a naive one taken as UTC), ``l`` (list of str: ``txt`` as a JSON
    array) or ``z`` (None).
    """
    out = []
    for path, value in row.config.items():
        if value is None:
            out.append((row.rk, path, "z", None, None))
        elif isinstance(value, bool):
            out.append((row.rk, path, "b", int(value), None))
        elif isinstance(value, (int, float)):
            out.append((row.rk, path, "n", _null(float(value)) if isinstance(value, float)
                        else value, None))
        elif isinstance(value, str):
            out.append((row.rk, path, "s", None, value))
        elif isinstance(value, datetime):
            # A naive datetime is taken as UTC, as queries read a date without an offset.
            aware = value.astimezone(UTC) if value.tzinfo is not None else value
            seconds = aware.timestamp() if aware.tzinfo else value.replace(tzinfo=UTC).timestamp()
            out.append((row.rk, path, "t", seconds, aware.isoformat()))
        else:
            out.append((row.rk, path, "l", None, orjson.dumps(list(value)).decode()))
    return out


def summary_of(count: int, last: Any, last_step: Any, low: Any, high: Any) -> MetricSummary:
    """A ``MetricSummary`` from stored columns (NULL reads back as NaN)."""
    return MetricSummary(null_nan(last), as_step(last_step), null_nan(low), null_nan(high), count)


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def state_of(row: RunRow, metrics: dict[str, MetricSummary]) -> RunState:
    """The ``RunState`` users receive for a run row and its metric summaries."""
    created = _time(row.created_at)
    updated = _time(row.updated_at)
    assert created is not None and updated is not None
    return RunState(
        project=row.project, run_id=row.run_id, name=row.name, experiment=row.experiment,
        status=Status(row.status), status_reason=row.status_reason, tags=frozenset(row.tags),
        config=row.config, metrics=dict(sorted(metrics.items())),
        fork=None if row.fork_run_id is None else ForkPoint(row.fork_run_id, row.fork_step),
        created_at=created, updated_at=updated, ended_at=_time(row.ended_at),
        deleted=row.deleted, version=row.version, position=row.position,
    )


def _null(value: float) -> float | None:
    return None if value != value else value
