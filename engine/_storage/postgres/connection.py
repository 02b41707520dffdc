"""Connections to PostgreSQL: the URL, session settings, codecs, and surviving a lost link.

A Kittiwake URL is a libpq-style URL with one parameter of its own: ``search_path`` names the
schema Kittiwake keeps its tables in (created on connect; default: the server's current
schema). Every other query parameter goes to asyncpg as usual (``sslmode``,
``application_name``, server settings…).

Steps are stored as ``numeric``: every int (logging allows up to 2**53, the store itself
any int64) and every float is exact there, and they compare exactly with each other, so no
cap is baked into the schema (``double precision`` would round ints past 2**53; a bigint and
double pair would make every comparison two). asyncpg writes ints and floats into
``numeric`` exactly; the codec installed here reads them back as ``int`` when integral, else
``float`` — the canonical form steps have everywhere else.

PostgreSQL's ``text`` cannot hold NUL, and no text Kittiwake writes does: the logging API
refuses it (and writes it as ``\\0`` in a failure reason made from an exception), on every
backend, so a log reads the same on both (``engine._core.validate``; docs/decisions.md).

Connections can drop (a server restart, ``pg_terminate_backend``, a network blip). Work that
is safe to repeat — every read, and an append whose event ids make a retry idempotent — runs
again on a fresh connection after such a *transient* error, after each pause of
``RECONNECT_DELAYS``. What the driver raises is translated here, in :func:`failure`, and
chained to it: a value the server cannot take is a ``ValidationError`` (a refusal: nothing of
it is written); anything else — the link stays down, the server is restarting, its disk is
full, the database is read-only — is a ``StorageError``, and a writer keeps its batch and
sends it again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeAlias, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import asyncpg
from asyncpg.pool import PoolConnectionProxy

from engine._projections.tables import PROJECTION_TABLES
from engine.errors import EngineError, StorageError, ValidationError

__all__ = ["RECONNECT_DELAYS", "Link", "Readers", "Target", "bad_value", "broken", "driver_error",
           "failure", "gone", "open_connection", "quote_ident", "setup", "transient"]

T = TypeVar("T")

Link: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"
"""A connection: one of a store's own, or one the reader pool lends."""

RECONNECT_DELAYS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
"""Pauses before each new attempt, on a new connection, after a transient error (about 4 s in
all)."""
_CLOSE_WITHIN = 5.0  # seconds a pool waits for reads to hand back their connections
# A snapshot read locks the projection tables before its first query, which is when a
# REPEATABLE READ transaction takes its snapshot. Otherwise a read that waits for a rebuild's
# swap (which holds them ACCESS EXCLUSIVE) keeps a snapshot from before it, and then reads
# the swapped-in tables without the rows the swap itself wrote. (LOCK takes no snapshot; the
# swap locks the same tables in the same order, so the two cannot deadlock.)
_SNAPSHOT = ("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
             f"LOCK TABLE {', '.join(PROJECTION_TABLES)} IN ACCESS SHARE MODE")


class Target:
    """Where to connect: the asyncpg DSN, the schema, and the session settings."""

    def __init__(self, url: str, *, durability: str) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schemas = [value for key, value in query if key == "search_path"]
        rest = [(key, value) for key, value in query if key != "search_path"]
        self.schema: str | None = schemas[-1] if schemas else None
        if self.schema is not None and not self.schema:
            raise ValidationError("search_path in a PostgreSQL URL must name a schema",
                                  key="url")
        self.dsn = urlunsplit(parts._replace(query=urlencode(rest)))
        userinfo, at, host = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]  # never show a password
        self.shown = urlunsplit(parts._replace(netloc=f"{user}@{host}" if at else host))
        self.settings: dict[str, str] = {
            # "normal" durability: a commit returns before its WAL is flushed (a crash of the
            # server may lose the last commits; the database stays consistent).
            "synchronous_commit": "on" if durability == "full" else "off",
        }
        if self.schema is not None:
            self.settings["search_path"] = quote_ident(self.schema)

    def channel(self, schema: str) -> str:
        """The LISTEN/NOTIFY channel of the log in ``schema`` (channels are per database;
        names are at most 63 bytes)."""
        name = f"kittiwake:{schema}"
        if len(name.encode()) > 63:
            name = f"kittiwake:{hashlib.blake2b(schema.encode(), digest_size=16).hexdigest()}"
        return name


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def _numeric_out(value: int | float | Decimal) -> str:
    if isinstance(value, float):
        return format(Decimal(value), "f")  # every float is an exact decimal
    return str(value)


def _numeric_in(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        return float(text)  # correctly rounded: the float the exact decimal came from


async def setup(connection: Link) -> None:
    """Make a new connection read and write steps in ``numeric`` exactly."""
    await connection.set_type_codec("numeric", schema="pg_catalog", encoder=_numeric_out,
                                    decoder=_numeric_in, format="text")


async def open_connection(target: Target, *,
                          within: float = 60) -> asyncpg.Connection[asyncpg.Record]:
    """A new connection with the session settings and codecs."""
    connection = await asyncpg.connect(target.dsn, server_settings=target.settings,
                                       timeout=within)
    try:
        await setup(connection)
    except BaseException:
        connection.terminate()
        raise
    return connection


def transient(exc: BaseException, connection: Link | None = None) -> bool:
    """Whether ``exc`` says the work may succeed if tried again: the connection is gone (or
    its protocol was left mid-message by the server going away), the server is restarting,
    or the transaction lost a deadlock or a serialization race."""
    if isinstance(exc, (OSError, asyncpg.PostgresConnectionError,
                        asyncpg.exceptions.AdminShutdownError,
                        asyncpg.exceptions.CrashShutdownError,
                        asyncpg.exceptions.CannotConnectNowError,
                        asyncpg.exceptions.TransactionRollbackError,
                        asyncpg.InternalClientError)):
        return True
    return connection is not None and gone(connection)


def gone(connection: Link) -> bool:
    """Whether the connection is closed (a pooled one the pool took back, when the server
    closed it, counts as closed)."""
    try:
        return bool(connection.is_closed())
    except asyncpg.InterfaceError:
        return True


def broken(exc: BaseException) -> bool:
    """Whether the connection that raised ``exc`` is unfit for more work (close it)."""
    return transient(exc) and not isinstance(exc, asyncpg.exceptions.TransactionRollbackError)


def failure(exc: BaseException, what: str, *, lost: bool = False) -> EngineError:
    """The error to raise, chained to ``exc``, for a driver error met while doing ``what``:
    ``ValidationError`` for a value the server cannot take (an invalid argument, a data
    exception), ``StorageError`` for a lost link (``lost``, or an error that says so) and
    for anything else the server or the driver reported."""
    if bad_value(exc) and not lost:
        return ValidationError(f"PostgreSQL cannot store this value while {what}: {exc}")
    if lost or transient(exc):
        return StorageError(f"lost the connection to PostgreSQL while {what}: {exc}")
    return StorageError(f"PostgreSQL failed while {what}: {exc}")


def bad_value(exc: BaseException) -> bool:
    """A data exception of the server (SQLSTATE class 22), or an argument the driver cannot
    encode (its own ``DataError``: an ``InterfaceError`` that is a ``ValueError``)."""
    return isinstance(exc, asyncpg.exceptions.DataError) or (
        isinstance(exc, asyncpg.InterfaceError) and isinstance(exc, ValueError))


def driver_error(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the server, the driver or the network (not from
    Kittiwake's own code)."""
    return isinstance(exc, (asyncpg.PostgresError, asyncpg.InterfaceError,
                            asyncpg.InternalClientError, OSError))


Work = Callable[[Link], Awaitable[T]]


async def _reset(connection: Link) -> None:
    # Kittiwake leaves no session state behind; only an interrupted read may have left its
    # snapshot open. (asyncpg's default reset costs a round trip per read.)
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


class Readers:
    """A small pool of connections for reads; a read that meets a transient error runs
    again on another connection (the pool replaces closed ones)."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self.pool = pool

    @classmethod
    async def create(cls, target: Target, size: int) -> Readers:
        """A pool of up to ``size`` connections."""
        pool = await asyncpg.create_pool(target.dsn, min_size=1, max_size=size, init=setup,
                                         reset=_reset, server_settings=target.settings)
        return cls(pool)

    async def run(self, work: Work[T], *, snapshot: bool = False, what: str = "reading") -> T:
        """``work(connection)``; inside one read-only snapshot when ``snapshot`` (several
        statements that must agree).

        :raises StorageError: the server stayed unreachable through every retry, or failed.
        :raises ValidationError: a parameter the server cannot take.
        """
        last = len(RECONNECT_DELAYS) - 1
        for attempt, delay in enumerate(RECONNECT_DELAYS):
            if delay:
                await anyio.sleep(delay)
            retry = False
            try:
                async with self.pool.acquire() as connection:
                    try:
                        if not snapshot:
                            return await work(connection)
                        # One round trip; an interrupted read is rolled back by ``_reset``.
                        await connection.execute(_SNAPSHOT)
                        result = await work(connection)
                        await connection.execute("COMMIT")
                        return result
                    except Exception as exc:
                        # Judged here, while the pool still lends the connection.
                        retry = driver_error(exc) and transient(exc, connection)
                        if ((retry and broken(exc)) or bad_value(exc)) and not gone(connection):
                            # The pool opens a new one in its place. (An argument the driver
                            # could not encode leaves the statement's protocol half sent: the
                            # server would hold the next statement inside it.)
                            connection.terminate()
                        raise
            except Exception as exc:
                if not driver_error(exc):
                    raise
                if attempt == last or not (retry or transient(exc)):
                    raise failure(exc, what, lost=retry) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]], what: str) -> None:
        """``executemany`` on a pooled connection (retried, so only for idempotent writes)."""
        async def work(connection: Link) -> None:
            await connection.executemany(sql, rows)

        await self.run(work, what=what)

    async def close(self) -> None:
        """Close every pooled connection (abruptly if a read still holds one after a
        while)."""
        with anyio.move_on_after(_CLOSE_WITHIN):
            await self.pool.close()
            return
        self.pool.terminate()
