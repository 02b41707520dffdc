"""The PostgreSQL schema: versioned migrations for the log, and the projection tables.

``schema_migrations`` records every migration applied; each runs in its own transaction with
its row, under an advisory lock per schema, so processes that connect to a fresh database at
the same moment migrate it once. A database migrated by a newer release is refused.

The tables are SQLite's, typed: steps are ``numeric`` (exact for ints to 2**63-1 and for
every float; see ``connection``), measured values ``double precision`` (which keeps -0.0; NaN
is stored as NULL as on SQLite), blobs ``bytea``, and text compares by code point
(``COLLATE "C"``) as SQLite's does. The projection tables are rendered from their
declarations (``engine._projections.tables``) by :func:`projection_ddl`, with a suffix and a
generation in their constraint and index names, so a rebuild can fill ``runs__new`` and
friends beside the live tables and swap them by renaming.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from engine._projections.tables import TABLES, TXT_PREFIX, Kind, Table, seeds
from engine._storage.tokens import TABLE as TOKENS
from engine.errors import EngineError

from .connection import quote_ident

__all__ = ["MIGRATIONS", "migrate", "projection_ddl"]

_TEXT = 'text COLLATE "C"'
_TYPES = {Kind.KEY: "bigint", Kind.FLAG: "integer", Kind.NAME: _TEXT, Kind.TEXT: "text",
          Kind.BLOB: "bytea", Kind.TIME: "double precision", Kind.STEP: "numeric",
          Kind.VALUE: "double precision"}


def projection_ddl(suffix: str, generation: int | str, version: int | None = None) -> list[str]:
    """Statements creating the projection tables named ``<table><suffix>``, with
    ``generation`` in their constraint and index names (unique per schema: a swapped-in table
    keeps the names it was built with); ``version``: as that schema version had them (every
    table and column for None)."""
    statements = []
    for declared in TABLES:
        table = declared.at(version)
        if table is not None:
            statements.extend(_table(table, suffix, generation))
    return [*statements, *seeds(suffix)]


def _table(table: Table, suffix: str, generation: int | str) -> list[str]:
    return [_create(table, suffix, generation),
            *(f"ALTER TABLE {table.name}{suffix} ALTER COLUMN {column} SET STORAGE EXTERNAL"
              for column in table.external),
            *(index.ddl(table.name, suffix, generation, postgres=True)
              for index in table.indexes)]


def _added(version: int) -> list[str]:
    """What schema ``version`` adds to the projection tables of the one before: new columns
    (with a default for the rows already there) and new tables."""
    statements = []
    for declared in TABLES:
        if declared.since == version:
            table = declared.at(version)
            assert table is not None
            statements.extend(_table(table, "", 0))
            continue
        statements.extend(
            f"ALTER TABLE {declared.name} ADD COLUMN {c.name} {_TYPES[c.kind]}"
            + ("" if c.nullable else " NOT NULL DEFAULT ''")
            for c in declared.columns if c.since == version)
        # Named for generation 0 whatever the live tables' generation: a rebuild names its own.
        statements.extend(index.ddl(declared.name, "", 0, postgres=True)
                          for index in declared.indexes if index.since == version)
    return statements


def _create(table: Table, suffix: str, generation: int | str) -> str:
    columns = [f"{c.name} {_TYPES[c.kind]}{'' if c.nullable else ' NOT NULL'}"
               for c in table.columns]
    columns.append(f"CONSTRAINT {table.key_stem}_pk_g{generation} "
                   f"PRIMARY KEY ({', '.join(table.key)})")
    return f"CREATE TABLE {table.name}{suffix} ({', '.join(columns)})"


_LOG = [
    f"""CREATE TABLE events (
        position bigint PRIMARY KEY,
        event_id bytea NOT NULL UNIQUE,
        project {_TEXT} NOT NULL,
        run_id {_TEXT} NOT NULL,
        version bigint NOT NULL,
        type {_TEXT} NOT NULL,
        schema_version integer NOT NULL,
        recorded_at double precision NOT NULL,
        data bytea NOT NULL,
        UNIQUE (project, run_id, version))""",
    "CREATE INDEX events_project ON events (project, position)",
    # The log is append-only, and the database itself says so (statement triggers fire even
    # when no row matches, and TRUNCATE is refused too).
    """CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
           RAISE EXCEPTION 'the event log is append-only: % refused', TG_OP;
       END $$""",
    """CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON events
       FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()""",
    f"""CREATE TABLE heartbeats (
        project {_TEXT} NOT NULL, run_id {_TEXT} NOT NULL, beat_at double precision NOT NULL,
        PRIMARY KEY (project, run_id))""",
    f"CREATE TABLE meta (key {_TEXT} PRIMARY KEY, value bigint NOT NULL)",
    "INSERT INTO meta VALUES ('generation', 0)",
]

# 2: config texts over 2,704 bytes: index a prefix of ``txt`` (the live tables' generation is
# in ``meta``; a rebuild makes the new form from the declarations).
_TXT_PREFIX_INDEX = f"""DO $$
    DECLARE g bigint;
    BEGIN
        SELECT value INTO g FROM meta WHERE key = 'generation';
        EXECUTE format('DROP INDEX IF EXISTS run_configs_txt_g%s', g);
        EXECUTE format('CREATE INDEX run_configs_txt_g%s ON run_configs '
                       '(path, left(txt, {TXT_PREFIX}))', g);
    END $$"""

MIGRATIONS: Sequence[Sequence[str]] = (
    # 1: the log, liveness, and the first generation of projection tables.
    (*_LOG, *projection_ddl("", 0, 1)),
    (_TXT_PREFIX_INDEX,),
    # 3: each event's checksum (``engine._core.checksum``); older events carry none.
    ("ALTER TABLE events ADD COLUMN checksum bigint",),
    # 4: each run's heartbeat promise (declarations of version 2).
    tuple(_added(2)),
    # 5: jobs: their queue, spec, attempts and worker (declarations of version 3).
    tuple(_added(3)),
    # 6: what a run records besides metrics (declarations of version 4): notes, env, files,
    # entries; and the blob store in the database (``engine._storage.blobdb``), its chunks
    # stored uncompressed (they rarely compress, and trying costs time).
    (*_added(4),
     f"""CREATE TABLE blobs (digest {_TEXT} PRIMARY KEY, size bigint NOT NULL,
        upload {_TEXT} NOT NULL, touched_at double precision NOT NULL)""",
     f"""CREATE TABLE blob_chunks (upload {_TEXT} NOT NULL, seq bigint NOT NULL,
        at double precision NOT NULL, data bytea NOT NULL, PRIMARY KEY (upload, seq))""",
     "ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL"),
    # 7: the server's access tokens (hashes only).
    (TOKENS.format(real="double precision"),),
    # 8: the index a worker's claim reads queued jobs by (declarations of version 5).
    tuple(_added(5)),
)


async def migrate(connection: asyncpg.Connection, schema: str | None) -> None:
    """Create ``schema`` (when named) and bring it to the newest version.

    :raises EngineError: the database was migrated by a newer release.
    """
    async with connection.transaction():
        # Serialize migrations of this schema across processes; the lock ends with the
        # transaction.
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                                 f"kittiwake migrate {schema or ''}")
        if schema is not None:
            await connection.execute(
                f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        version = await connection.fetchval(
            "SELECT coalesce(max(version), 0) FROM schema_migrations")
    if version > len(MIGRATIONS):
        raise EngineError(f"database schema version {version} is newer than this release "
                          f"understands ({len(MIGRATIONS)}); upgrade kittiwake")
    for number in range(version, len(MIGRATIONS)):
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))",
                                     f"kittiwake migrate {schema or ''}")
            done = await connection.fetchval(
                "SELECT count(*) FROM schema_migrations WHERE version = $1", number + 1)
            if done:
                continue  # another process applied it while this one waited
            for statement in MIGRATIONS[number]:
                await connection.execute(statement)
            await connection.execute("INSERT INTO schema_migrations (version) VALUES ($1)",
                                     number + 1)

