"""The projection tables, declared once; each backend renders its DDL from these declarations.

A column has an abstract kind, and each backend picks the type that stores it exactly:

=========  ===============  ====================  ============================================
kind       SQLite           PostgreSQL            holds
=========  ===============  ====================  ============================================
``KEY``    ``INTEGER``      ``bigint``            run keys, positions, counts, sequence numbers
``FLAG``   ``INTEGER``      ``integer``           0 or 1
``NAME``   ``TEXT``         ``text COLLATE "C"``  text compared and sorted by code point
``TEXT``   ``TEXT``         ``text``              free text (reasons)
``BLOB``   ``BLOB``         ``bytea``             encoded columns and payloads
``TIME``   ``REAL``         ``double precision``  seconds since the epoch
``STEP``   (no type)        ``numeric``           steps: ints and floats, each exact
``VALUE``  (no type)        ``double precision``  measured values (NaN stored as NULL)
=========  ===============  ====================  ============================================

A table's ``key`` is its primary key, except where SQLite keeps the rows in a rowid table
(``rowid``): a one-column key is then the rowid itself, and a longer one a unique index.
PostgreSQL names the key's constraint ``<key_name>_pk_g<generation>``, SQLite a key index
``<key_name>_key_g<generation>``. Every index and constraint name carries the generation of
the tables it was built with: a rebuild creates ``runs__new`` and friends beside the live
tables and swaps them in by renaming, and an index keeps the name it was built with (SQLite
cannot rename one at all; PostgreSQL names are unique per schema).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .rows import PROJECTIONS

__all__ = ["PROJECTION_TABLES", "TABLES", "TXT_PREFIX", "Column", "Index", "Kind", "Table", "seeds",
           "table_of"]


class Kind(Enum):
    """What a column holds; each backend maps a kind to a type."""

    KEY = "key"
    FLAG = "flag"
    NAME = "name"
    TEXT = "text"
    BLOB = "blob"
    TIME = "time"
    STEP = "step"
    VALUE = "value"


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a projection table."""

    name: str
    kind: Kind
    nullable: bool = False
    # The version of the declarations that added it: 1, the first; 2, each run's heartbeat
    # promise; 3, jobs; 4, what a run records besides metrics. Each backend's migrations add
    # a later version's columns and tables, so later columns come last (and are nullable or
    # have a default).
    since: int = 1


@dataclass(frozen=True, slots=True)
class Index:
    """A secondary index (``where``: a partial index's condition; ``postgres``: what
    PostgreSQL indexes instead of ``columns``)."""

    name: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str | None = None
    postgres: tuple[str, ...] | None = None

    def ddl(self, table: str, suffix: str, generation: int | str, *,
            postgres: bool = False) -> str:
        """The statement creating this index on ``<table><suffix>``."""
        unique = "UNIQUE " if self.unique else ""
        where = f" WHERE {self.where}" if self.where else ""
        columns = self.postgres if postgres and self.postgres else self.columns
        return (f"CREATE {unique}INDEX {self.name}_g{generation} ON {table}{suffix} "
                f"({', '.join(columns)}){where}")


@dataclass(frozen=True, slots=True)
class Table:
    """A projection table: its columns in stored order, its key and its indexes."""

    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    key_name: str = ""  # the stem of the key's constraint or index name; default: the table's
    indexes: tuple[Index, ...] = ()
    rowid: bool = False  # SQLite keeps the rows in a rowid table (else WITHOUT ROWID)
    external: tuple[str, ...] = ()  # PostgreSQL stores these out of line, uncompressed
    since: int = 1  # the version of the declarations that added the table (see Column)

    def at(self, version: int | None) -> Table | None:
        """The table as version ``version`` of the declarations had it (None: not yet
        there); every column for ``None``."""
        if version is None:
            return self
        if self.since > version:
            return None
        return Table(self.name, tuple(c for c in self.columns if c.since <= version),
                     self.key, self.key_name, self.indexes, self.rowid, self.external,
                     self.since)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def key_stem(self) -> str:
        return self.key_name or self.name


def _cols(spec: str, kind: Kind, *, nullable: bool = False,
          since: int = 1) -> tuple[Column, ...]:
    return tuple(Column(name, kind, nullable, since) for name in spec.split())


K, F, N, T, B, S, V = Kind.KEY, Kind.FLAG, Kind.NAME, Kind.TEXT, Kind.BLOB, Kind.STEP, Kind.VALUE

RUNS = Table("runs", (
    *_cols("rk", K), *_cols("project run_id name", N), *_cols("experiment", N, nullable=True),
    *_cols("status", N), *_cols("status_reason", T, nullable=True), *_cols("tags config", B),
    *_cols("fork_rk", K, nullable=True), *_cols("fork_run_id", N, nullable=True),
    *_cols("fork_step", S, nullable=True), *_cols("created_at updated_at", Kind.TIME),
    *_cols("ended_at", Kind.TIME, nullable=True), *_cols("deleted", F),
    *_cols("version position epoch", K), *_cols("floor", S, nullable=True),
    *_cols("started_position", K), *_cols("abort_position", K, nullable=True),
    *_cols("abort_reason", T, nullable=True),
    # The run's heartbeat promise (None: written by a release that made none).
    *_cols("heartbeat_interval crash_timeout", Kind.TIME, nullable=True, since=2),
    # A job's queue, its spec (command, env, cwd, max_attempts), attempts so far and worker.
    *_cols("queue", N, nullable=True, since=3), *_cols("job", B, nullable=True, since=3),
    *_cols("attempt max_attempts", K, nullable=True, since=3),
    *_cols("worker", T, nullable=True, since=3),
    # What a run records besides metrics (declarations of version 4): its notes; env, file
    # attributes and the kind and last step of each non-metric key, encoded; and the
    # pieces of other runs' (or its own earlier epochs') entries it sees: forks and rewinds.
    *_cols("notes", T, since=4),
    *_cols("env files kinds entry_segments", B, nullable=True, since=4),
), key=("rk",), rowid=True, indexes=(
    Index("runs_key", ("project", "run_id"), unique=True),
    Index("runs_experiment", ("project", "experiment", "rk")),
    Index("runs_listing", ("project", "deleted", "rk")),
    Index("runs_running", ("status",), where="status = 'running'"),
))

METRICS = Table("metrics", (
    *_cols("rk", K), *_cols("metric", N), *_cols("count", K), *_cols("last", V, nullable=True),
    *_cols("last_step", S), *_cols("min max", V, nullable=True),
    *_cols("tail_epoch tail_seq", K, nullable=True),
), key=("rk", "metric"), indexes=(
    Index("metrics_last", ("metric", "last")),
    Index("metrics_min", ("metric", "min")),
    Index("metrics_max", ("metric", "max")),
))

# The runs table's query side: one row per config path and per tag (``stored.config_values``
# says how values map to kind/num/txt). PostgreSQL's btree refuses an entry over 2,704 bytes
# and a config text may hold a mebibyte, so it indexes the text's first ``TXT_PREFIX``
# characters; the query compiler tests that prefix beside the whole text (``_query.sql``).
TXT_PREFIX = 256
RUN_CONFIGS = Table("run_configs", (
    *_cols("rk", K), *_cols("path kind", N), *_cols("num", V, nullable=True),
    *_cols("txt", N, nullable=True),
), key=("rk", "path"), indexes=(
    Index("run_configs_num", ("path", "num")),
    Index("run_configs_txt", ("path", "txt"), postgres=("path", f"left(txt, {TXT_PREFIX})")),
))

RUN_TAGS = Table("run_tags", (*_cols("rk", K), *_cols("tag", N)), key=("rk", "tag"),
                 indexes=(Index("run_tags_tag", ("tag", "rk")),))

# Small columns and the block summaries come before the point columns: SQLite walks a row's
# overflow pages in column order, so a downsampled read never touches the points. The point
# columns are binary floats that do not compress: PostgreSQL stores them out of line and
# uncompressed, which also lets a read take the first byte of ``steps`` alone. Rows of tens
# of kilobytes live best in a rowid table on SQLite.
SERIES_CHUNKS = Table("series_chunks", (
    *_cols("rk", K), *_cols("metric", N), *_cols("epoch seq n", K),
    *_cols("first_step last_step", S), *_cols("last_value vmin vmax", V, nullable=True),
    *_cols("blocks steps vals times", B),
), key=("rk", "metric", "epoch", "seq"), key_name="series", rowid=True,
    external=("blocks", "steps", "vals", "times"))

SERIES_SEGMENTS = Table("series_segments", (
    *_cols("rk", K), *_cols("metric", N), *_cols("idx src_rk src_epoch", K), *_cols("cap", S),
), key=("rk", "metric", "idx"))

LINEAGE = Table("lineage", (*_cols("ancestor descendant depth", K), *_cols("step", S)),
                key=("ancestor", "descendant"),
                indexes=(Index("lineage_descendant", ("descendant", "depth")),))

EXPERIMENTS = Table("experiments", (*_cols("project name", N), *_cols("head", K, nullable=True)),
                    key=("project", "name"))

PROJECTS = Table("projects", (*_cols("project", N), *_cols("runs", K)), key=("project",))

# Entries of the stepped kinds (text, file, histogram and confusion-matrix series), one row
# per key and step, in the epoch of the run that logged it; ``value`` is the encoded plain
# value. A run's effective entries are its own epoch's plus its ``entry_segments``.
ENTRIES = Table("entries", (
    *_cols("rk", K), *_cols("path", N), *_cols("epoch", K), *_cols("step", S),
    *_cols("position", K), *_cols("kind", N), *_cols("at", Kind.TIME), *_cols("value", B),
), key=("rk", "path", "epoch", "step"), rowid=True, since=4)

CHECKPOINTS = Table("checkpoints", (*_cols("name", N), *_cols("position", K)), key=("name",))

TABLES = (RUNS, METRICS, RUN_CONFIGS, RUN_TAGS, SERIES_CHUNKS, SERIES_SEGMENTS, LINEAGE,
          EXPERIMENTS, PROJECTS, CHECKPOINTS, ENTRIES)
"""Every projection table, in the order they are created, swapped and compared."""

PROJECTION_TABLES = tuple(table.name for table in TABLES)


def table_of(name: str) -> Table:
    """The declaration of the table ``name``."""
    return next(table for table in TABLES if table.name == name)


def seeds(suffix: str) -> list[str]:
    """The statements that start every projection's checkpoint at position 0."""
    return [f"INSERT INTO checkpoints{suffix} VALUES ('{name}', 0)" for name in PROJECTIONS]
