"""The runs-table query language evaluated in Python, over run states: time travel's engine.

``list_runs``, ``group_runs`` and ``fetch_runs_table`` with ``as_of`` fold the log up to a
position into run states (there are no projection tables of the past to query), and this
module picks, orders and groups them with exactly the semantics the SQL compiler gives the
same tree (``docs/queries.md``): a missing value fails every comparison but ``!= null``,
``not`` is plain negation, NaN equals only ``nan``, numbers of every kind (a bool as 0 or 1,
a datetime as its POSIX seconds) order before text and lists, and missing values sort last
in both directions. The tests hold the two to each other on random trees.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from engine._core.content import ENV_PREFIX
from engine._core.model import RunState

from .plans import group_hashable, group_sort_key
from .tree import (
    TIME_FIELDS,
    And,
    Compare,
    Contains,
    Exists,
    Field,
    In,
    MetricStats,
    Node,
    Not,
    Or,
    OrderKey,
    RunGroup,
    Selection,
    Value,
    iso_seconds,
)

__all__ = ["group_states", "matches", "select_states"]

_MISSING: Any = object()
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b}


def _seconds(when: datetime) -> float:
    """POSIX seconds; a naive datetime is UTC, as queries take it."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def value_of(state: RunState, field: Field) -> Any:
    """What ``field`` holds for the run: a run time as POSIX seconds, tags as a set,
    ``_MISSING`` for a config path or metric the run lacks."""
    if field.kind == "run":
        value = getattr(state, field.name)
        if isinstance(value, datetime):
            return _seconds(value)
        return None if value is None else str(value)
    if field.kind == "tags":
        return state.tags
    if field.kind == "config":
        if field.name.startswith(ENV_PREFIX):
            return state.env.get(field.name[len(ENV_PREFIX):], _MISSING)
        return state.config.get(field.name, _MISSING)
    summary = state.metrics.get(field.name)
    return _MISSING if summary is None else getattr(summary, field.aggregate or "last")


def _present(field: Field, value: Any) -> bool:
    if field.kind == "tags":
        return bool(value)
    return value is not _MISSING and value is not None


def _equal(field: Field, value: Any, literal: Value) -> bool:
    """``field = literal`` for a run that has a value (``literal`` is not null)."""
    if field.kind == "tags":
        return literal in value
    if field.kind == "metric":
        assert isinstance(literal, (int, float))
        return math.isnan(value) if math.isnan(literal) else bool(value == literal)
    if field.kind == "run":
        return bool(value == literal)
    if isinstance(literal, bool):
        return isinstance(value, bool) and value == literal
    if isinstance(literal, float) and math.isnan(literal):
        return isinstance(value, float) and math.isnan(value)
    if _number(literal):
        return (_number(value) and value == literal) or \
            (isinstance(value, datetime) and _seconds(value) == literal)
    assert isinstance(literal, str)
    if isinstance(value, list):  # a list equals the text of its JSON form
        return orjson.dumps(value).decode() == literal
    seconds = iso_seconds(literal)
    return (isinstance(value, str) and value == literal) or \
        (isinstance(value, datetime) and seconds is not None and _seconds(value) == seconds)


def _ordered(field: Field, op: str, value: Any, literal: Value) -> bool:
    test = _OPS[op]
    if field.kind in ("run", "metric"):
        return test(value, literal)
    if _number(literal):
        return (_number(value) and test(value, literal)) or \
            (isinstance(value, datetime) and test(_seconds(value), literal))
    assert isinstance(literal, str)
    seconds = iso_seconds(literal)
    return (isinstance(value, str) and test(value, literal)) or \
        (isinstance(value, datetime) and seconds is not None
         and test(_seconds(value), seconds))


def _compare(field: Field, op: str, state: RunState, literal: Value) -> bool:
    value = value_of(state, field)
    present = _present(field, value)
    if literal is None:
        return present if op == "!=" else not present
    if field.kind == "tags":
        return (literal not in value) if op == "!=" else literal in value
    if not present:
        return False
    if op == "=":
        return _equal(field, value, literal)
    if op == "!=":
        return not _equal(field, value, literal)
    return _ordered(field, op, value, literal)


def matches(node: Node | None, state: RunState) -> bool:
    """Whether the run passes the ``where`` tree (None passes every run)."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(matches(item, state) for item in node.items)
    if isinstance(node, Or):
        return any(matches(item, state) for item in node.items)
    if isinstance(node, Not):
        return not matches(node.item, state)
    if isinstance(node, Exists):
        return _present(node.field, value_of(state, node.field))
    if isinstance(node, Compare):
        return _compare(node.field, node.op, state, node.value)
    if isinstance(node, Contains):
        value = value_of(state, node.field)
        if node.field.kind == "tags":
            return node.value in value
        return (isinstance(value, str) and node.value in value) or \
            (isinstance(value, list) and node.value in value)
    assert isinstance(node, In)
    found = any(_compare(node.field, "=", state, v) for v in node.values)
    if not node.negated:
        return found
    if node.field.kind == "tags":
        return not found
    return _present(node.field, value_of(state, node.field)) and not found


def _sort_key(field: Field, state: RunState) -> tuple[int, Any]:
    """(class, value): class 0 numbers, 1 text and lists, 2 missing (last either way)."""
    value = value_of(state, field)
    if value is _MISSING or value is None:
        return 2, None
    if field.kind in ("run", "metric"):
        if isinstance(value, float) and math.isnan(value):
            return 2, None
        return 0, value
    if isinstance(value, bool):
        return 0, int(value)
    if isinstance(value, datetime):
        return 0, _seconds(value)
    if _number(value):
        return (2, None) if math.isnan(value) else (0, value)
    if isinstance(value, list):
        return 1, orjson.dumps(value).decode()
    return 1, value


def _ordering(keys: Sequence[OrderKey]) -> Callable[[RunState, RunState], int]:
    def compare(a: RunState, b: RunState) -> int:
        for key in keys:
            (ca, va), (cb, vb) = _sort_key(key.field, a), _sort_key(key.field, b)
            if ca != cb:
                return -1 if ca < cb else 1
            if va != vb:
                less = va < vb
                return (1 if less else -1) if key.descending else (-1 if less else 1)
        return 0  # a stable sort then keeps the oldest first

    return compare


def select_states(states: Iterable[RunState], selection: Selection, *,
                  heads: frozenset[str] = frozenset()) -> list[RunState]:
    """The runs ``selection`` picks from ``states`` (given oldest first), in its order;
    ``heads`` are the run ids that head their experiment (for ``heads_only``)."""
    picked = [s for s in states if matches(selection.where, s)
              and (not selection.heads_only or s.run_id in heads)]
    if selection.order:
        picked.sort(key=functools.cmp_to_key(_ordering(selection.order)))
    end = None if selection.limit is None else selection.offset + selection.limit
    return picked[selection.offset:end]


def _group_value(state: RunState, field: Field) -> Any:
    """A grouping field's value as ``group_runs`` returns it: run times as UTC datetimes,
    a config's value (a naive datetime taken as UTC), None when missing."""
    if field.kind == "run":
        value = getattr(state, field.name)
        if field.name in TIME_FIELDS:
            return value
        return None if value is None else str(value)
    value = value_of(state, field)
    if value is _MISSING:
        value = None
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def group_states(states: Iterable[RunState], by: Sequence[Field],
                 aggregates: Sequence[Field] | None) -> list[RunGroup]:
    """``states`` grouped by the values of ``by``, with the count, mean, min and max of each
    metric aggregate (None: every metric's ``last``), in the order of the group keys."""
    groups: dict[tuple[Any, ...], tuple[tuple[Any, ...], list[RunState]]] = {}
    for state in states:
        key = tuple(_group_value(state, f) for f in by)
        hashed = tuple(group_hashable(v) for v in key)
        groups.setdefault(hashed, (key, []))[1].append(state)
    names = [str(f) for f in by]
    out = []
    for key, members in groups.values():
        if aggregates is None:
            wanted = [Field("metric", m, "last")
                      for m in sorted({m for s in members for m in s.metrics})]
        else:
            wanted = list(aggregates)
        metrics = {str(f): _stats(members, f) for f in wanted}
        out.append(RunGroup(dict(zip(names, key, strict=True)), len(members), metrics))
    out.sort(key=lambda g: [group_sort_key(v) for v in g.key.values()])
    return out


def _stats(members: Sequence[RunState], field: Field) -> MetricStats:
    """Count, mean, min and max of an aggregate over the runs that have it (NaN passed
    over), as SQL's ``count``, ``avg``, ``min`` and ``max`` give them."""
    values = []
    for state in members:
        summary = state.metrics.get(field.name)
        if summary is not None:
            value = float(getattr(summary, field.aggregate or "last"))
            if not math.isnan(value):
                values.append(value)
    if not values:
        return MetricStats(0, math.nan, math.nan, math.nan)
    return MetricStats(len(values), sum(values) / len(values), min(values), max(values))
