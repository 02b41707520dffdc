"""Query trees to SQL, for SQLite and PostgreSQL, with every value a bound parameter.

Nothing a user typed is ever spliced into a statement: literals, metric names, config paths
and tags are all parameters (names are data in the ``metric``, ``path`` and ``tag`` columns).
The only words spliced in are this module's own constants: column names picked from fixed
tables, kinds such as ``'n'``, and SQL keywords.

Every predicate compiles to a two-valued condition — never NULL — so ``not`` is plain boolean
negation: a run that lacks a field fails ``config.x = 1`` and passes ``not config.x = 1``.
Conditions on metrics, configs and tags are ``r.rk IN (SELECT rk FROM … WHERE …)``: the
subquery uses the ``(metric, value)``, ``(path, value)`` or ``(tag, rk)`` index, runs once, and
``rk`` is never NULL (a top-k walk, which looks at a few runs only, asks for correlated
``EXISTS`` probes of the primary keys instead).

How deep the SQL nests is bounded whatever the query: SQLite's parser has a fixed stack (it
overflows near 26 nested ``(a or (b and …))``) and its expressions a height limit of 1,000.
An ``and``/``or`` chain is written flat, in groups of at most ``CHUNK`` (a 1,000-term chain
nests two levels), and a subtree that would start deeper than ``HOIST_DEPTH`` levels is
compiled on its own, at depth 0, into a common table expression ``qN(rk)`` that the outer
condition reads as ``r.rk IN (SELECT rk FROM qN)``. Multi-statement plans (top-k, grouping)
live in ``plans``; the dialects' differences in ``dialect``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from engine._projections.stored import RUN_COLUMNS
from engine._projections.tables import TXT_PREFIX

from .dialect import POSTGRES, SQLITE, Dialect
from .tree import (
    AGGREGATES,
    TEXT_FIELDS,
    TIME_FIELDS,
    And,
    Compare,
    Contains,
    Exists,
    Field,
    In,
    Node,
    Not,
    Or,
    Selection,
    Value,
    iso_seconds,
)

__all__ = ["AGG_COLUMN", "CHUNK", "HOIST_DEPTH", "POSTGRES", "PULL_UP", "RUN_COLUMN", "SQLITE",
           "Builder", "Compiled", "Dialect", "compile_load", "compile_select", "judged_status"]

# Column names, from fixed tables only: never from query text.
RUN_COLUMN = {name: f"r.{name}" for name in (*TEXT_FIELDS, *TIME_FIELDS)}
AGG_COLUMN = {name: name for name in AGGREGATES}
_NULLABLE = frozenset({"experiment", "ended_at", "worker"})
_NUMERIC_KINDS = "('n', 'b', 't')"  # config kinds that sort as numbers (bool as 0/1)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
CHUNK = 32  # items of a flat and/or chain: its expression height, far below SQLite's 1,000
PULL_UP = 3  # subqueries of one statement level the planner may turn into joins (see fence)
HOIST_DEPTH = 6  # nesting (of and/or chains and nots) at which a subtree moves into a CTE


def judged_status(now: str) -> str:
    """The status of run ``r`` judged at the instant ``now`` (a numeric placeholder, used
    twice): ``engine._core.heartbeat.judge`` in SQL. The heartbeat is looked up only for a
    running run silent in the log for longer than its crash timeout (a NULL attempt count
    compares false: not a job, so ``crashed``)."""
    beat = "(SELECT h.beat_at FROM heartbeats h WHERE h.project = r.project AND " \
           "h.run_id = r.run_id)"
    return (f"(CASE WHEN r.status <> 'running' OR r.crash_timeout IS NULL THEN r.status "
            f"WHEN r.updated_at + r.crash_timeout >= {now} THEN r.status "
            f"WHEN {beat} + r.crash_timeout >= {now} THEN r.status "
            "WHEN r.attempt < r.max_attempts THEN 'queued' ELSE 'crashed' END)")


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement and its parameters (the ``n``-th is placeholder ``?n`` or ``$n``)."""

    sql: str
    params: tuple[Any, ...]


class Builder:
    """Writes the SQL of query trees, collecting parameters and common table expressions.

    Placeholders are numbered, so text may be written in any order; ``statement`` puts the
    collected CTEs in front of a statement. A builder made with ``within=`` adds to the
    parameters and CTEs of that one (the body of a CTE, compiled apart).
    """

    def __init__(self, dialect: Dialect, *, correlated: bool = False, key: str = "r.rk",
                 within: Builder | None = None, now: float | None = None) -> None:
        self.d = dialect
        self.correlated = correlated
        self.key = key  # the run key conditions test: a walk names its index's (see TopPlan)
        self.params: list[Any] = [] if within is None else within.params
        self.ctes: list[str] = [] if within is None else within.ctes
        self.project: str | None = None if within is None else within.project
        self.depth = 0  # how deep the condition being written nests (chains and nots)
        self.subqueries = 0  # written so far at this builder's level
        # The instant ``status`` is judged at, and its placeholder once bound (a list shared
        # with the builders of CTEs: an unused parameter would be refused by PostgreSQL).
        self.now: float | None = now if within is None else within.now
        self._now_mark: list[str] = [] if within is None else within._now_mark

    def run_column(self, name: str) -> str:
        """The SQL of a run field: its column, but ``status`` judged at ``now``."""
        if name != "status" or self.now is None:
            return RUN_COLUMN[name]
        if not self._now_mark:
            self._now_mark.append(self.number(self.now))
        return judged_status(self._now_mark[0])

    def rows_where(self, table: str, alias: str, condition: str) -> str:
        """True when the run has a row in ``table`` meeting ``condition``: a set the
        subquery builds once (for a scan of many runs), or a correlated probe of the primary
        key (for a walk that stops after a few runs).

        Past the first ``PULL_UP`` subqueries, each is fenced (``Dialect.fence``), so that
        however many a query holds, the planner weighs the joins of only a few.
        """
        self.subqueries += 1
        if self.correlated:
            test = (f"EXISTS (SELECT 1 FROM {table} {alias} WHERE {alias}.rk = {self.key} AND "
                    f"{condition})")
        else:
            test = f"{self.key} IN (SELECT {alias}.rk FROM {table} {alias} WHERE {condition})"
        return self.d.fence(test) if self.subqueries > PULL_UP else test

    def bind(self, value: Any) -> str:
        """Add a parameter; returns its placeholder."""
        self.params.append(value)
        return self.d.mark(len(self.params))

    def number(self, value: int | float) -> str:
        """Add a numeric parameter; returns its (typed) placeholder."""
        return self.d.number(self.bind(value))

    def statement(self, sql: str) -> Compiled:
        """``sql`` with the CTEs its conditions need in front, and every parameter."""
        head = f"WITH {', '.join(self.ctes)} " if self.ctes else ""
        return Compiled(head + sql, tuple(self.params))

    # Scope -----------------------------------------------------------------------------------

    def base(self, project: str, include_deleted: bool, selection: Selection) -> str:
        self.project = project
        parts = [self.d.in_project(self.bind(project))]
        if not include_deleted:
            parts.append("r.deleted = 0")
        if selection.heads_only:
            parts.append(f"{self.key} IN (SELECT e.head FROM experiments e WHERE "
                         f"e.project = {self.bind(project)} AND e.head IS NOT NULL)")
        if selection.where is not None:
            parts.append(self.where(selection.where))
        return " AND ".join(parts)

    # Predicates ------------------------------------------------------------------------------

    def where(self, node: Node) -> str:
        """The condition of a ``where`` tree, as a two-valued SQL expression."""
        if isinstance(node, (And, Or, Not)) and self.depth >= HOIST_DEPTH:
            return self._hoisted(node)
        if isinstance(node, (And, Or)):
            op = " AND " if isinstance(node, And) else " OR "
            with self._nested(_levels(len(node.items))):
                parts = [self.where(i) for i in node.items]
            return _chain(op, parts)
        if isinstance(node, Not):
            with self._nested(1):
                return f"NOT ({self.where(node.item)})"
        if isinstance(node, Exists):
            return self.has_value(node.field)
        if isinstance(node, Contains):
            return self.contains(node.field, node.value)
        if isinstance(node, Compare):
            return self.compare(node.field, node.op, node.value)
        if isinstance(node, In):
            if node.field.kind == "tags" and node.negated:
                return f"NOT ({self.any_of(node.field, node.values)})"
            if node.negated:
                has = self.has_value(node.field)
                return f"({has} AND NOT ({self.any_of(node.field, node.values)}))"
            return self.any_of(node.field, node.values)
        raise TypeError(f"not a query node: {node!r}")  # pragma: no cover

    @contextmanager
    def _nested(self, levels: int) -> Iterator[None]:
        self.depth += levels
        try:
            yield
        finally:
            self.depth -= levels

    def _hoisted(self, node: Node) -> str:
        """``node`` compiled at depth 0 into a CTE of the runs that match it (a set built
        once, whatever the walk), read back by run key."""
        inner = Builder(self.d, within=self)
        scope = "TRUE" if self.project is None else self.d.in_project(inner.bind(self.project))
        body = inner.where(node)
        name = f"q{len(self.ctes)}"  # after the body: the CTEs it reads come first
        self.ctes.append(f"{name}(rk) AS (SELECT r.rk FROM runs r WHERE {scope} AND {body})")
        correlated, self.correlated = self.correlated, False  # a set, probed by hash
        try:
            return self.rows_where(name, name, "TRUE")
        finally:
            self.correlated = correlated

    def any_of(self, field: Field, values: Iterable[Value]) -> str:
        listed = list(values)
        with self._nested(_levels(len(listed))):
            return _chain(" OR ", [self.compare(field, "=", v) for v in listed])

    def has_value(self, field: Field) -> str:
        """The run has a value for ``field``: not missing, not null (NaN is a value)."""
        if field.kind == "run":
            return f"{self.run_column(field.name)} IS NOT NULL" if field.name in _NULLABLE \
                else "TRUE"
        if field.kind == "tags":
            return self.rows_where("run_tags", "t", "TRUE")
        if field.kind == "metric":
            return self.rows_where("metrics", "m", f"m.metric = {self.bind(field.name)}")
        return self.rows_where("run_configs", "c",
                               f"c.path = {self.bind(field.name)} AND c.kind <> 'z'")

    def compare(self, field: Field, op: str, value: Value) -> str:
        if value is None:  # the parser allows only = and != with null
            has = self.has_value(field)
            return has if op == "!=" else f"NOT ({has})"
        if field.kind == "tags":
            found = self.rows_where("run_tags", "t", f"t.tag = {self.bind(value)}")
            return f"NOT ({found})" if op == "!=" else found
        if field.kind == "run":
            return self._run_compare(field.name, op, value)
        if field.kind == "metric":
            return self._metric_compare(field, op, value)
        return self._config_compare(field.name, op, value)

    def _run_compare(self, name: str, op: str, value: Value) -> str:
        column = self.run_column(name)
        sql_op = "<>" if op == "!=" else op
        if name in TEXT_FIELDS:
            expr = self.d.text(column) if op not in ("=", "!=") else column
            test = f"{expr} {sql_op} {self.bind(value)}"
        else:
            assert isinstance(value, (int, float))
            test = f"{column} {sql_op} {self.number(value)}"
        return f"({column} IS NOT NULL AND {test})" if name in _NULLABLE else test

    def _metric_compare(self, field: Field, op: str, value: Value) -> str:
        column = f"m.{AGG_COLUMN[field.aggregate or 'last']}"
        head = f"m.metric = {self.bind(field.name)} AND "
        assert isinstance(value, (int, float))
        if math.isnan(value):  # NaN is stored as NULL; the parser allows only = and !=
            test = f"{column} {'IS NOT' if op == '!=' else 'IS'} NULL"
        elif op == "!=":
            test = f"({column} IS NULL OR {column} <> {self.number(value)})"
        else:
            test = f"{column} {op} {self.number(value)}"
        return self.rows_where("metrics", "m", head + test)

    def _config_compare(self, path: str, op: str, value: Value) -> str:
        """A config path compared with a literal of its kind (see ``docs/queries.md``).

        Over many runs, reading ``kind`` costs a lookup of the table row behind each index
        entry (for 30,000 entries, most of a full plan's time), so the set form reads only
        the ``(path, num)`` and ``(path, txt)`` indexes where the kind follows anyway:
        only numbers, bools and datetimes have a ``num``, and a text equals a datetime's
        ISO text only if it is that very instant. What the kind must still exclude — bools
        (``num`` 0 or 1) from a number's range, lists from a text that looks like a JSON
        array — is looked up for those few entries alone. A correlated probe has the row
        at hand and tests the kind.
        """
        if op == "!=":
            has = self.has_value(Field("config", path))
            return f"({has} AND NOT ({self._config_compare(path, '=', value)}))"
        head = f"c.path = {self.bind(path)} AND "
        if isinstance(value, bool):
            test = f"c.kind = 'b' AND c.num = {self.number(int(value))}"
        elif isinstance(value, float) and math.isnan(value):
            test = "c.kind = 'n' AND c.num IS NULL"
        elif isinstance(value, (int, float)):
            test = f"c.num {op} {self.number(value)}"
            if self.correlated:
                test = f"c.kind IN ('n', 't') AND {test}"
            elif any(_OPS[op](b, value) for b in (0, 1)):
                test += f" AND {self._kind_among(path, 'b', 'k.num IN (0, 1)')}"
        else:
            assert isinstance(value, str)
            text = self.d.text("c.txt") if op != "=" else "c.txt"
            if op != "=" or self.correlated:
                test = f"c.kind = 's' AND {self._txt_prefix('c', op, value)}{text} {op} " \
                       f"{self.bind(value)}"
            else:
                test = f"{self._txt_prefix('c', op, value)}c.txt = {self.bind(value)}"
                if value.startswith("["):  # the text of a list config
                    among = f"{self._txt_prefix('k', op, value)}k.txt = {self.bind(value)}"
                    test += f" AND {self._kind_among(path, 'l', among)}"
            seconds = iso_seconds(value)
            if seconds is not None:  # a datetime config compares with a date string by time
                found = self.rows_where("run_configs", "c", head + test)
                when = self.rows_where("run_configs", "c", f"c.path = {self.bind(path)} AND "
                                       f"c.kind = 't' AND c.num {op} {self.number(seconds)}")
                return f"({found} OR {when})"
        return self.rows_where("run_configs", "c", head + test)

    def _kind_among(self, path: str, kind: str, where: str) -> str:
        """``c`` is not a config of ``kind`` among the rows of ``path`` meeting ``where``
        (on ``k``'s columns of the ``(path, num)`` or ``(path, txt)`` index)."""
        return (f"c.rk NOT IN (SELECT k.rk FROM run_configs k WHERE k.path = "
                f"{self.bind(path)} AND {where} AND k.kind = '{kind}')")

    def _txt_prefix(self, alias: str, op: str, value: str) -> str:
        """On PostgreSQL, the test of ``txt``'s indexed prefix that ``txt {op} value``
        implies (with ``AND``), so the ``(path, left(txt, n))`` index serves it; nothing on
        SQLite, which indexes the whole text. Cutting both sides to their first n characters
        keeps their order by code point, or makes them equal."""
        if not self.d.numbered:
            return ""
        cut = {"<": "<=", ">": ">="}.get(op, op)
        return f"left({alias}.txt, {TXT_PREFIX}) {cut} {self.bind(value[:TXT_PREFIX])} AND "

    def contains(self, field: Field, value: str) -> str:
        if field.kind == "tags":
            return self.compare(field, "=", value)
        if field.kind == "run":
            column = self.run_column(field.name)
            return f"({column} IS NOT NULL AND {self.d.substring(column, self.bind(value))})"
        path = self.bind(field.name)
        text = self.d.substring("c.txt", self.bind(value))
        element = self.d.list_has("c.kind", "c.txt", self.bind(value))
        return self.rows_where("run_configs", "c", f"c.path = {path} AND "
                               f"((c.kind = 's' AND {text}) OR ({element}))")

    # Ordering and grouping -------------------------------------------------------------------

    def order_terms(self, selection: Selection) -> tuple[list[str], list[str]]:
        """LEFT JOINs and ORDER BY terms: missing values last, then the oldest run first."""
        joins: list[str] = []
        terms: list[str] = []
        for i, key in enumerate(selection.order):
            field, down = key.field, key.descending
            if field.kind == "run":
                column = self.run_column(field.name)
                sort = self.d.text(column) if field.name in TEXT_FIELDS else column
                terms += [f"({column} IS NULL)", self.d.sort(sort, down)]
            elif field.kind == "metric":
                alias = f"o{i}"
                joins.append(f"LEFT JOIN metrics {alias} ON {alias}.rk = r.rk AND "
                             f"{alias}.metric = {self.bind(field.name)}")
                column = f"{alias}.{AGG_COLUMN[field.aggregate or 'last']}"
                terms += [f"({column} IS NULL)", self.d.sort(column, down)]
            else:
                alias = f"o{i}"
                joins.append(f"LEFT JOIN run_configs {alias} ON {alias}.rk = r.rk AND "
                             f"{alias}.path = {self.bind(field.name)}")
                # Numbers (bools as 0/1, datetimes as POSIX time) before text, whatever the
                # direction; null, NaN and missing last. Equal numbers tie whatever their
                # kinds, as they do in the top-k walk, which reads ``num`` alone: a datetime's
                # text must not order it against its naive twin or its POSIX seconds.
                text = f"(CASE WHEN {alias}.kind IN ('s', 'l') THEN {alias}.txt END)"
                terms += [f"(CASE WHEN {alias}.kind IN {_NUMERIC_KINDS} AND {alias}.num IS NOT "
                          f"NULL THEN 0 WHEN {alias}.kind IN ('s', 'l') THEN 1 ELSE 2 END)",
                          self.d.sort(f"{alias}.num", down),
                          self.d.sort(self.d.text(text), down)]
        terms.append("r.rk")
        return joins, terms

    def group_keys(self, by: Sequence[Field]) -> tuple[list[str], list[str]]:
        """LEFT JOINs and the select expressions of the grouping fields (a config is three
        columns: ``kind``, ``num`` and ``txt``)."""
        joins: list[str] = []
        exprs: list[str] = []
        for i, field in enumerate(by):
            if field.kind == "run":
                exprs.append(self.run_column(field.name))
                continue
            alias = f"g{i}"
            joins.append(f"LEFT JOIN run_configs {alias} ON {alias}.rk = r.rk AND "
                         f"{alias}.path = {self.bind(field.name)}")
            exprs += [f"nullif({alias}.kind, 'z')", f"{alias}.num", f"{alias}.txt"]
        return joins, exprs

    def window(self, limit: int | None, offset: int) -> str:
        if limit is None and not offset:
            return ""
        if limit is None:
            return f" OFFSET {self.bind(offset)}" if self.d.numbered \
                else f" LIMIT -1 OFFSET {self.bind(offset)}"
        return f" LIMIT {self.bind(limit)} OFFSET {self.bind(offset)}"


def _levels(items: int) -> int:
    """How many parentheses deep ``_chain`` nests a chain of ``items``."""
    levels, size = 1, CHUNK
    while size < items:
        levels, size = levels + 1, size * CHUNK
    return levels


def _chain(op: str, parts: list[str]) -> str:
    """``parts`` joined by ``op``, in parentheses: flat up to ``CHUNK`` parts (SQLite's
    parser then needs no stack per part), else in groups of groups, each flat."""
    if len(parts) == 1:
        return parts[0]
    if len(parts) <= CHUNK:
        return f"({op.join(parts)})"
    size = CHUNK
    while size * CHUNK < len(parts):
        size *= CHUNK
    return f"({op.join(_chain(op, parts[i:i + size]) for i in range(0, len(parts), size))})"


def compile_select(project: str, selection: Selection, *, include_deleted: bool,
                   dialect: Dialect) -> Compiled:
    """The statement that picks the run keys (``rk``) of a selection, in order."""
    b = Builder(dialect, now=selection.now)
    joins, terms = b.order_terms(selection)
    where = b.base(project, include_deleted, selection)
    window = b.window(selection.limit, selection.offset)
    return b.statement(f"SELECT r.rk FROM runs r {' '.join(joins)} WHERE {where} "
                       f"ORDER BY {', '.join(terms)}{window}")


def compile_load(rks: Sequence[int], dialect: Dialect,
                 now: float | None = None) -> tuple[Compiled, Compiled]:
    """The statements that load the run rows and the metric rows of the given runs (the
    status judged at ``now``, when given)."""
    runs = Builder(dialect, now=now)
    keys = dialect.rk_list(runs.bind(dialect.rk_param(rks)))
    columns = ", ".join(runs.run_column(c) if c == "status" else f"r.{c}" for c in RUN_COLUMNS)
    metric_params = tuple(runs.params[:1])
    run_sql = f"SELECT {columns} FROM runs r WHERE r.rk IN ({keys})"
    metric_sql = ("SELECT m.rk, m.metric, m.count, m.last, m.last_step, m.min, m.max FROM "
                  f"metrics m WHERE m.rk IN ({keys})")
    return Compiled(run_sql, tuple(runs.params)), Compiled(metric_sql, metric_params)
