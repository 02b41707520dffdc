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
``EXISTS`` probes of the primary keys instead). ``and``/``or`` chains are emitted as balanced
trees, so a long chain stays far below SQLite's limit on expression depth. Multi-statement
plans (top-k, grouping) live in ``_query_plans``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from ._query_ast import (
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
from ._rows import RUN_COLUMNS

__all__ = ["AGG_COLUMN", "POSTGRES", "RUN_COLUMN", "SQLITE", "Builder", "Compiled", "Dialect",
           "compile_load", "compile_select"]

# Column names, from fixed tables only: never from query text.
RUN_COLUMN = {name: f"r.{name}" for name in (*TEXT_FIELDS, *TIME_FIELDS)}
AGG_COLUMN = {name: name for name in AGGREGATES}
_NULLABLE = frozenset({"experiment", "ended_at"})
_NUMERIC_KINDS = "('n', 'b', 't')"  # config kinds that sort as numbers (bool as 0/1)


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between the SQL of two databases."""

    name: str

    @property
    def numbered(self) -> bool:
        """Placeholders ``$1, $2…`` (PostgreSQL) rather than ``?`` (SQLite)."""
        return self.name == "postgresql"

    def text(self, expr: str) -> str:
        """A text expression as compared and sorted: by code point in both databases
        (PostgreSQL's default collation may follow a locale)."""
        return f'{expr} COLLATE "C"' if self.numbered else expr

    def substring(self, expr: str, mark: str) -> str:
        """True when the text ``expr`` contains the bound text ``mark`` (no wildcards)."""
        if self.numbered:
            return f"strpos({expr}, {mark}) > 0"
        return f"instr({expr}, {mark}) > 0"

    def list_has(self, kind: str, expr: str, mark: str) -> str:
        """True when ``kind`` is ``'l'`` and the JSON array of strings ``expr`` has the
        element ``mark``. PostgreSQL may evaluate either side of an AND first, so only a
        CASE keeps it from reading other kinds' text as JSON."""
        if self.numbered:
            return (f"CASE WHEN {kind} = 'l' THEN ({expr})::jsonb @> "
                    f"jsonb_build_array({mark}::text) ELSE FALSE END")
        return (f"{kind} = 'l' AND EXISTS (SELECT 1 FROM json_each({expr}) AS j "
                f"WHERE j.value = {mark})")

    def number(self, mark: str) -> str:
        """A numeric parameter: PostgreSQL infers a parameter's type from the column it
        meets, and would refuse 0.5 compared with an integer column such as ``count``."""
        return f"{mark}::double precision" if self.numbered else mark

    def rk_list(self, mark: str) -> str:
        """A subquery yielding the run keys passed as one parameter (see ``rk_param``)."""
        if self.numbered:
            return f"SELECT unnest({mark}::bigint[])"
        return f"SELECT value FROM json_each({mark})"

    def rk_param(self, rks: Sequence[int]) -> Any:
        """The one parameter that carries a list of run keys."""
        return list(rks) if self.numbered else orjson.dumps(list(rks)).decode()

    def sort(self, expr: str, descending: bool) -> str:
        """An ORDER BY term that places NULL as SQLite does — first ascending, last
        descending — where PostgreSQL would do the opposite."""
        if self.numbered:
            return f"{expr} DESC NULLS LAST" if descending else f"{expr} NULLS FIRST"
        return f"{expr} DESC" if descending else expr

    def in_project(self, mark: str) -> str:
        """The condition that keeps a project's runs.

        SQLite reads the runs in ``rk`` order instead of through the ``(project,
        experiment, rk)`` index (the unary ``+`` hides the column from the planner): the
        index visits runs experiment by experiment, so every probe of ``metrics`` and
        ``run_configs`` lands somewhere else, while ``rk`` order walks those tables'
        primary keys in order and lets ``ORDER BY r.rk LIMIT n`` stop early. It costs a full
        read of ``runs`` when a file holds many projects.
        """
        return f"r.project = {mark}" if self.numbered else f"+r.project = {mark}"

    def real(self, expr: str) -> str:
        """``expr`` as a double, so that ``avg`` of integers stays a float."""
        return f"CAST({expr} AS {'double precision' if self.numbered else 'REAL'})"


SQLITE = Dialect("sqlite")
POSTGRES = Dialect("postgresql")


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement and its parameters, in placeholder order."""

    sql: str
    params: tuple[Any, ...]


class Builder:
    """Writes the SQL of query trees, collecting parameters as a statement is written left
    to right.

    With ``?`` placeholders the order of ``bind`` calls must be the order of the marks in the
    text, so each statement is built strictly in reading order.
    """

    def __init__(self, dialect: Dialect, *, correlated: bool = False) -> None:
        self.d = dialect
        self.params: list[Any] = []
        self.correlated = correlated

    def rows_where(self, table: str, alias: str, condition: str) -> str:
        """True when the run has a row in ``table`` meeting ``condition``: a set the
        subquery builds once (for a scan of many runs), or a correlated probe of the primary
        key (for a walk that stops after a few runs)."""
        if self.correlated:
            return (f"EXISTS (SELECT 1 FROM {table} {alias} WHERE {alias}.rk = r.rk AND "
                    f"{condition})")
        return f"r.rk IN (SELECT {alias}.rk FROM {table} {alias} WHERE {condition})"

    def bind(self, value: Any) -> str:
        """Add a parameter; returns its placeholder."""
        self.params.append(value)
        return f"${len(self.params)}" if self.d.numbered else "?"

    def number(self, value: int | float) -> str:
        """Add a numeric parameter; returns its (typed) placeholder."""
        return self.d.number(self.bind(value))

    # Scope -----------------------------------------------------------------------------------

    def base(self, project: str, include_deleted: bool, selection: Selection) -> str:
        parts = [self.d.in_project(self.bind(project))]
        if not include_deleted:
            parts.append("r.deleted = 0")
        if selection.heads_only:
            parts.append("r.rk IN (SELECT e.head FROM experiments e WHERE "
                         f"e.project = {self.bind(project)} AND e.head IS NOT NULL)")
        if selection.where is not None:
            parts.append(self.where(selection.where))
        return " AND ".join(parts)

    # Predicates ------------------------------------------------------------------------------

    def where(self, node: Node) -> str:
        if isinstance(node, And):
            return _balanced(" AND ", [self.where(i) for i in node.items])
        if isinstance(node, Or):
            return _balanced(" OR ", [self.where(i) for i in node.items])
        if isinstance(node, Not):
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

    def any_of(self, field: Field, values: Iterable[Value]) -> str:
        return _balanced(" OR ", [self.compare(field, "=", v) for v in values])

    def has_value(self, field: Field) -> str:
        """The run has a value for ``field``: not missing, not null (NaN is a value)."""
        if field.kind == "run":
            return f"{RUN_COLUMN[field.name]} IS NOT NULL" if field.name in _NULLABLE \
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
        column = RUN_COLUMN[name]
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
        if op == "!=":
            has = self.has_value(Field("config", path))
            return f"({has} AND NOT ({self._config_compare(path, '=', value)}))"
        head = f"c.path = {self.bind(path)} AND "
        if isinstance(value, bool):
            test = f"c.kind = 'b' AND c.num = {self.number(int(value))}"
        elif isinstance(value, float) and math.isnan(value):
            test = "c.kind = 'n' AND c.num IS NULL"
        elif isinstance(value, (int, float)):
            test = f"c.kind IN ('n', 't') AND c.num {op} {self.number(value)}"
        else:
            assert isinstance(value, str)
            text = self.d.text("c.txt") if op != "=" else "c.txt"
            test = f"(c.kind = 's' AND {text} {op} {self.bind(value)})"
            seconds = iso_seconds(value)
            if seconds is not None:  # a datetime config compares with a date string by time
                test = f"({test} OR (c.kind = 't' AND c.num {op} {self.number(seconds)}))"
        return self.rows_where("run_configs", "c", head + test)

    def contains(self, field: Field, value: str) -> str:
        if field.kind == "tags":
            return self.compare(field, "=", value)
        if field.kind == "run":
            column = RUN_COLUMN[field.name]
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
                column = RUN_COLUMN[field.name]
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
                # direction; null, NaN and missing last.
                terms += [f"(CASE WHEN {alias}.kind IN {_NUMERIC_KINDS} AND {alias}.num IS NOT "
                          f"NULL THEN 0 WHEN {alias}.kind IN ('s', 'l') THEN 1 ELSE 2 END)",
                          self.d.sort(f"{alias}.num", down),
                          self.d.sort(self.d.text(f"{alias}.txt"), down)]
        terms.append("r.rk")
        return joins, terms

    def group_keys(self, by: Sequence[Field]) -> tuple[list[str], list[str]]:
        """LEFT JOINs and the select expressions of the grouping fields."""
        joins: list[str] = []
        exprs: list[str] = []
        for i, field in enumerate(by):
            if field.kind == "run":
                exprs.append(RUN_COLUMN[field.name])
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


def _balanced(op: str, parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    middle = len(parts) // 2
    return f"({_balanced(op, parts[:middle])}{op}{_balanced(op, parts[middle:])})"


def compile_select(project: str, selection: Selection, *, include_deleted: bool,
                   dialect: Dialect) -> Compiled:
    """The statement that picks the run keys (``rk``) of a selection, in order."""
    b = Builder(dialect)
    joins, terms = b.order_terms(selection)
    where = b.base(project, include_deleted, selection)
    window = b.window(selection.limit, selection.offset)
    sql = (f"SELECT r.rk FROM runs r {' '.join(joins)} WHERE {where} "
           f"ORDER BY {', '.join(terms)}{window}")
    return Compiled(sql, tuple(b.params))


def compile_load(rks: Sequence[int], dialect: Dialect) -> tuple[Compiled, Compiled]:
    """The statements that load the run rows and the metric rows of the given runs."""
    columns = ", ".join(f"r.{c}" for c in RUN_COLUMNS)
    runs = Builder(dialect)
    keys = dialect.rk_list(runs.bind(dialect.rk_param(rks)))
    run_sql = f"SELECT {columns} FROM runs r WHERE r.rk IN ({keys})"
    metric_sql = ("SELECT m.rk, m.metric, m.count, m.last, m.last_step, m.min, m.max FROM "
                  f"metrics m WHERE m.rk IN ({keys})")
    params = tuple(runs.params)
    return Compiled(run_sql, params), Compiled(metric_sql, params)
