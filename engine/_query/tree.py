"""The runs-table query language's values: fields, the ``where`` tree, orderings, selections,
and the groups ``group_runs`` returns.

Every node renders back to canonical query text with ``str()``, and parsing that text gives an
equal tree, so a tree can travel as text (to a server, into a log line) without loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from engine._core.content import ENV_PREFIX

__all__ = [
    "AGGREGATES",
    "RUN_FIELDS",
    "TEXT_FIELDS",
    "TIME_FIELDS",
    "And",
    "Compare",
    "Contains",
    "Exists",
    "Field",
    "In",
    "MetricStats",
    "Node",
    "Not",
    "Or",
    "OrderKey",
    "RunGroup",
    "Selection",
    "Value",
    "bare_char",
    "iso_seconds",
    "render_value",
]

TEXT_FIELDS = ("run_id", "name", "status", "experiment", "notes", "worker")
TIME_FIELDS = ("created_at", "updated_at", "ended_at")
RUN_FIELDS = TEXT_FIELDS + TIME_FIELDS
AGGREGATES = ("last", "min", "max", "count", "last_step")

Value = str | int | float | bool | None
"""A literal: a string, a number (NaN and ±inf too), a bool, or None for ``null``."""



def bare_char(ch: str) -> bool:
    """Whether ``ch`` may appear in a name written without backticks."""
    return ch.isalnum() or ch in "_/-"


def _quote_name(name: str) -> str:
    if name and all(bare_char(c) for c in name):
        return name
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True, slots=True)
class Field:
    """A column of the runs table.

    ``kind`` is ``"run"`` (``name`` is one of ``RUN_FIELDS``), ``"tags"``, ``"config"``
    (``name`` is the config path, such as ``optimizer/lr``) or ``"metric"`` (``name`` is the
    metric, ``aggregate`` one of ``AGGREGATES``).
    """

    kind: str
    name: str
    aggregate: str | None = None

    def __str__(self) -> str:
        if self.kind == "config":
            if self.name.startswith(ENV_PREFIX):
                return f"env.{_quote_name(self.name[len(ENV_PREFIX):])}"
            return f"config.{_quote_name(self.name)}"
        if self.kind == "metric":
            return f"metrics.{_quote_name(self.name)}.{self.aggregate}"
        return self.name


def render_value(value: Value) -> str:
    """A literal as query text (the parser reads it back as the same value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    return str(value)


def iso_seconds(text: str) -> float | None:
    """POSIX seconds of an ISO-8601 date or datetime (naive means UTC), or None."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    try:
        return when.timestamp()
    except (OverflowError, ValueError):  # pragma: no cover - years 1..9999 all fit
        return None


@dataclass(frozen=True, slots=True)
class Compare:
    """``field op value`` with ``op`` one of ``= != < <= > >=``."""

    field: Field
    op: str
    value: Value

    def __str__(self) -> str:
        return f"{self.field} {self.op} {render_value(self.value)}"


@dataclass(frozen=True, slots=True)
class In:
    """``field in (values)``, or ``field not in (values)`` when ``negated``."""

    field: Field
    values: tuple[Value, ...]
    negated: bool = False

    def __str__(self) -> str:
        word = "not in" if self.negated else "in"
        return f"{self.field} {word} ({', '.join(render_value(v) for v in self.values)})"


@dataclass(frozen=True, slots=True)
class Contains:
    """``field contains 'text'``: a substring, a list element, or a tag."""

    field: Field
    value: str

    def __str__(self) -> str:
        return f"{self.field} contains {render_value(self.value)}"


@dataclass(frozen=True, slots=True)
class Exists:
    """``field exists``: the run has a value there (not missing, not null)."""

    field: Field

    def __str__(self) -> str:
        return f"{self.field} exists"


@dataclass(frozen=True, slots=True)
class Not:
    """``not item``."""

    item: Node

    def __str__(self) -> str:
        return f"not {_wrap(self.item, (And, Or))}"


@dataclass(frozen=True, slots=True)
class And:
    """``a and b and …`` (two items or more)."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " and ".join(_wrap(i, (Or,)) for i in self.items)


@dataclass(frozen=True, slots=True)
class Or:
    """``a or b or …`` (two items or more)."""

    items: tuple[Node, ...]

    def __str__(self) -> str:
        return " or ".join(str(i) for i in self.items)


Node = Compare | In | Contains | Exists | Not | And | Or


def _wrap(node: Node, loose: tuple[type, ...]) -> str:
    return f"({node})" if isinstance(node, loose) else str(node)


@dataclass(frozen=True, slots=True)
class OrderKey:
    """One field of an ordering; missing values sort last in both directions."""

    field: Field
    descending: bool = False

    def __str__(self) -> str:
        return f"{'-' if self.descending else ''}{self.field}"


@dataclass(frozen=True, slots=True)
class Selection:
    """Which runs a read returns and in which order: ``list_runs``' arguments, parsed."""

    where: Node | None = None
    order: tuple[OrderKey, ...] = ()
    limit: int | None = None
    offset: int = 0
    heads_only: bool = False
    # The instant (POSIX seconds) ``status`` is judged at: a running run whose heartbeat
    # promise is broken by then reads ``crashed``. None: the recorded status.
    now: float | None = None


@dataclass(frozen=True, slots=True)
class MetricStats:
    """One metric aggregate over the runs of a group.

    :ivar count: how many runs of the group have a value (NaN and missing ones are passed
        over).
    :ivar mean: the mean of those values; NaN when ``count`` is 0.
    :ivar min: the smallest of them; NaN when ``count`` is 0.
    :ivar max: the largest of them; NaN when ``count`` is 0.
    """

    count: int
    mean: float
    min: float
    max: float


@dataclass(frozen=True, slots=True)
class RunGroup:
    """The runs that share the values of the grouping fields.

    :ivar key: each grouping field, as canonical text (``"config.optimizer"``), to the
        group's value (None for runs that lack it).
    :ivar count: the number of runs in the group.
    :ivar metrics: each aggregate, as canonical text (``"metrics.train/loss.min"``), to its
        stats over the group's runs.
    """

    key: dict[str, Any]
    count: int
    metrics: dict[str, MetricStats] = field(default_factory=dict)
