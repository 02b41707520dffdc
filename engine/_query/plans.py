"""Query plans beyond one statement: the top-k walk of ``list_runs`` and ``group_runs``.

``compile_top`` turns "the best ten runs by a metric" into a walk down that metric's index
that stops after ten matching runs; ``compile_groups`` and ``decode_groups`` turn grouping
into two statements and their rows into ``RunGroup`` values. Both build their SQL with
``sql.Builder``, so every value is a bound parameter in either dialect.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from .sql import AGG_COLUMN, Builder, Compiled, Dialect
from .tree import AGGREGATES, TIME_FIELDS, Field, MetricStats, RunGroup, Selection

__all__ = ["TOP_BUDGET", "GroupPlan", "TopPlan", "compile_groups", "compile_top",
           "decode_groups", "group_hashable", "group_sort_key"]

TOP_BUDGET = 2000  # index entries a top-k walk may look at before the full plan takes over


@dataclass(frozen=True, slots=True)
class TopPlan:
    """A top-k plan: walk the first ordering field's index, best value first, and stop as
    soon as enough runs match, instead of filtering and sorting every run.

    ``edge`` reads the values of the ``budget``-th to the ``2 * budget``-th best index
    entries; ``select(first of them)`` walks only the entries at least as good as the first
    (all of them when ``edge`` found none), probing the other tables by primary key run by
    run, and returns up to ``needed`` runs. Every run outside that range sorts after every
    run inside it, so when ``select`` returns ``needed`` runs they are the answer; when it
    returns fewer, runs without a value may belong in it, and the caller runs
    ``compile_select`` instead.

    When the ``edge`` values are all equal, a tie of more than ``budget`` runs straddles
    the window, and sorting it all would cost more than the full plan. Then
    ``select(value, strict=True)`` walks the entries strictly better than the tie (fewer
    than ``budget``), and, if they hold too few matching runs and the ordering has no
    second field, ``tie(value, n)`` reads the tie itself in run key order — its order —
    straight off the index, stopping at the ``n``-th match.

    The probes of the filter name the index entry's run key (``w.rk``), not the run's:
    SQLite then tests them as soon as it reads the entry, and reads the (wide) run row
    only for the entries that pass.
    """

    edge: Compiled
    needed: int
    project: str
    selection: Selection
    include_deleted: bool
    dialect: Dialect

    def select(self, edge: Any, *, strict: bool = False) -> Compiled:
        """The walk, bounded by the value ``edge`` returned (None: unbounded); with
        ``strict``, only the entries strictly better than ``edge``."""
        b = Builder(self.dialect, correlated=True, key="w.rk", now=self.selection.now)
        first = self.selection.order[0]
        table, column = _top_source(first.field)
        way, bound = ("DESC", ">") if first.descending else ("ASC", "<")
        # Ties on the first field go by the other fields, then by run key, as in the full
        # plan (``Builder.order_terms``): both plans share one total order.
        joins, terms = b.order_terms(Selection(order=self.selection.order[1:]))
        entries = _top_entries(b, first.field, column)
        if edge is not None:
            entries += f" AND {column} {bound}{'' if strict else '='} {b.number(edge)}"
        where = b.base(self.project, self.include_deleted, self.selection)
        return b.statement(
            f"SELECT r.rk FROM {table} CROSS JOIN runs r {' '.join(joins)} WHERE {entries} "
            f"AND r.rk = w.rk AND {where} ORDER BY {column} {way}, {', '.join(terms)} "
            f"LIMIT {b.bind(self.needed)}")

    @property
    def ties_in_key_order(self) -> bool:
        """Whether runs that tie on the first field sort by run key alone (``tie``)."""
        return len(self.selection.order) == 1

    def tie(self, value: Any, count: int) -> Compiled:
        """Up to ``count`` matching runs whose first field is ``value``, by run key: the
        index holds its entries of one value in that order, so the walk stops early."""
        b = Builder(self.dialect, correlated=True, key="w.rk", now=self.selection.now)
        first = self.selection.order[0]
        table, column = _top_source(first.field)
        entries = f"{_top_entries(b, first.field, column)} AND {column} = {b.number(value)}"
        where = b.base(self.project, self.include_deleted, self.selection)
        return b.statement(f"SELECT r.rk FROM {table} CROSS JOIN runs r WHERE {entries} AND "
                           f"r.rk = w.rk AND {where} ORDER BY w.rk LIMIT {b.bind(count)}")


def _top_source(field: Field) -> tuple[str, str]:
    """The table a top-k walk reads (as ``w``) and the indexed column that orders it."""
    if field.kind == "metric":
        return "metrics w", f"w.{AGG_COLUMN[field.aggregate or 'last']}"
    return "run_configs w", "w.num"


def _top_entries(b: Builder, field: Field, column: str) -> str:
    """The index entries of a top-k walk. NaN, null and text are NULL in its column, and
    sort after every number anyway."""
    key = "w.metric" if field.kind == "metric" else "w.path"
    return f"{key} = {b.bind(field.name)} AND {column} IS NOT NULL"


def compile_top(project: str, selection: Selection, *, include_deleted: bool,
                dialect: Dialect, budget: int = TOP_BUDGET) -> TopPlan | None:
    """The top-k plan of a selection, or None when it has none: no limit, a large one, or a
    first ordering field without an index (a run field, a metric's count or last_step)."""
    if selection.limit is None or not selection.order:
        return None
    needed = selection.limit + selection.offset
    first = selection.order[0]
    field = first.field
    if not 0 < needed <= budget // 4 or field.kind not in ("metric", "config") \
            or field.aggregate in ("count", "last_step"):
        return None
    b = Builder(dialect)
    table, column = _top_source(field)
    way = "DESC" if first.descending else "ASC"
    edge = b.statement(
        f"SELECT {column} FROM {table} WHERE {_top_entries(b, field, column)} "
        f"ORDER BY {column} {way} LIMIT {b.bind(budget + 1)} OFFSET {b.bind(budget - 1)}")
    return TopPlan(edge, needed, project, selection, include_deleted, dialect)


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """``group_runs`` as two statements: runs per group, and per group and metric the count,
    mean, min and max of each aggregate in ``columns``."""

    by: tuple[Field, ...]
    aggregates: tuple[Field, ...] | None
    columns: tuple[str, ...]  # the aggregates ``stats`` computes, in its column order
    counts: Compiled
    stats: Compiled | None  # None when no aggregate is asked for


def compile_groups(project: str, selection: Selection, by: Sequence[Field],
                   aggregates: Sequence[Field] | None, *, include_deleted: bool,
                   dialect: Dialect) -> GroupPlan:
    """The statements of ``group_runs`` (``aggregates`` None: every metric's ``last``)."""
    wanted = None if aggregates is None else tuple(aggregates)
    columns = ("last",) if wanted is None else \
        tuple(a for a in AGGREGATES if any(f.aggregate == a for f in wanted))

    def statement(with_metrics: bool) -> Compiled:
        b = Builder(dialect, now=selection.now)
        joins, keys = b.group_keys(by)
        select = list(keys)
        where = []
        if with_metrics:
            # The runs outside, the metrics inside: probes of the metrics' primary key then
            # follow the order of the runs.
            joins.append("CROSS JOIN metrics m")
            where.append("m.rk = r.rk")
            if wanted is not None:
                names = sorted({f.name for f in wanted})
                where.append(f"m.metric IN ({', '.join(b.bind(n) for n in names)})")
            select.append("m.metric")
            for agg in columns:
                column = f"m.{AGG_COLUMN[agg]}"
                select += [f"count({column})", f"avg({dialect.real(column)})",
                           f"min({column})", f"max({column})"]
        else:
            select.append("count(*)")
        where.append(b.base(project, include_deleted, selection))
        grouped = len(keys) + with_metrics
        group = " GROUP BY " + ", ".join(str(i + 1) for i in range(grouped)) if grouped else ""
        return b.statement(f"SELECT {', '.join(select)} FROM runs r {' '.join(joins)} "
                           f"WHERE {' AND '.join(where)}{group}")

    return GroupPlan(tuple(by), wanted, columns, statement(False),
                     None if wanted == () else statement(True))


def _config_value(kind: str | None, num: Any, txt: str | None) -> Any:
    if kind is None:
        return None
    if kind == "n":
        return math.nan if num is None else num
    if kind == "b":
        return bool(num)
    if kind == "t":  # aware, in UTC: a naive one is taken as UTC, as queries take it
        if txt is None:
            return None
        when = datetime.fromisoformat(txt)
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    if kind == "l":
        return orjson.loads(txt) if txt is not None else []
    return txt


def _key_values(by: Sequence[Field], row: Sequence[Any]) -> tuple[tuple[Any, ...], int]:
    """The group key (decoded values) of a result row, and how many columns it took."""
    values: list[Any] = []
    i = 0
    for field in by:
        if field.kind == "run":
            value = row[i]
            if field.name in TIME_FIELDS and value is not None:
                value = datetime.fromtimestamp(value, UTC)
            values.append(value)
            i += 1
        else:
            values.append(_config_value(row[i], row[i + 1], row[i + 2]))
            i += 3
    return tuple(values), i


def group_hashable(value: Any) -> tuple[Any, ...]:
    """A dict key that keeps apart what SQL keeps apart (``True`` and ``1``) and gives NaN,
    which never equals itself, one group."""
    if value is None:
        return ("z",)
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, list):
        return ("l", tuple(value))
    if isinstance(value, datetime):
        return ("t", value)
    return ("s", value)


def group_sort_key(value: Any) -> tuple[Any, ...]:
    """Groups sort as ``order_by`` sorts: numbers (a bool as 0 or 1, after the number it
    equals; a datetime as POSIX time) before text and lists, then NaN, then null."""
    if value is None:
        return (4,)
    if isinstance(value, float) and math.isnan(value):
        return (3,)
    if isinstance(value, datetime):
        return (0, value.timestamp(), 2)
    if isinstance(value, bool):
        return (0, int(value), 1)
    if isinstance(value, (int, float)):
        return (0, value, 0)
    if isinstance(value, list):
        return (2, orjson.dumps(value))
    return (1, value)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def merged_stats(a: MetricStats | None, b: MetricStats) -> MetricStats:
    """The stats of two parts of one group (see ``decode_groups``)."""
    if a is None or not a.count:
        return b
    if not b.count:
        return a
    count = a.count + b.count
    return MetricStats(count, (a.mean * a.count + b.mean * b.count) / count,
                       min(a.min, b.min), max(a.max, b.max))


def decode_groups(plan: GroupPlan, counts: Iterable[Sequence[Any]],
                  stats: Iterable[Sequence[Any]]) -> list[RunGroup]:
    """Groups from the rows of the plan's two statements, in the order of their keys
    (missing values last).

    The statements group datetimes by their stored text, so a naive datetime and the aware
    one of the same instant — equal in a query, and equal once decoded — come as two rows;
    their counts and stats are merged here into one group.
    """
    names = [str(f) for f in plan.by]
    groups: dict[tuple[Any, ...], tuple[tuple[Any, ...], int]] = {}
    for row in counts:
        key, width = _key_values(plan.by, row)
        hashed = tuple(group_hashable(v) for v in key)
        groups[hashed] = (key, row[width] + groups.get(hashed, (key, 0))[1])
    found: dict[tuple[Any, ...], dict[tuple[str, str], MetricStats]] = {}
    for row in stats:
        key, width = _key_values(plan.by, row)
        metric = row[width]
        per = found.setdefault(tuple(group_hashable(v) for v in key), {})
        for j, agg in enumerate(plan.columns):
            count, mean, low, high = row[width + 1 + 4 * j: width + 5 + 4 * j]
            part = MetricStats(int(count), _float(mean), _float(low), _float(high))
            per[(metric, agg)] = merged_stats(per.get((metric, agg)), part)
    empty = MetricStats(0, math.nan, math.nan, math.nan)
    out = []
    for hashed, (key, count) in groups.items():
        per = found.get(hashed, {})
        if plan.aggregates is None:
            wanted = [Field("metric", metric, "last") for metric, agg in sorted(per)
                      if agg == "last"]
        else:
            wanted = list(plan.aggregates)
        metrics = {str(f): per.get((f.name, f.aggregate or "last"), empty) for f in wanted}
        out.append(RunGroup(dict(zip(names, key, strict=True)), count, metrics))
    out.sort(key=lambda g: [group_sort_key(v) for v in g.key.values()])
    return out
