"""Which literals each field of the runs-table query language can be compared with.

The parser hands every literal to ``check`` with the field and operator it meets, so that a
tree that parsed always compiles, and a mistake (a status that does not exist, a date that
does not parse, text compared with a metric) is reported where the literal stands.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from engine._core.model import Status
from engine.errors import QuerySyntaxError

from .tree import TIME_FIELDS, Field, Value, iso_seconds

__all__ = ["Fail", "check"]

Fail = Callable[[str, int], QuerySyntaxError]
"""Makes the error for a message at a position of the query."""

_STATUSES = tuple(s.value for s in Status)


def check(field: Field, op: str, value: Value, at: int, fail: Fail) -> Value:
    """``value`` as ``field op value`` compares it: a date as POSIX seconds for a run
    time, else unchanged.

    :raises QuerySyntaxError: ``fail(message, at)`` for a literal the field never holds.
    """
    ordering = op not in ("=", "!=")
    if ordering and (value is None or isinstance(value, bool) or
                     (isinstance(value, float) and math.isnan(value))):
        raise fail(f"{op} needs a number or a string, not {_kind(value)}", at)
    if field.kind == "metric":
        if isinstance(value, (str, bool)):
            raise fail(f"{field} is a number: compare it with a number, nan or null",
                              at)
    elif field.kind == "tags":
        if ordering:
            raise fail("tags are a set: use =, !=, in, not in, contains or exists", at)
        if not (value is None or isinstance(value, str)):
            raise fail("a tag is a string, such as 'baseline'", at)
    elif field.kind == "run" and field.name in TIME_FIELDS:
        if isinstance(value, str):
            seconds = iso_seconds(value)
            if seconds is None:
                raise fail(f"{value!r} is not an ISO-8601 date or time, such as "
                                  "'2024-05-01' or '2024-05-01T12:00:00Z'", at)
            return seconds
        if isinstance(value, bool) or (isinstance(value, float) and math.isnan(value)):
            raise fail(f"{field.name} is a time: compare it with an ISO-8601 string or "
                              "POSIX seconds", at)
    elif field.kind == "run":
        if value is not None and not isinstance(value, str):
            raise fail(f"{field.name} is text: compare it with a 'string'", at)
        if field.name == "status" and value is not None and not ordering \
                and value not in _STATUSES:
            raise fail(f"{value!r} is not a status: use one of "
                              f"{', '.join(_STATUSES)}", at)
    return value


def _kind(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a bool"
    return "nan"
