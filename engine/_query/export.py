"""Runs as a flat table: CSV, JSON lines, and a pandas DataFrame.

The table is what neptune's ``fetch_runs_table`` users expect: one row per run and one column
per run field, per config path and per metric aggregate. Column names are the query
language's field names (``config.optimizer/lr``, ``metrics.train/loss.min``), so a column can
be pasted into ``where``, ``order_by`` or ``columns`` as it is.
"""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from engine._core.codec import jsonable, non_finite_name
from engine._core.content import ENV_PREFIX
from engine._core.model import RunState

from .parser import parse_fields
from .tree import AGGREGATES, TIME_FIELDS, Field

if TYPE_CHECKING:  # pragma: no cover
    import pandas

__all__ = ["DEFAULT_COLUMNS", "RunsTable", "cell", "parse_columns"]

DEFAULT_COLUMNS = ("run_id", "name", "experiment", "status", "status_reason", "tags",
                   "fork_run_id", "fork_step", "created_at", "updated_at", "ended_at")
_TIME_COLUMNS = frozenset(TIME_FIELDS)


def parse_columns(columns: str | Sequence[str]) -> tuple[Field, ...]:
    """Columns by field name, such as ``"run_id, config.lr, metrics.loss.min"``.

    :raises QuerySyntaxError: for a name that is not a column.
    """
    return parse_fields(columns, columns=True, what="columns")


def cell(state: RunState, field: Field) -> Any:
    """The value of one column for one run (None when the run has none)."""
    if field.kind == "config":
        if field.name.startswith(ENV_PREFIX):
            return state.env.get(field.name[len(ENV_PREFIX):])
        return state.config.get(field.name)
    if field.kind == "metric":
        summary = state.metrics.get(field.name)
        return None if summary is None else getattr(summary, field.aggregate or "last")
    if field.kind == "tags":
        return sorted(state.tags)
    name = field.name
    if name == "status":
        return state.status.value
    if name == "fork_run_id":
        return None if state.fork is None else state.fork.run_id
    if name == "fork_step":
        return None if state.fork is None else state.fork.step
    return getattr(state, name)


def _text(value: Any) -> str:
    """A CSV cell: empty for None, full precision for floats, ISO 8601 for times, JSON for
    lists (a tag may hold a comma)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return non_finite_name(value) or repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return orjson.dumps(list(value)).decode()
    return str(value)


@dataclass(frozen=True, slots=True)
class RunsTable:
    """Runs flattened into named columns: one row per run, and one column per run field,
    config path and metric aggregate, named as the query language names them
    (``config.optimizer/lr``, ``metrics.train/loss.min``), so any column can be pasted into
    ``where``, ``order_by`` or ``columns`` as it is.

    Cells hold plain values: str, int, float (NaN for a metric whose aggregate is NaN), bool,
    ``datetime`` (UTC), a sorted list for ``tags`` and list configs, and None where a run has
    no value.

    :ivar columns: the column names, in order.
    :ivar rows: one tuple of cells per run, in ``columns`` order.
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    @classmethod
    def from_runs(cls, runs: Iterable[RunState], columns: str | Sequence[str] | None = None,
                  *, aggregates: Sequence[str] = AGGREGATES) -> RunsTable:
        """The table of ``runs``.

        Without ``columns``: the run fields of ``DEFAULT_COLUMNS``, then every config path
        and every metric's ``aggregates`` that any of the runs has, sorted by name.

        :raises QuerySyntaxError: for a column that is not a field.
        :raises ValueError: for an unknown aggregate.
        """
        states = list(runs)
        if columns is not None:
            fields = parse_columns(columns)
        else:
            unknown = [a for a in aggregates if a not in AGGREGATES]
            if unknown:
                raise ValueError(f"unknown aggregate {unknown[0]!r}: use some of "
                                 f"{', '.join(AGGREGATES)}")
            paths = sorted({p for s in states for p in s.config})
            metrics = sorted({m for s in states for m in s.metrics})
            fields = (*(Field("tags", "tags") if c == "tags" else Field("run", c)
                        for c in DEFAULT_COLUMNS),
                      *(Field("config", p) for p in paths),
                      *(Field("metric", m, a) for m in metrics for a in aggregates))
        return cls(tuple(str(f) for f in fields),
                   tuple(tuple(cell(s, f) for f in fields) for s in states))

    def __len__(self) -> int:
        return len(self.rows)

    def records(self) -> list[dict[str, Any]]:
        """One dict per run, column name to value."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def to_csv(self, out: TextIO | None = None) -> str:
        """The table as CSV with a header row (written to ``out`` too, when given).

        None is an empty cell, NaN ``nan``, a time ISO 8601, a list a JSON array.
        """
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows([_text(v) for v in row] for row in self.rows)
        text = buffer.getvalue()
        if out is not None:
            out.write(text)
        return text

    def to_jsonl(self, out: TextIO | None = None) -> str:
        """The table as JSON lines, one flat object per run (written to ``out`` too, when
        given). None is ``null``; NaN and ±inf are the strings ``nan``, ``inf``, ``-inf``."""
        text = "".join(orjson.dumps(jsonable(record)).decode() + "\n"
                       for record in self.records())
        if out is not None:
            out.write(text)
        return text

    def to_pandas(self) -> pandas.DataFrame:
        """The table as a pandas DataFrame (pandas is the optional extra ``pandas``).

        Run times are ``datetime64`` columns in UTC, and so is a config column whose values
        are all datetimes (a naive one taken as UTC, as queries take it; NaT where a run has
        none); a config column of mixed kinds keeps Python objects. Metric values are
        floats, with NaN where a run lacks the metric; ``count`` and ``last_step`` stay ints
        when every run has the metric.

        :raises ImportError: when pandas is not installed.
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("RunsTable.to_pandas needs pandas: pip install "
                              "'kittiwake[pandas]'") from exc
        frame = pd.DataFrame.from_records(list(self.rows), columns=list(self.columns))
        for i, name in enumerate(self.columns):
            if name in _TIME_COLUMNS:
                frame[name] = pd.to_datetime(frame[name], utc=True)
            elif name.startswith("metrics."):
                values = pd.to_numeric(frame[name])
                # Missing values make a column float (NaN); count and last_step stay ints
                # when no value is missing.
                frame[name] = values if name.endswith((".count", ".last_step")) \
                    else values.astype("float64")
            elif name.startswith("config.") and _all_datetimes(row[i] for row in self.rows):
                # pandas 2 keeps nanoseconds: a year outside 1677..2262 stays an object.
                with contextlib.suppress(ValueError, OverflowError):
                    frame[name] = pd.to_datetime(frame[name], utc=True)
        return frame


def _all_datetimes(values: Iterable[Any]) -> bool:
    """Whether the present values are datetimes, and there is one at least."""
    found = False
    for value in values:
        if value is None:
            continue
        if not isinstance(value, datetime):
            return False
        found = True
    return found
