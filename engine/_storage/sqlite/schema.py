"""The SQLite schema: versioned migrations for the log, and the projection tables.

``PRAGMA user_version`` holds the schema version; each migration moves it up by one inside the
transaction that applies it. Projection tables are created by :func:`projection_ddl` with a
table suffix and an index generation, so a rebuild can fill ``runs__new`` and friends while the
live tables serve reads, then swap them in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine._projections.rows import PROJECTIONS
from engine._projections.stored import PROJECTION_TABLES

__all__ = ["MIGRATIONS", "PROJECTION_TABLES", "projection_ddl"]


def projection_ddl(suffix: str, generation: int | str) -> list[str]:
    """Statements creating the projection tables named ``<table><suffix>``.

    Index names carry ``generation`` because SQLite cannot rename an index and a swapped-in
    table keeps the names its indexes were built with.
    """
    s, g = suffix, generation
    # Columns holding measured values have no declared type: a REAL column would turn -0.0
    # into 0.0. NaN is stored as NULL in columns that are otherwise never NULL.
    return [
        f"""CREATE TABLE runs{s} (
            rk INTEGER PRIMARY KEY, project TEXT NOT NULL, run_id TEXT NOT NULL,
            name TEXT NOT NULL, experiment TEXT, status TEXT NOT NULL, status_reason TEXT,
            tags BLOB NOT NULL, config BLOB NOT NULL, fork_rk INTEGER, fork_run_id TEXT,
            fork_step, created_at REAL NOT NULL, updated_at REAL NOT NULL, ended_at REAL,
            deleted INTEGER NOT NULL, version INTEGER NOT NULL, position INTEGER NOT NULL,
            epoch INTEGER NOT NULL, floor, started_position INTEGER NOT NULL,
            abort_position INTEGER, abort_reason TEXT)""",
        f"CREATE UNIQUE INDEX runs_key_g{g} ON runs{s} (project, run_id)",
        f"CREATE INDEX runs_experiment_g{g} ON runs{s} (project, experiment, rk)",
        f"CREATE INDEX runs_listing_g{g} ON runs{s} (project, deleted, rk)",
        f"CREATE INDEX runs_running_g{g} ON runs{s} (status) WHERE status = 'running'",
        f"""CREATE TABLE metrics{s} (
            rk INTEGER NOT NULL, metric TEXT NOT NULL, count INTEGER NOT NULL, last,
            last_step NOT NULL, min, max, tail_epoch INTEGER, tail_seq INTEGER,
            PRIMARY KEY (rk, metric)) WITHOUT ROWID""",
        f"CREATE INDEX metrics_last_g{g} ON metrics{s} (metric, last)",
        f"CREATE INDEX metrics_min_g{g} ON metrics{s} (metric, min)",
        f"CREATE INDEX metrics_max_g{g} ON metrics{s} (metric, max)",
        # The runs table's query side: one row per config path and per tag (see _rows.py for
        # how values map to kind/num/txt).
        f"""CREATE TABLE run_configs{s} (
            rk INTEGER NOT NULL, path TEXT NOT NULL, kind TEXT NOT NULL, num, txt TEXT,
            PRIMARY KEY (rk, path)) WITHOUT ROWID""",
        f"CREATE INDEX run_configs_num_g{g} ON run_configs{s} (path, num)",
        f"CREATE INDEX run_configs_txt_g{g} ON run_configs{s} (path, txt)",
        f"""CREATE TABLE run_tags{s} (
            rk INTEGER NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (rk, tag)) WITHOUT ROWID""",
        f"CREATE INDEX run_tags_tag_g{g} ON run_tags{s} (tag, rk)",
        # Small columns and the block summaries come before the point columns: SQLite walks a
        # row's overflow pages in column order, so a downsampled read never touches the points.
        f"""CREATE TABLE series_chunks{s} (
            rk INTEGER NOT NULL, metric TEXT NOT NULL, epoch INTEGER NOT NULL,
            seq INTEGER NOT NULL, n INTEGER NOT NULL, first_step NOT NULL, last_step NOT NULL,
            last_value, vmin, vmax, blocks BLOB NOT NULL, steps BLOB NOT NULL,
            vals BLOB NOT NULL, times BLOB NOT NULL)""",
        f"CREATE UNIQUE INDEX series_key_g{g} ON series_chunks{s} (rk, metric, epoch, seq)",
        f"""CREATE TABLE series_segments{s} (
            rk INTEGER NOT NULL, metric TEXT NOT NULL, idx INTEGER NOT NULL,
            src_rk INTEGER NOT NULL, src_epoch INTEGER NOT NULL, cap NOT NULL,
            PRIMARY KEY (rk, metric, idx)) WITHOUT ROWID""",
        f"""CREATE TABLE lineage{s} (
            ancestor INTEGER NOT NULL, descendant INTEGER NOT NULL, depth INTEGER NOT NULL,
            step NOT NULL, PRIMARY KEY (ancestor, descendant)) WITHOUT ROWID""",
        f"CREATE INDEX lineage_descendant_g{g} ON lineage{s} (descendant, depth)",
        f"""CREATE TABLE experiments{s} (
            project TEXT NOT NULL, name TEXT NOT NULL, head INTEGER,
            PRIMARY KEY (project, name)) WITHOUT ROWID""",
        f"""CREATE TABLE projects{s} (
            project TEXT PRIMARY KEY, runs INTEGER NOT NULL) WITHOUT ROWID""",
        f"""CREATE TABLE checkpoints{s} (
            name TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID""",
        *(f"INSERT INTO checkpoints{s} VALUES ('{name}', 0)" for name in PROJECTIONS),
    ]


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
    (*_LOG, *projection_ddl("", 0)),
)
