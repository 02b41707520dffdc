"""What the SQL both backends share runs on: a session on one connection, and a reader.

A statement written once for both backends marks each parameter with ``?``, in the order the
parameters are passed (and holds no literal ``?``); PostgreSQL's session numbers the marks
(``$1``, ``$2``, …) once per statement text (:func:`numbered`). The few words that still
differ between the two databases are the helpers below, each deciding by the session's
``Dialect`` (the query compiler's, ``engine._query.dialect``), as the runs-table compiler
does for its own statements.

A backend implements :class:`Session` on its connections and :class:`Reader` on its read
connections; the reads (``reads``), the projection IO (``io``) and the rebuild (``rebuild``)
are written once against them. A session raises the backend's own translation of its driver's
errors: ``StorageError`` when the database failed, ``ValidationError`` for a value it cannot
store.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any, Protocol, TypeVar

from engine._query.dialect import Dialect
from engine._query.sql import Compiled

__all__ = ["Reader", "Row", "Session", "greatest", "numbered", "one_of", "pairs_in"]

T = TypeVar("T")

Row = Sequence[Any]
"""A row as a backend's driver returns it: indexable, sliceable, unpackable."""


class Session(Protocol):
    """Statements on one connection, inside whatever transaction or snapshot its owner
    holds."""

    @property
    def dialect(self) -> Dialect:
        """The SQL this session speaks."""
        ...

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]:
        """The rows of one statement written with ``?`` marks.

        :raises StorageError: the database failed.
        :raises ValidationError: a parameter the database cannot take.
        """
        ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement written with ``?`` marks; how many rows it changed."""
        ...

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement written with ``?`` marks once per row of parameters."""
        ...

    async def query(self, statement: Compiled) -> Sequence[Row]:
        """The rows of a statement the query compiler wrote in this session's dialect."""
        ...


class Reader(Protocol):
    """Where reads run: beside commits, never inside one."""

    async def read(self, work: Callable[[Session], Awaitable[T]], *,
                   snapshot: bool = False) -> T:
        """``work(session)``; inside one read snapshot when ``snapshot`` (several statements
        that must agree), else each statement is its own. ``work`` may run again after a
        failure that a new attempt may cure, so it only reads.

        :raises ClosedError: the store is closed.
        :raises StorageError: the database failed.
        """
        ...


@lru_cache(maxsize=512)
def numbered(sql: str) -> str:
    """``sql`` with its ``?`` marks numbered ``$1``, ``$2``, … (PostgreSQL's placeholders)."""
    parts = sql.split("?")
    out = [parts[0]]
    for number, part in enumerate(parts[1:], 1):
        out.append(f"${number}{part}")
    return "".join(out)


def one_of(dialect: Dialect, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
    """A condition that ``column`` (text) is one of ``values``, and its parameters: one array
    on PostgreSQL (one statement text whatever their number), one mark each on SQLite."""
    if dialect.numbered:
        return f"{column} = ANY(?::text[])", [list(values)]
    return f"{column} IN ({','.join('?' * len(values))})", list(values)


def pairs_in(dialect: Dialect, columns: tuple[str, str],
             pairs: Sequence[tuple[Any, Any]]) -> tuple[str, list[Any]]:
    """A condition that the two text ``columns`` together are one of ``pairs``, and its
    parameters."""
    a, b = columns
    if dialect.numbered:
        return (f"({a}, {b}) IN (SELECT * FROM unnest(?::text[], ?::text[]))",
                [[p for p, _ in pairs], [q for _, q in pairs]])
    return (f"({a}, {b}) IN (VALUES {','.join(['(?, ?)'] * len(pairs))})",
            [x for pair in pairs for x in pair])


def greatest(dialect: Dialect, *exprs: str) -> str:
    """The greatest of ``exprs`` (SQLite's ``max`` of several arguments)."""
    return f"{'greatest' if dialect.numbered else 'max'}({', '.join(exprs)})"
