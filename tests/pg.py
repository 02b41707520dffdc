"""PostgreSQL for the tests: a fresh schema per database, dropped when the run ends.

Each test isolates itself in a schema of its own, named in the URL (``?search_path=…``, which
the store creates on connect). Every schema this process hands out is dropped at the end of
the run (``drop_schemas``, called from ``conftest.pytest_sessionfinish``), and schemas left by
an earlier run on this machine that was killed are dropped when the next run starts (their
names carry the machine and the process id of the run that made them).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import socket
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio

from tests.conftest import in_thread

__all__ = ["admin", "drop_schemas", "fresh_schema_url", "lock_waiters", "opened", "raw",
           "with_params"]

# Schema names carry this machine and process, so a later run drops only what runs on this
# machine left behind when they were killed (never a live run's, here or elsewhere).
_HOST = hashlib.blake2b(socket.gethostname().encode(), digest_size=3).hexdigest()
_PREFIX = f"kwt_{_HOST}_"
_created: list[tuple[str, str]] = []
_counter = itertools.count()


def with_params(url: str, **params: str) -> str:
    """``url`` with the given query parameters set (replacing any of the same name)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*query, *params.items()])))


def fresh_schema_url(base_url: str) -> str:
    """A URL on ``base_url``'s database whose tables live in a new, empty schema."""
    schema = f"{_PREFIX}{os.getpid()}_{next(_counter)}_{uuid.uuid4().hex[:6]}"
    _created.append((base_url, schema))
    return with_params(base_url, search_path=schema)


async def admin(base_url: str) -> Any:
    """A plain asyncpg connection to ``base_url`` (for what only the server can do); in the
    URL's schema when it names one (asyncpg sends unknown URL parameters, ``search_path``
    among them, as session settings)."""
    import asyncpg

    return await asyncpg.connect(base_url)


async def opened(url: str, durability: str = "normal") -> Any:
    """An open store on ``url`` (close it)."""
    from engine._core.events import default_upcasters
    from engine._storage.registry import open_store

    store = open_store(url, durability=durability, upcasters=default_upcasters())
    await store.open()
    return store


async def raw(store: Any, sql: str) -> list[tuple[Any, ...]]:
    """The rows of one SQL statement, run on a PostgreSQL store's own reader connections."""
    from engine._storage.postgres.store import PostgresStore

    assert isinstance(store, PostgresStore)
    rows = await store.readers.run(lambda connection: connection.fetch(sql))
    return [tuple(r) for r in rows]


async def lock_waiters(connection: Any, lock: str, count: int) -> None:
    """Return once ``count`` sessions wait for the advisory lock ``lock`` (an SQL expression
    of int4, evaluated on ``connection``). Another session's wait is only visible in
    ``pg_locks``, so this looks again until it is (the test's timeout bounds it)."""
    key = await connection.fetchval(f"SELECT {lock}")
    while True:
        waiting = await connection.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
            "AND objid::bigint = $1 AND NOT granted", key & 0xFFFFFFFF)
        if waiting >= count:
            return
        await anyio.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_schemas(base_url: str, *, leftovers: bool = False) -> None:
    """Drop every schema this process created on ``base_url`` — or, with ``leftovers``,
    every test schema whose run has ended without dropping it."""
    import asyncpg

    mine = [schema for url, schema in _created if url == base_url]

    async def drop() -> None:
        connection = await admin(base_url)
        try:
            await connection.execute("SET lock_timeout = '10s'")
            names = mine
            if leftovers:
                rows = await connection.fetch(
                    "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"{_PREFIX}%")
                pids = {r[0]: r[0][len(_PREFIX):].split("_")[0] for r in rows}
                names = [name for name, pid in pids.items()
                         if pid.isdigit() and not _alive(int(pid))]
            for schema in names:
                try:
                    await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                except asyncpg.LockNotAvailableError:
                    if not leftovers:
                        raise
                    # A dead run's statement may still run on the server, holding its
                    # tables: leave the schema to a later run rather than fail this one.
        finally:
            await connection.close()

    if mine or leftovers:
        in_thread(lambda: asyncio.run(drop()))
    if not leftovers:
        _created[:] = [(url, s) for url, s in _created if url != base_url]
