"""Projection rows to and from database tuples, and rows to the values users receive.

Both backends store the same columns in the same order (``tables``), so the conversions live
here once.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from engine._core.checksum import event_checksum
from engine._core.codec import decode, decode_arrays, encode
from engine._core.content import ENV_PREFIX, ref_of
from engine._core.events import Record, Upcasters
from engine._core.heartbeat import CRASHED, QUEUED, silence
from engine._core.model import ForkPoint, Lineage, MetricSummary, RunState, Status
from engine._core.series import Chunk, Summary, as_step, null_nan
from engine.errors import EngineError, IntegrityError, StorageError

from .rows import Changes, MetricRow, RunRow, Segment
from .tables import table_of

__all__ = [
    "CHUNK_COLUMNS",
    "EVENT_COLUMNS",
    "METRIC_COLUMNS",
    "RUN_COLUMNS",
    "WRITES",
    "Write",
    "change_rows",
    "chunk_values",
    "config_values",
    "lineage_of",
    "metric_row",
    "metric_values",
    "record_of",
    "run_row",
    "run_values",
    "state_of",
    "summary_of",
    "unreadable",
]

EVENT_COLUMNS = "position, event_id, project, run_id, version, type, schema_version, " \
                "recorded_at, data, checksum"
RUN_COLUMNS = table_of("runs").column_names
METRIC_COLUMNS = table_of("metrics").column_names
CHUNK_COLUMNS = table_of("series_chunks").column_names


@dataclass(frozen=True, slots=True)
class Write:
    """One kind of bulk statement that saves projection changes; each backend words it.

    ``upsert`` inserts whole rows, replacing the row with the same ``key``; ``insert`` adds
    rows; ``delete`` removes the rows whose ``columns`` equal each given tuple.
    """

    action: str
    table: str
    columns: tuple[str, ...]
    key: tuple[str, ...] = ()


_PUT_RUN = Write("upsert", "runs", RUN_COLUMNS, ("rk",))
_DROP_METRICS = Write("delete", "metrics", ("rk", "metric"))
_PUT_METRICS = Write("upsert", "metrics", METRIC_COLUMNS, ("rk", "metric"))
_PUT_CHUNKS = Write("upsert", "series_chunks", CHUNK_COLUMNS, ("rk", "metric", "epoch", "seq"))
_DROP_SEGMENTS = Write("delete", "series_segments", ("rk", "metric"))
_ADD_SEGMENTS = Write("insert", "series_segments",
                      ("rk", "metric", "idx", "src_rk", "src_epoch", "cap"))
_ADD_LINEAGE = Write("insert", "lineage", ("ancestor", "descendant", "depth", "step"))
_PUT_EXPERIMENTS = Write("upsert", "experiments", ("project", "name", "head"),
                         ("project", "name"))
_PUT_PROJECTS = Write("upsert", "projects", ("project", "runs"), ("project",))
_DROP_CONFIGS = Write("delete", "run_configs", ("rk",))
_ADD_CONFIGS = Write("insert", "run_configs", ("rk", "path", "kind", "num", "txt"))
_DROP_TAGS = Write("delete", "run_tags", ("rk",))
_ADD_TAGS = Write("insert", "run_tags", ("rk", "tag"))
_ADD_ENTRIES = Write("insert", "entries", table_of("entries").column_names)
WRITES = (_PUT_RUN, _DROP_METRICS, _PUT_METRICS, _PUT_CHUNKS, _DROP_SEGMENTS, _ADD_SEGMENTS,
          _ADD_LINEAGE, _PUT_EXPERIMENTS, _PUT_PROJECTS, _DROP_CONFIGS, _ADD_CONFIGS, _DROP_TAGS,
          _ADD_TAGS, _ADD_ENTRIES)
"""Every kind of write, for a backend to word each once."""


def change_rows(changes: Changes) -> list[tuple[Write, list[tuple[Any, ...]]]]:
    """The writes that save ``changes``, in the order they must run, with every row value
    fixed now: a fold that goes on afterwards cannot change what they write."""
    out: list[tuple[Write, list[tuple[Any, ...]]]] = []
    if changes.runs:
        out.append((_PUT_RUN, [run_values(r) for r in changes.runs.values()]))
    if changes.dropped_metrics:
        out.append((_DROP_METRICS, list(changes.dropped_metrics)))
    if changes.metrics:
        out.append((_PUT_METRICS, [metric_values(m) for m in changes.metrics.values()]))
    if changes.chunks:
        out.append((_PUT_CHUNKS, [chunk_values(rk, metric, chunk)
                                  for (rk, metric, _, _), chunk in changes.chunks.items()]))
    if changes.segments:
        out.append((_DROP_SEGMENTS, list(changes.segments)))
        out.append((_ADD_SEGMENTS, [row for (rk, m), segs in changes.segments.items()
                                    for row in segment_values(rk, m, segs)]))
    if changes.lineage:
        out.append((_ADD_LINEAGE, list(changes.lineage)))
    if changes.experiments:
        out.append((_PUT_EXPERIMENTS, [(p, n, h) for (p, n), h in changes.experiments.items()]))
    if changes.projects:
        out.append((_PUT_PROJECTS, list(changes.projects.items())))
    if changes.configs:
        out.append((_DROP_CONFIGS, [(rk,) for rk in changes.configs]))
        out.append((_ADD_CONFIGS, [v for r in changes.configs.values()
                                   for v in config_values(r)]))
    if changes.tags:
        out.append((_DROP_TAGS, [(rk,) for rk in changes.tags]))
        out.append((_ADD_TAGS, [(rk, t) for rk, r in changes.tags.items() for t in r.tags]))
    if changes.entries:
        out.append((_ADD_ENTRIES, changes.entries))
    return out


def record_of(row: Sequence[Any], arrays: bool, upcasters: Upcasters) -> Record:
    """A record from an ``events`` row in ``EVENT_COLUMNS`` order, its payload upcast to the
    current version of its type (``arrays``: metric columns stay arrays).

    :raises EngineError: for an event whose type or schema version is newer than this
        release reads.
    :raises IntegrityError: for a row that does not match its checksum (rows written before
        events had one carry none).
    :raises StorageError: for a payload that does not decode.
    """
    position, raw_id, project, run_id, version, kind, schema, at, data, checksum = row
    if checksum is not None and checksum != event_checksum(
            position, raw_id, project, run_id, version, kind, schema, at, data):
        raise IntegrityError(f"the event at position {position} does not match its checksum: "
                             "the database is damaged (`kittiwake check` lists what is)",
                             where=f"position {position}")
    with unreadable(f"the event at position {position}"):
        payload = decode_arrays(data) if arrays else decode(data)
    if schema != upcasters.current(kind):  # older (lift it), or newer or unknown (refused)
        payload = upcasters.upcast(kind, schema, payload, position=position)
    return Record(position, raw_id, project, run_id, version, kind, at, payload)


@contextmanager
def unreadable(what: str) -> Iterator[None]:
    """Stored bytes that do not decode are damage, not a mistake of the caller's: raise a
    ``StorageError`` naming what held them, chained to the decoding error."""
    try:
        yield
    except EngineError:
        raise
    except (ValueError, TypeError, LookupError, OverflowError) as exc:
        raise StorageError(f"{what} cannot be decoded: the database may be damaged "
                           f"({type(exc).__name__}: {exc})") from exc


def run_values(row: RunRow) -> tuple[Any, ...]:
    """The run row as stored, in ``RUN_COLUMNS`` order."""
    return (
        row.rk, row.project, row.run_id, row.name, row.experiment, row.status,
        row.status_reason, encode(row.tags), encode(row.config), row.fork_rk, row.fork_run_id,
        row.fork_step, row.created_at, row.updated_at, row.ended_at, int(row.deleted),
        row.version, row.position, row.epoch, row.floor, row.started_position,
        row.abort_position, row.abort_reason, row.heartbeat_interval, row.crash_timeout,
        row.queue, None if row.job is None else encode(row.job), row.attempt, row.max_attempts,
        row.worker, row.notes, _packed(row.env), _packed(row.files), _packed(row.kinds),
        _packed(row.entry_segments),
    )


def _packed(value: dict[str, Any] | list[Any]) -> bytes | None:
    return encode(value) if value else None


def run_row(values: Sequence[Any]) -> RunRow:
    """The inverse of :func:`run_values`."""
    v = list(values)
    v[7] = decode(v[7])
    v[8] = decode(v[8])
    v[15] = bool(v[15])
    if v[26] is not None:
        v[26] = decode(v[26])
    row = RunRow(*v[:30])
    row.notes = v[30] or ""
    env, files, kinds, segments = v[31:35]
    row.env = decode(env) if env is not None else {}
    row.files = decode(files) if files is not None else {}
    row.kinds = decode(kinds) if kinds is not None else {}
    row.entry_segments = decode(segments) if segments is not None else []
    return row


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
    out: list[tuple[Any, ...]] = []
    items = list(row.config.items())
    items.extend((ENV_PREFIX + path, value) for path, value in row.env.items())
    for path, value in items:
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
        elif isinstance(value, (list, tuple)):
            out.append((row.rk, path, "l", None, orjson.dumps(list(value)).decode()))
    return out


def summary_of(count: int, last: Any, last_step: Any, low: Any, high: Any) -> MetricSummary:
    """A ``MetricSummary`` from stored columns (NULL reads back as NaN)."""
    return MetricSummary(null_nan(last), as_step(last_step), null_nan(low), null_nan(high), count)


def lineage_of(run_id: str, ancestors: Iterable[Sequence[Any]],
               descendants: Iterable[Sequence[Any]]) -> Lineage:
    """The ``Lineage`` of a run from rows ``(ancestor run_id, step)``, nearest first, and
    ``(descendant run_id, fork step, depth)``, by depth."""
    below = [tuple(d) for d in descendants]
    return Lineage(
        run_id,
        tuple(ForkPoint(a, s) for a, s in ancestors),
        tuple(ForkPoint(d, s) for d, s, _ in below),
        tuple(ForkPoint(d, s) for d, s, depth in below if depth == 1),
    )


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def state_of(row: RunRow, metrics: dict[str, MetricSummary]) -> RunState:
    """The ``RunState`` users receive for a run row and its metric summaries (a row read
    with its status judged, ``engine._core.heartbeat``: a crash judged but not recorded
    gives the reason a reaper would)."""
    created = _time(row.created_at)
    updated = _time(row.updated_at)
    assert created is not None and updated is not None
    reason = row.status_reason
    if row.status in (CRASHED, QUEUED) and reason is None and row.crash_timeout is not None:
        reason = silence(row.crash_timeout)  # judged crashed by a read, not yet recorded
    return RunState(
        project=row.project, run_id=row.run_id, name=row.name, experiment=row.experiment,
        status=Status(row.status), status_reason=reason, tags=frozenset(row.tags),
        config=row.config, metrics=dict(sorted(metrics.items())),
        fork=None if row.fork_run_id is None or row.fork_step is None
        else ForkPoint(row.fork_run_id, row.fork_step),
        created_at=created, updated_at=updated, ended_at=_time(row.ended_at),
        deleted=row.deleted, version=row.version, position=row.position, notes=row.notes,
        env=dict(row.env), files={key: ref_of(key, None, plain["at"], plain)
                                  for key, plain in sorted(row.files.items())},
        worker=row.worker,
    )


def _null(value: float) -> float | None:
    return None if value != value else value
