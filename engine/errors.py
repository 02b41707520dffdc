"""Every error Kittiwake raises on purpose.

The tree::

    EngineError                     base of everything below
    ├── ValidationError             bad input: a key, value, step, tag or argument (a ValueError)
    ├── QuerySyntaxError            a `where` query that does not parse (a ValueError)
    ├── RunNotFoundError            no such run in the project (a LookupError)
    ├── RunExistsError              start_run with an id that is taken, without resume=True
    ├── ConcurrencyError            expected_version did not match the stream's version
    ├── BackpressureError           more pending points than the tracker allows
    ├── ClosedError                 the tracker or run was used after it closed
    └── RunAbortedError             the run was aborted; raised in sync training code

Errors from the database drivers are translated at the store boundary and chained
(``raise ... from exc``), so callers never need to catch ``sqlite3`` or ``asyncpg`` types.
"""

from __future__ import annotations

import unicodedata

__all__ = [
    "BackpressureError",
    "ClosedError",
    "ConcurrencyError",
    "EngineError",
    "QuerySyntaxError",
    "RunAbortedError",
    "RunExistsError",
    "RunNotFoundError",
    "ValidationError",
]


class EngineError(Exception):
    """Base class of every error Kittiwake raises on purpose."""


class ValidationError(EngineError, ValueError):
    """Input was rejected; nothing of the call was written.

    :ivar key: the offending key (metric name, config path, tag or argument name), if any.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class QuerySyntaxError(EngineError, ValueError):
    """A runs-table query could not be parsed.

    ``str(error)`` shows the message, the query, and a caret under the problem.

    :ivar query: the query text.
    :ivar position: the 0-based character offset of the problem.
    """

    def __init__(self, message: str, query: str, position: int) -> None:
        self.message = message
        self.query = query
        self.position = max(0, min(position, len(query)))
        super().__init__(_pointed(message, query, self.position))


def _pointed(message: str, query: str, position: int) -> str:
    """The message, then the line of ``query`` that holds ``position`` with a caret under it.

    The caret is placed by what a terminal shows: a tab stays a tab (so it expands as the
    line's does), an East Asian wide character takes two columns, a combining or zero-width
    one none. A query of several lines names the line and column too.
    """
    lines = query.splitlines(keepends=True)
    if not lines or lines[-1].splitlines()[0] != lines[-1]:
        lines.append("")  # the empty line after a final line break
    number, start = 1, 0
    while number < len(lines) and position >= start + len(lines[number - 1]):
        start += len(lines[number - 1])
        number += 1
    text = (lines[number - 1].splitlines() or [""])[0]
    column = position - start
    pad = "".join(_width(ch) for ch in text[:column])
    where = f"at position {position}"
    if len(lines) > 1:
        where += f" (line {number}, column {column + 1})"
    return f"{message} {where}\n  {text}\n  {pad}^"


def _width(ch: str) -> str:
    """What stands in the caret's line for ``ch``."""
    if ch == "\t":
        return "\t"
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return ""
    return "  " if unicodedata.east_asian_width(ch) in ("W", "F") else " "


class RunNotFoundError(EngineError, LookupError):
    """No run with that id exists in the project."""


class RunExistsError(EngineError):
    """A run with that id already exists; pass ``resume=True`` to re-open it."""


class ConcurrencyError(EngineError):
    """The stream's version was not the ``expected_version`` the append named."""


class BackpressureError(EngineError):
    """Too many points are waiting to be written; the caller must slow down or flush."""


class ClosedError(EngineError):
    """The tracker or run handle was used after it was closed (or before it was opened)."""


class RunAbortedError(EngineError):
    """The run was aborted by ``abort_run``; raised in synchronous training code.

    :ivar reason: the reason given to ``abort_run``.
    """

    def __init__(self, run_id: str, reason: str | None) -> None:
        super().__init__(f"run {run_id!r} was aborted" + (f": {reason}" if reason else ""))
        self.run_id = run_id
        self.reason = reason
