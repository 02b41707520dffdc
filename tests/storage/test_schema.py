"""The projection tables are declared once, and each backend's DDL rendered from the declaration
makes the very tables earlier releases made by hand: the same columns, types, constraints,
indexes and storage, read back from each database's own catalog. So databases written before
keep working, and a rebuild swaps in tables like the ones it replaces."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from engine._projections.stored import CHUNK_COLUMNS, METRIC_COLUMNS, RUN_COLUMNS
from engine._projections.tables import PROJECTION_TABLES, TABLES
from engine._storage.postgres.schema import MIGRATIONS as POSTGRES_MIGRATIONS
from engine._storage.postgres.schema import projection_ddl as postgres_ddl
from engine._storage.sqlite.schema import MIGRATIONS as SQLITE_MIGRATIONS
from engine._storage.sqlite.schema import projection_ddl as sqlite_ddl
from tests.conftest import POSTGRES_URL, require_postgres
from tests.pg import admin, fresh_schema_url
from tests.storage import legacy_schema

GENERATIONS = [("", 0), ("__new", 7), ("__check", "check")]
VERSION_1 = PROJECTION_TABLES[:10]  # what schema version 1 made by hand


def test_migrating_a_version_1_database_gives_the_tables_a_rebuild_makes() -> None:
    """Schema version 2 adds columns and tables to a database of version 1: the result has
    the columns, in the same order, that the tables a rebuild creates have."""
    from engine._storage.sqlite.schema import MIGRATIONS

    migrated = _sqlite_catalog([s for migration in MIGRATIONS for s in migration])
    fresh = _sqlite_catalog(sqlite_ddl("", 0))
    for name in PROJECTION_TABLES:
        assert [c[1:3] for c in migrated[name]["columns"]] == \
            [c[1:3] for c in fresh[name]["columns"]], name
        assert migrated[name]["indexes"] == fresh[name]["indexes"], name


def test_the_declarations_name_every_stored_column_once() -> None:
    assert PROJECTION_TABLES == ("runs", "metrics", "run_configs", "run_tags", "series_chunks",
                                 "series_segments", "lineage", "experiments", "projects",
                                 "checkpoints", "entries")
    assert RUN_COLUMNS[:3] == ("rk", "project", "run_id")
    assert METRIC_COLUMNS[-2:] == ("tail_epoch", "tail_seq")
    assert CHUNK_COLUMNS[-4:] == ("blocks", "steps", "vals", "times")
    for table in TABLES:
        names = table.column_names
        assert len(set(names)) == len(names), table.name
        assert set(table.key) <= set(names), table.name
        assert set(table.external) <= set(names), table.name
        for index in table.indexes:
            assert set(index.columns) <= set(names), index.name


def _sqlite_catalog(statements: list[str]) -> dict[str, Any]:
    db = sqlite3.connect(":memory:")
    try:
        for statement in statements:
            db.execute(statement)
        catalog: dict[str, Any] = {}
        tables = db.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table'").fetchall()
        for name, sql in tables:
            indexes = {}
            for _, index, unique, origin, partial in db.execute(f"PRAGMA index_list({name})"):
                where = db.execute("SELECT sql FROM sqlite_schema WHERE name = ?",
                                   (index,)).fetchone()
                condition = " ".join(where[0].split("WHERE", 1)[1].split()) \
                    if partial and where and where[0] else None
                indexes[index] = (unique, origin, partial, condition,
                                  db.execute(f"PRAGMA index_xinfo({index})").fetchall())
            catalog[name] = {
                "columns": db.execute(f"PRAGMA table_xinfo({name})").fetchall(),
                "without_rowid": " ".join(sql.split()).upper().endswith("WITHOUT ROWID"),
                "indexes": indexes,
                "rows": db.execute(f"SELECT * FROM {name} ORDER BY 1").fetchall(),
            }
        return catalog
    finally:
        db.close()


@pytest.mark.parametrize(("suffix", "generation"), GENERATIONS)
def test_sqlite_tables_are_the_ones_written_by_hand(suffix: str, generation: int | str) -> None:
    rendered = _sqlite_catalog(sqlite_ddl(suffix, generation, version=1))
    legacy = _sqlite_catalog(legacy_schema.sqlite_ddl(suffix, generation))
    assert sorted(rendered) == sorted(f"{t}{suffix}" for t in VERSION_1)
    for name, expected in legacy.items():
        assert rendered[name] == expected, name


def test_sqlite_migrations_make_the_tables_a_rebuild_makes() -> None:
    """A database made by hand at version 1 and migrated since has the tables a rebuild
    creates now, column for column (a rebuild swaps its tables in for the migrated ones)."""
    migrated = _sqlite_catalog([*legacy_schema.sqlite_ddl("", 0),
                                *(s for m in SQLITE_MIGRATIONS[1:] for s in m
                                  if not s.startswith("ALTER TABLE events "))])  # the log's own
    fresh = _sqlite_catalog(sqlite_ddl("", 0))
    for name in PROJECTION_TABLES:
        # A column added in place carries a default for the rows already there; the rest of
        # each column (position, name, type, null, key) is the same.
        assert [c[:4] + c[5:] for c in migrated[name]["columns"]] == \
            [c[:4] + c[5:] for c in fresh[name]["columns"]], name
        assert {k: v for k, v in migrated[name].items() if k != "columns"} == \
            {k: v for k, v in fresh[name].items() if k != "columns"}, name


async def _postgres_catalog(statements: list[str]) -> dict[str, Any]:
    url = fresh_schema_url(POSTGRES_URL)
    schema = url.rsplit("search_path=", 1)[1]
    connection = await admin(POSTGRES_URL)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        await connection.execute(f'SET search_path = "{schema}"')
        for statement in statements:
            await connection.execute(statement)
        columns = await connection.fetch(
            "SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), "
            "a.attnotnull, a.attstorage, coalesce(l.collname, '') FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "LEFT JOIN pg_collation l ON l.oid = a.attcollation "
            "WHERE n.nspname = $1 AND c.relkind = 'r' AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY 1, 2", schema)
        indexes = await connection.fetch(
            "SELECT tablename, indexname, replace(indexdef, $1, '') FROM pg_indexes "
            "WHERE schemaname = $2 ORDER BY 1, 2", f"{schema}.", schema)
        constraints = await connection.fetch(
            "SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid) "
            "FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
            "JOIN pg_namespace n ON n.oid = k.connamespace WHERE n.nspname = $1 "
            "ORDER BY 1, 2", schema)
        suffix = statements[0].split("(", 1)[0].split()[-1][len("runs"):]
        seeded = await connection.fetch(f"SELECT * FROM checkpoints{suffix} ORDER BY 1")
        return {"columns": [tuple(r) for r in columns], "indexes": [tuple(r) for r in indexes],
                "constraints": [tuple(r) for r in constraints],
                "rows": [tuple(r) for r in seeded]}
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


@pytest.mark.postgres
@pytest.mark.parametrize(("suffix", "generation"), GENERATIONS)
async def test_postgres_tables_are_the_ones_written_by_hand(suffix: str,
                                                           generation: int | str) -> None:
    require_postgres()
    rendered = await _postgres_catalog(postgres_ddl(suffix, generation, version=1))
    legacy = await _postgres_catalog(legacy_schema.postgres_migrated(suffix, generation))
    assert {row[0] for row in rendered["columns"]} == {f"{t}{suffix}" for t in VERSION_1}
    for part in ("columns", "indexes", "constraints", "rows"):
        assert rendered[part] == legacy[part], part


@pytest.mark.postgres
async def test_postgres_migrations_make_the_tables_a_rebuild_makes() -> None:
    require_postgres()
    # The migrations read the live generation from ``meta``; the log's own (its checksum
    # column) are not about projection tables.
    meta = ["CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL)",
            "INSERT INTO meta VALUES ('generation', 0)"]
    migrated = await _postgres_catalog([*meta, *legacy_schema.postgres_ddl("", 0),
                                        *(s for m in POSTGRES_MIGRATIONS[1:] for s in m
                                          if not s.startswith("ALTER TABLE events "))])
    # Tables that are not projections (file bytes, the server's tokens) come from their
    # migrations alone.
    others = [s for m in POSTGRES_MIGRATIONS for s in m
              if any(f" TABLE {name}" in s.split("(")[0] for name in ("blob", "tokens"))]
    assert migrated == await _postgres_catalog([*meta, *postgres_ddl("", 0), *others])
