"""The PostgreSQL schema: versioned migrations for the log, and the projection tables.

``schema_migrations`` records every migration applied; each runs in its own transaction with
its row, under an advisory lock per schema, so processes that connect to a fresh database at
the same moment migrate it once. A database migrated by a newer release is refused.

The tables are SQLite's, typed: steps are ``numeric`` (exact for ints to 2**63-1 and for
every float; see ``_postgres_conn``), measured values ``double precision`` (which keeps
-0.0; NaN is stored as NULL as on SQLite), blobs ``bytea``, and text compares by code point
(``COLLATE "C"``) as SQLite's does. Projection tables are created by :func:`projection_ddl`
with a suffix and a generation in their constraint and index names, so a rebuild can fill
``runs__new`` and friends beside the live tables and swap them by renaming.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from engine._projections.rows import PROJECTIONS
from engine._projections.stored import PROJECTION_TABLES
from engine.errors import EngineError

from .connection import quote_ident

__all__ = ["MIGRATIONS", "PROJECTION_TABLES", "migrate", "projection_ddl"]

_TEXT = 'text COLLATE "C"'
_BIG_COLUMNS = ("blocks", "steps", "vals", "times")


def projection_ddl(suffix: str, generation: int | str) -> list[str]:
    """Statements creating the projection tables named ``<table><suffix>``.

    Constraint and index names carry ``generation``: they are unique per schema, and a
    swapped-in table keeps the names it was built with.
    """
    s, g, t = suffix, generation, _TEXT
    return [
        f"""CREATE TABLE runs{s} (
            rk bigint NOT NULL, project {t} NOT NULL, run_id {t} NOT NULL, name {t} NOT NULL,
            experiment {t}, status {t} NOT NULL, status_reason text, tags bytea NOT NULL,
            config bytea NOT NULL, fork_rk bigint, fork_run_id {t}, fork_step numeric,
            created_at double precision NOT NULL, updated_at double precision NOT NULL,
            ended_at double precision, deleted integer NOT NULL, version bigint NOT NULL,
            position bigint NOT NULL, epoch bigint NOT NULL, floor numeric,
            started_position bigint NOT NULL, abort_position bigint, abort_reason text,
            CONSTRAINT runs_pk_g{g} PRIMARY KEY (rk))""",
        f"CREATE UNIQUE INDEX runs_key_g{g} ON runs{s} (project, run_id)",
        f"CREATE INDEX runs_experiment_g{g} ON runs{s} (project, experiment, rk)",
        f"CREATE INDEX runs_listing_g{g} ON runs{s} (project, deleted, rk)",
        f"CREATE INDEX runs_running_g{g} ON runs{s} (status) WHERE status = 'running'",
        f"""CREATE TABLE metrics{s} (
            rk bigint NOT NULL, metric {t} NOT NULL, count bigint NOT NULL,
            last double precision, last_step numeric NOT NULL, min double precision,
            max double precision, tail_epoch bigint, tail_seq bigint,
            CONSTRAINT metrics_pk_g{g} PRIMARY KEY (rk, metric))""",
        f"CREATE INDEX metrics_last_g{g} ON metrics{s} (metric, last)",
        f"CREATE INDEX metrics_min_g{g} ON metrics{s} (metric, min)",
        f"CREATE INDEX metrics_max_g{g} ON metrics{s} (metric, max)",
        f"""CREATE TABLE run_configs{s} (
            rk bigint NOT NULL, path {t} NOT NULL, kind {t} NOT NULL, num double precision,
            txt {t}, CONSTRAINT run_configs_pk_g{g} PRIMARY KEY (rk, path))""",
        f"CREATE INDEX run_configs_num_g{g} ON run_configs{s} (path, num)",
        f"CREATE INDEX run_configs_txt_g{g} ON run_configs{s} (path, txt)",
        f"""CREATE TABLE run_tags{s} (
            rk bigint NOT NULL, tag {t} NOT NULL,
            CONSTRAINT run_tags_pk_g{g} PRIMARY KEY (rk, tag))""",
        f"CREATE INDEX run_tags_tag_g{g} ON run_tags{s} (tag, rk)",
        f"""CREATE TABLE series_chunks{s} (
            rk bigint NOT NULL, metric {t} NOT NULL, epoch bigint NOT NULL, seq bigint NOT NULL,
            n bigint NOT NULL, first_step numeric NOT NULL, last_step numeric NOT NULL,
            last_value double precision, vmin double precision, vmax double precision,
            blocks bytea NOT NULL, steps bytea NOT NULL, vals bytea NOT NULL,
            times bytea NOT NULL,
            CONSTRAINT series_pk_g{g} PRIMARY KEY (rk, metric, epoch, seq))""",
        # Point columns are binary floats that do not compress: store them out of line
        # uncompressed, which also lets a read take the first byte of ``steps`` alone.
        *(f"ALTER TABLE series_chunks{s} ALTER COLUMN {c} SET STORAGE EXTERNAL"
          for c in _BIG_COLUMNS),
        f"""CREATE TABLE series_segments{s} (
            rk bigint NOT NULL, metric {t} NOT NULL, idx bigint NOT NULL,
            src_rk bigint NOT NULL, src_epoch bigint NOT NULL, cap numeric NOT NULL,
            CONSTRAINT series_segments_pk_g{g} PRIMARY KEY (rk, metric, idx))""",
        f"""CREATE TABLE lineage{s} (
            ancestor bigint NOT NULL, descendant bigint NOT NULL, depth bigint NOT NULL,
            step numeric NOT NULL,
            CONSTRAINT lineage_pk_g{g} PRIMARY KEY (ancestor, descendant))""",
        f"CREATE INDEX lineage_descendant_g{g} ON lineage{s} (descendant, depth)",
        f"""CREATE TABLE experiments{s} (
            project {t} NOT NULL, name {t} NOT NULL, head bigint,
            CONSTRAINT experiments_pk_g{g} PRIMARY KEY (project, name))""",
        f"""CREATE TABLE projects{s} (
            project {t} NOT NULL, runs bigint NOT NULL,
            CONSTRAINT projects_pk_g{g} PRIMARY KEY (project))""",
        f"""CREATE TABLE checkpoints{s} (
            name {t} NOT NULL, position bigint NOT NULL,
            CONSTRAINT checkpoints_pk_g{g} PRIMARY KEY (name))""",
        *(f"INSERT INTO checkpoints{s} VALUES ('{name}', 0)" for name in PROJECTIONS),
    ]


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

MIGRATIONS: Sequence[Sequence[str]] = (
    # 1: the log, liveness, and the first generation of projection tables.
    (*_LOG, *projection_ddl("", 0)),
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

