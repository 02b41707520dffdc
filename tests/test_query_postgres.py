"""The PostgreSQL dialect answers every query as SQLite does.

The projection tables of a SQLite database made through the API are copied into a scratch
PostgreSQL schema with the same tables and columns; each query, ordering and grouping of the
SQLite tests is compiled for PostgreSQL, run there with asyncpg, and must give the runs (and
groups) that ``list_runs``/``group_runs`` give on SQLite.
"""

from __future__ import annotations

import math
import sqlite3
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from engine._query import parse_aggregates, parse_group_by, selection
from engine._query_plans import compile_groups, compile_top, decode_groups
from engine._query_sql import POSTGRES, Compiled, compile_load, compile_select
from tests.conftest import POSTGRES_URL, require_postgres
from tests.test_query_runs import ORDER_CASES, WHERE_CASES, tracker_with_runs

pytestmark = pytest.mark.postgres

# The tables the queries read, as PostgreSQL will hold them: SQLite's columns, typed.
TABLES = {
    "runs": [("rk", "bigint PRIMARY KEY"), ("project", "text"), ("run_id", "text"),
             ("name", "text"), ("experiment", "text"), ("status", "text"),
             ("status_reason", "text"), ("tags", "bytea"), ("config", "bytea"),
             ("fork_rk", "bigint"), ("fork_run_id", "text"), ("fork_step", "double precision"),
             ("created_at", "double precision"), ("updated_at", "double precision"),
             ("ended_at", "double precision"), ("deleted", "integer"), ("version", "integer"),
             ("position", "bigint"), ("epoch", "integer"), ("floor", "double precision"),
             ("started_position", "bigint"), ("abort_position", "bigint"),
             ("abort_reason", "text")],
    "metrics": [("rk", "bigint"), ("metric", "text"), ("count", "bigint"),
                ("last", "double precision"), ("last_step", "double precision"),
                ("min", "double precision"), ("max", "double precision")],
    "run_configs": [("rk", "bigint"), ("path", "text"), ("kind", "text"),
                    ("num", "double precision"), ("txt", "text")],
    "run_tags": [("rk", "bigint"), ("tag", "text")],
    "experiments": [("project", "text"), ("name", "text"), ("head", "bigint")],
}


def _cell(value: Any, sql_type: str) -> Any:
    if value is None:
        return None
    if sql_type.startswith("double"):
        return float(value)
    return value


async def _mirror(connection: Any, path: str) -> None:
    source = sqlite3.connect(path)
    try:
        for table, columns in TABLES.items():
            names = [c for c, _ in columns]
            await connection.execute(
                f"CREATE TABLE {table} ({', '.join(f'{c} {t}' for c, t in columns)})")
            rows = source.execute(f"SELECT {', '.join(names)} FROM {table}").fetchall()
            records = [tuple(_cell(v, t) for v, (_, t) in zip(row, columns, strict=True))
                       for row in rows]
            await connection.copy_records_to_table(table, records=records, columns=names)
    finally:
        source.close()


async def _rks(connection: Any, compiled: Compiled) -> list[int]:
    return [row[0] for row in await connection.fetch(compiled.sql, *compiled.params)]


async def _run_ids(connection: Any, rks: Sequence[int]) -> list[str]:
    load, _ = compile_load(rks, POSTGRES)
    found = {row["rk"]: row["run_id"] for row in await connection.fetch(load.sql, *load.params)}
    return [found[rk] for rk in rks]


def _same_groups(a: list[Any], b: list[Any]) -> bool:
    def plain(groups: list[Any]) -> list[Any]:
        out = []
        for g in groups:
            stats = {k: tuple(None if isinstance(x, float) and math.isnan(x) else round(x, 9)
                              for x in (s.count, s.mean, s.min, s.max))
                     for k, s in g.metrics.items()}
            key = [None if isinstance(v, float) and math.isnan(v) else v
                   for v in g.key.values()]
            out.append((key, g.count, stats))
        return out

    return plain(a) == plain(b)


async def test_postgres_answers_like_sqlite(tmp_path: Path) -> None:
    require_postgres()
    asyncpg = pytest.importorskip("asyncpg")
    path = str(tmp_path / "runs.db")
    async with tracker_with_runs(path) as tracker:
        async with tracker.start_run("mixed", config={"lr": "text", "optimizer": 3}) as run:
            run.log_metrics({"loss": 0.7}, step=0)
        expected_where = {w: [r.run_id for r in await tracker.list_runs(w)]
                          for w, _ in WHERE_CASES}
        orders = [o for o, _ in ORDER_CASES]
        expected_order = {(o, limit): [r.run_id for r in
                                       await tracker.list_runs(order_by=o, limit=limit)]
                          for o in orders for limit in (None, 2)}
        groupings = [("config.optimizer", "metrics.loss.min, metrics.train/acc"),
                     ("experiment, status", None), ("config.flag", "metrics.loss.count")]
        expected_groups = {g: await tracker.group_runs(g[0], aggregates=g[1])
                           for g in groupings}
        heads = [r.run_id for r in await tracker.list_runs(heads_only=True)]
    schema = f"kw_query_{uuid.uuid4().hex[:12]}"
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(f"CREATE SCHEMA {schema}")
        await connection.execute(f"SET search_path TO {schema}")
        await _mirror(connection, path)
        for where, want in expected_where.items():
            picked = compile_select("default", selection(where, None, None, 0, False),
                                    include_deleted=False, dialect=POSTGRES)
            assert await _run_ids(connection, await _rks(connection, picked)) == want, where
        for (order, limit), want in expected_order.items():
            chosen = selection(None, order, limit, 0, False)
            picked = compile_select("default", chosen, include_deleted=False,
                                    dialect=POSTGRES)
            assert await _run_ids(connection, await _rks(connection, picked)) == want, order
            top = compile_top("default", chosen, include_deleted=False, dialect=POSTGRES,
                              budget=8)
            if top is not None:
                edge = await connection.fetch(top.edge.sql, *top.edge.params)
                walked = await _rks(connection, top.select(edge[0][0] if edge else None))
                if len(walked) == top.needed:
                    assert await _run_ids(connection, walked) == want, order
        for (by, aggregates), want in expected_groups.items():
            plan = compile_groups("default", selection(None, None, None, 0, False),
                                  parse_group_by(by), parse_aggregates(aggregates),
                                  include_deleted=False, dialect=POSTGRES)
            counts = await connection.fetch(plan.counts.sql, *plan.counts.params)
            stats = [] if plan.stats is None else \
                await connection.fetch(plan.stats.sql, *plan.stats.params)
            got = decode_groups(plan, [tuple(r) for r in counts], [tuple(r) for r in stats])
            assert _same_groups(got, want), by
        picked = compile_select("default", selection(None, None, None, 0, True),
                                include_deleted=False, dialect=POSTGRES)
        assert await _run_ids(connection, await _rks(connection, picked)) == heads
    finally:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await connection.close()
