"""Every error Kittiwake raises on purpose.

The tree:

    EngineError                     base of everything below
    ├── ValidationError             bad input: a key, value, step, tag or argument (a ValueError)
    ├── QuerySyntaxError            a `where` query that does not parse (a ValueError)
    ├── RunNotFoundError            no such run in the project (a LookupError)
    ├── RunExistsError              start_run with an id that is taken, without resume=True
    ├── ConcurrencyError            expected_version did not match the stream's version
    ├── BackpressureError           more pending points than the tracker allows
    ├── ClosedError                 the tracker or run was used after it closed
    ├── RunAbortedError             the run was aborted; raised in sync training code
    ├── StorageError                the store failed (disk full, database unreachable, read-only
    │                               file): what was being written is kept and retried
    ├── IntegrityError              stored bytes no longer match their digest or checksum
    └── AuthError                   a remote call without a valid token, or outside its project
                                    or role
    ValidationError
    └── FileSourceError             a file to log cannot be read (missing, a directory, no access)

Errors from the database drivers are translated at the store boundary and chained
(``raise ... from exc``), so callers never need to catch ``sqlite3`` or ``asyncpg`` types.
The type says what happened to the data: a ``ValidationError`` (or another refusal) means
nothing of the call was written; a ``StorageError`` means the store failed and what was
accepted is kept, to be written once the store is back.
"""

from __future__ import annotations

import unicodedata

__all__ = [
    "AuthError",
    "BackpressureError",
    "ClosedError",
    "ConcurrencyError",
    "EngineError",
    "FileSourceError",
    "IntegrityError",
    "QuerySyntaxError",
    "RunAbortedError",
    "RunExistsError",
    "RunNotFoundError",
    "StorageError",
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


class StorageError(EngineError):
    """The store failed: a full disk, a read-only file, a database that is unreachable or
    restarting. Nothing accepted is dropped: a batch that could not be written stays
    buffered and is sent again, and ``flush()`` raises this until it is written."""


class IntegrityError(EngineError):
    """Stored data is damaged: bytes whose digest or checksum no longer matches.

    :ivar where: what is damaged (a digest, an event position, a file name), if known.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.where = where


class AuthError(EngineError):
    """A remote call without a valid token, or outside the token's project or role."""


class FileSourceError(ValidationError):
    """A file to log cannot be read: it is missing, a directory, or not readable. Nothing of
    the call was written."""
