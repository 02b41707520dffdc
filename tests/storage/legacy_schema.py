"""The projection DDL of schema version 1 as it was first written out by hand, per backend.

Databases in the wild were created (and rebuilt) with exactly these statements, so the DDL
rendered from the table declarations must make the same tables: ``test_schema`` compares the
two through each database's catalog.
"""

from __future__ import annotations

PROJECTIONS = ("runs", "metrics", "series", "lineage", "experiments")
TEXT = 'text COLLATE "C"'
BIG_COLUMNS = ("blocks", "steps", "vals", "times")


def sqlite_ddl(suffix: str, generation: int | str) -> list[str]:
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


def postgres_ddl(suffix: str, generation: int | str) -> list[str]:
    """Statements creating the projection tables named ``<table><suffix>``.

    Constraint and index names carry ``generation``: they are unique per schema, and a
    swapped-in table keeps the names it was built with.
    """
    s, g, t = suffix, generation, TEXT
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
          for c in BIG_COLUMNS),
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


def postgres_migrated(suffix: str, generation: int | str) -> list[str]:
    """Version 1's PostgreSQL tables as migration 2 leaves them: config texts indexed by their
    first 256 characters (a btree entry holds at most 2,704 bytes)."""
    old = f"CREATE INDEX run_configs_txt_g{generation} ON run_configs{suffix} (path, txt)"
    new = (f"CREATE INDEX run_configs_txt_g{generation} ON run_configs{suffix} "
           "(path, left(txt, 256))")
    statements = postgres_ddl(suffix, generation)
    assert old in statements
    return [new if statement == old else statement for statement in statements]
