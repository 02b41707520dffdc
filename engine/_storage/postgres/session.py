"""asyncpg connections as sessions of the shared SQL, and the pooled reader.

The shared statements mark parameters with ``?``; here they are numbered once per statement
text (``session.numbered``). Errors pass through untouched: whoever owns the connection
decides whether the work can run again (``connection.Readers``, the committer, the rebuild)
before it translates them (``connection.failure``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from engine._query.dialect import POSTGRES, Dialect
from engine._query.sql import Compiled
from engine._storage.session import Row, Session, numbered

from .connection import Link, Readers

__all__ = ["PostgresReader", "PostgresSession"]

T = TypeVar("T")


class PostgresSession:
    """Statements on one asyncpg connection (the owner may swap ``connection`` after a
    reconnect)."""

    dialect: Dialect = POSTGRES

    def __init__(self, connection: Link) -> None:
        self.connection = connection

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Row]:
        return cast(Sequence[Row], await self.connection.fetch(numbered(sql), *params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        status = await self.connection.execute(numbered(sql), *params)
        count = status.rsplit(" ", 1)[-1]  # "UPDATE 5", "INSERT 0 1", "BEGIN"
        return int(count) if count.isdigit() else 0

    async def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.connection.executemany(numbered(sql), rows)

    async def query(self, statement: Compiled) -> Sequence[Row]:
        return [tuple(r) for r in await self.connection.fetch(statement.sql, *statement.params)]


class PostgresReader:
    """Reads on the pooled reader connections, each run again on another connection after a
    transient error."""

    def __init__(self, readers: Readers) -> None:
        self.readers = readers

    async def read(self, work: Callable[[Session], Awaitable[T]], *,
                   snapshot: bool = False) -> T:
        async def on(connection: Link) -> T:
            return await work(PostgresSession(connection))

        return await self.readers.run(on, snapshot=snapshot)
