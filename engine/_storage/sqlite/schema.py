"""The SQLite schema: versioned migrations for the log, and the projection tables.

``PRAGMA user_version`` holds the schema version; each migration moves it up by one inside the
transaction that applies it. The projection tables are rendered from their declarations
(``engine._projections.tables``) by :func:`projection_ddl`, with a table suffix and an index
generation, so a rebuild can fill ``runs__new`` and friends while the live tables serve reads,
then swap them in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine._projections.tables import TABLES, Column, Index, Kind, Table, seeds
from engine._storage.tokens import TABLE as TOKENS

__all__ = ["MIGRATIONS", "projection_ddl"]

# Steps and measured values have no declared type: a REAL column would turn -0.0 into 0.0
# (NaN is stored as NULL in value columns, which are otherwise never NULL).
_TYPES = {Kind.KEY: "INTEGER", Kind.FLAG: "INTEGER", Kind.NAME: "TEXT", Kind.TEXT: "TEXT",
          Kind.BLOB: "BLOB", Kind.TIME: "REAL", Kind.STEP: "", Kind.VALUE: ""}


def projection_ddl(suffix: str, generation: int | str, version: int | None = None) -> list[str]:
    """Statements creating the projection tables named ``<table><suffix>``, with
    ``generation`` in their index names (SQLite cannot rename an index, and a swapped-in table
    keeps the names its indexes were built with); ``version``: as that schema version had
    them (every table and column for None)."""
    statements = []
    for declared in TABLES:
        table = declared.at(version)
        if table is None:
            continue
        statements.append(_create(table, suffix))
        if table.rowid and len(table.key) > 1:
            statements.append(Index(f"{table.key_stem}_key", table.key, unique=True)
                              .ddl(table.name, suffix, generation))
        statements.extend(index.ddl(table.name, suffix, generation) for index in table.indexes)
    return [*statements, *seeds(suffix)]


def _added(version: int) -> list[str]:
    """What schema ``version`` adds to the projection tables of the one before: new columns
    (with a default for the rows already there), new indexes and new tables."""
    statements = []
    for declared in TABLES:
        if declared.since == version:
            table = declared.at(version)
            assert table is not None
            statements.append(_create(table, ""))
            if table.rowid and len(table.key) > 1:
                statements.append(Index(f"{table.key_stem}_key", table.key, unique=True)
                                  .ddl(table.name, "", 0))
            statements.extend(index.ddl(table.name, "", 0) for index in table.indexes)
            continue
        for column in declared.columns:
            if column.since == version:
                default = "" if column.nullable else " DEFAULT ''"
                statements.append(f"ALTER TABLE {declared.name} ADD COLUMN "
                                  f"{_column(column, key=False)}{default}")
        # Named for generation 0 whatever the live tables' generation: a rebuild names its own.
        statements.extend(index.ddl(declared.name, "", 0) for index in declared.indexes
                          if index.since == version)
    return statements


def _create(table: Table, suffix: str) -> str:
    inline = table.key[0] if len(table.key) == 1 else None
    columns = [_column(column, key=column.name == inline) for column in table.columns]
    if inline is None and not table.rowid:
        columns.append(f"PRIMARY KEY ({', '.join(table.key)})")
    layout = "" if table.rowid else " WITHOUT ROWID"
    return f"CREATE TABLE {table.name}{suffix} ({', '.join(columns)}){layout}"


def _column(column: Column, *, key: bool) -> str:
    # A one-column key is the rowid itself, or the key of a WITHOUT ROWID table: never NULL.
    constraint = "PRIMARY KEY" if key else "" if column.nullable else "NOT NULL"
    return " ".join(word for word in (column.name, _TYPES[column.kind], constraint) if word)


_LOG = [
    """CREATE TABLE events (
        position INTEGER PRIMARY KEY,
        event_id BLOB NOT NULL UNIQUE,
        project TEXT NOT NULL,
        run_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        type TEXT NOT NULL,
        schema_version INTEGER NOT NULL,
        recorded_at REAL NOT NULL,
        data BLOB NOT NULL,
        UNIQUE (project, run_id, version))""",
    # The log is append-only, and the database itself says so.
    """CREATE TRIGGER events_no_update BEFORE UPDATE ON events
       BEGIN SELECT RAISE(ABORT, 'the event log is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER events_no_delete BEFORE DELETE ON events
       BEGIN SELECT RAISE(ABORT, 'the event log is append-only: DELETE refused'); END""",
    "CREATE INDEX events_project ON events (project, position)",
    """CREATE TABLE heartbeats (
        project TEXT NOT NULL, run_id TEXT NOT NULL, beat_at REAL NOT NULL,
        PRIMARY KEY (project, run_id)) WITHOUT ROWID""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "INSERT INTO meta VALUES ('generation', 0)",
]

MIGRATIONS: Sequence[Sequence[str]] = (
    # 1: the log, liveness, and the first generation of projection tables.
    (*_LOG, *projection_ddl("", 0, 1)),
    # 2: (PostgreSQL's index of config texts by their prefix; SQLite indexes whole texts.)
    (),
    # 3: each event's checksum (``engine._core.checksum``); older events carry none.
    ("ALTER TABLE events ADD COLUMN checksum INTEGER",),
    # 4: each run's heartbeat promise (declarations of version 2).
    tuple(_added(2)),
    # 5: jobs: their queue, spec, attempts and worker (declarations of version 3).
    tuple(_added(3)),
    # 6: what a run records besides metrics (declarations of version 4): notes, env, files,
    # entries; and the blob store in the database (``engine._storage.blobdb``).
    (*_added(4),
     """CREATE TABLE blobs (digest TEXT PRIMARY KEY, size INTEGER NOT NULL,
        upload TEXT NOT NULL, touched_at REAL NOT NULL) WITHOUT ROWID""",
     """CREATE TABLE blob_chunks (upload TEXT NOT NULL, seq INTEGER NOT NULL, at REAL NOT NULL,
        data BLOB NOT NULL, PRIMARY KEY (upload, seq))"""),
    # 7: the server's access tokens (hashes only).
    (TOKENS.format(real="REAL"),),
    # 8: the index a worker's claim reads queued jobs by (declarations of version 5).
    tuple(_added(5)),
)
