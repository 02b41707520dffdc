"""The compiler: bound parameters only, both dialects, bounded depth, and the top-k plan."""

from __future__ import annotations

import random
import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine._query import parse_aggregates, parse_group_by, selection
from engine._query_ast import Selection
from engine._query_plans import compile_groups, compile_top
from engine._query_sql import POSTGRES, SQLITE, Compiled, Dialect, compile_load, compile_select

NASTY = ["'; DROP TABLE runs; --", "x' OR '1'='1", 'a"b', "a`b", "$1", "?", "%_", "\\", "é"]
QUERIES = [
    "metrics.train/acc > 0.9 or config.optimizer = 'adam'",
    "not (name contains 'x' and tags in ('a', null)) or experiment not in ('e', 'f')",
    "config.lr != 0.1 and config.flag = true and config.when > '2024-01-01'",
    "metrics.loss = nan or metrics.loss.count >= 3 or metrics.`a.b`.last_step < 10",
    "created_at >= '2024-01-01' and ended_at = null and status != 'running'",
    "config.tags contains 'x' and config.x not exists and tags != 'b' and tags exists",
    "config.x in (1, 'a', true, null, nan) and config.y not in (2)",
]


def check_marks(compiled: Compiled, dialect: Dialect) -> None:
    """Every parameter has exactly one placeholder, in order."""
    if dialect is SQLITE:
        assert "$" not in compiled.sql
        assert compiled.sql.count("?") == len(compiled.params)
    else:
        assert "?" not in compiled.sql
        numbers = [int(n) for n in re.findall(r"\$(\d+)", compiled.sql)]
        assert numbers == list(range(1, len(compiled.params) + 1))


def all_statements(where: str, order: str | None, dialect: Dialect) -> list[Compiled]:
    chosen = selection(where, order, 10, 5, True)
    out = [compile_select("proj", chosen, include_deleted=False, dialect=dialect)]
    top = compile_top("proj", chosen, include_deleted=True, dialect=dialect)
    if top is not None:
        out += [top.edge, top.select(0.5), top.select(None)]
    plan = compile_groups("proj", chosen, parse_group_by("experiment, config.opt"),
                          parse_aggregates("metrics.loss.min, metrics.acc"),
                          include_deleted=False, dialect=dialect)
    out += [plan.counts, *(s for s in (plan.stats,) if s is not None)]
    out += list(compile_load([1, 2, 3], dialect))
    return out


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=lambda d: d.name)
@pytest.mark.parametrize("where", QUERIES)
def test_placeholders_match_parameters(dialect: Dialect, where: str) -> None:
    for order in (None, "-metrics.loss.min, config.lr, name", "config.lr"):
        for compiled in all_statements(where, order, dialect):
            check_marks(compiled, dialect)


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=lambda d: d.name)
@pytest.mark.parametrize("nasty", NASTY)
def test_values_and_names_are_parameters_never_text(dialect: Dialect, nasty: str) -> None:
    quoted = nasty.replace("'", "''")
    named = nasty.replace("`", "``")
    where = (f"name = '{quoted}' or config.`{named}` contains '{quoted}' or "
             f"metrics.`{named}`.min < 1 or tags in ('{quoted}')")
    for compiled in all_statements(where, f"-metrics.`{named}`, config.`{named}`", dialect):
        if nasty not in ("$1", "?"):  # those are the placeholders themselves
            assert nasty not in compiled.sql
        check_marks(compiled, dialect)
    params = compile_select("proj", selection(where, None, None, 0, False),
                            include_deleted=False, dialect=dialect).params
    assert params.count(nasty) >= 4


def test_dialects_differ_where_the_databases_do() -> None:
    where = selection("name < 'b' and config.l contains 'x'", "name", None, 3, False)
    lite = compile_select("p", where, include_deleted=False, dialect=SQLITE).sql
    pg = compile_select("p", where, include_deleted=False, dialect=POSTGRES).sql
    for piece in ("instr(", "json_each(", "LIMIT -1 OFFSET ?", "+r.project"):
        assert piece in lite
        assert piece not in pg
    for piece in ("strpos(", "jsonb_build_array($", 'COLLATE "C"', "OFFSET $6"):
        assert piece in pg
        assert piece not in lite
    lite_load, _ = compile_load([1, 2], SQLITE)
    pg_load, _ = compile_load([1, 2], POSTGRES)
    assert lite_load.params == ("[1,2]",)
    assert "json_each(?)" in lite_load.sql
    assert pg_load.params == ([1, 2],)
    assert "unnest($1::bigint[])" in pg_load.sql


def _depth(sql: str) -> int:
    depth = deepest = 0
    for ch in sql:
        depth += ch == "("
        depth -= ch == ")"
        deepest = max(deepest, depth)
    return deepest


def test_long_chains_compile_to_balanced_trees(tmp_path: Path) -> None:
    query = " or ".join(f"config.c{i} = {i}" for i in range(900))
    compiled = compile_select("p", selection(query, None, None, 0, False),
                              include_deleted=False, dialect=SQLITE)
    assert _depth(compiled.sql) < 30
    path = str(tmp_path / "runs.db")
    with engine.sync.connect(path) as tracker:
        with tracker.start_run("a", config={"c899": 899}):
            pass
        assert [r.run_id for r in tracker.list_runs(query)] == ["a"]


def test_no_top_k_plan_where_no_index_orders() -> None:
    def top(order: str | None, limit: int | None = 10, offset: int = 0) -> object:
        return compile_top("p", selection(None, order, limit, offset, False),
                           include_deleted=False, dialect=SQLITE, budget=100)

    assert top("-metrics.loss") is not None
    assert top("config.lr, name") is not None
    assert top("name") is None
    assert top(None) is None
    assert top("metrics.loss.count") is None
    assert top("metrics.loss.last_step") is None
    assert top("metrics.loss", limit=None) is None
    assert top("metrics.loss", limit=20, offset=10) is None  # more than budget / 4
    assert top("metrics.loss", limit=0) is None


# The top-k walk against the full plan, on a database full of ties -------------------------

@pytest.fixture(scope="module")
def tied(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Sixty runs whose metrics and configs take few values (ties everywhere), some with
    NaN, some without the metric, a few deleted."""
    path = str(tmp_path_factory.mktemp("tied") / "runs.db")
    rng = random.Random(7)
    with engine.sync.connect(path, durability="normal") as tracker:
        for i in range(60):
            config = {"lr": rng.choice([0.1, 0.2, 0.3, float("nan"), "x"]),
                      "k": rng.choice([1, 2, 2, 3])}
            if rng.random() < 0.2:
                del config["lr"]
            with tracker.start_run(f"r{i:02d}", config=config,
                                   tags=["t"] if rng.random() < 0.5 else []) as run:
                points = {"loss": rng.choice([0.0, 0.5, 0.5, 1.0, float("nan")]),
                          "acc": rng.choice([1.0, 2.0, 3.0])}
                if rng.random() < 0.25:
                    del points["loss"]
                run.log_metrics(points, step=0)
                if rng.random() < 0.5:
                    run.log_metrics({"loss": rng.choice([0.25, 0.75])}, step=1)
        for i in range(0, 60, 13):
            tracker.delete_run(f"r{i:02d}")
    return path


def _run(db: sqlite3.Connection, compiled: Compiled) -> list[tuple[object, ...]]:
    return db.execute(compiled.sql, compiled.params).fetchall()


@settings(max_examples=300, deadline=None)
@given(first=st.sampled_from(["metrics.loss", "metrics.loss.min", "metrics.loss.max",
                              "metrics.acc", "config.lr", "config.k"]),
       descending=st.booleans(),
       rest=st.lists(st.sampled_from(["-metrics.acc", "config.k", "-config.lr", "name"]),
                     max_size=2),
       where=st.sampled_from([None, "tags contains 't'", "metrics.acc >= 2",
                              "config.k = 2 or metrics.loss < 0.5", "name = 'nobody'"]),
       limit=st.integers(1, 6), offset=st.integers(0, 4), budget=st.integers(1, 40),
       deleted=st.booleans())
def test_the_top_k_walk_agrees_with_the_full_plan(
        tied: str, first: str, descending: bool, rest: list[str], where: str | None,
        limit: int, offset: int, budget: int, deleted: bool) -> None:
    order = ", ".join([("-" if descending else "") + first, *rest])
    chosen = selection(where, order, limit, offset, False)
    db = sqlite3.connect(tied)
    try:
        full = [r[0] for r in _run(db, compile_select("default", chosen,
                                                      include_deleted=deleted,
                                                      dialect=SQLITE))]
        plan = compile_top("default", chosen, include_deleted=deleted, dialect=SQLITE,
                           budget=max(budget, 4 * (limit + offset)))
        assert plan is not None
        edge = _run(db, plan.edge)
        rows = _run(db, plan.select(edge[0][0] if edge else None))
        # The executor's test: with ``needed`` rows the walk has proved its answer (ties
        # or not); with fewer it hands over to the full plan.
        if len(rows) == plan.needed:
            assert [r[0] for r in rows][offset:] == full
        else:
            assert len(rows) < plan.needed
    finally:
        db.close()


def test_the_walk_proves_a_typical_answer(tied: str) -> None:
    chosen = selection(None, "-metrics.acc, name", 3, 1, False)
    plan = compile_top("default", chosen, include_deleted=False, dialect=SQLITE, budget=16)
    assert plan is not None
    db = sqlite3.connect(tied)
    try:
        edge = _run(db, plan.edge)
        assert len(edge) == 17  # the window's edge and the entries after it
        rows = _run(db, plan.select(edge[0][0]))
        full = _run(db, compile_select("default", chosen, include_deleted=False,
                                       dialect=SQLITE))
    finally:
        db.close()
    assert len(rows) == plan.needed
    assert [r[0] for r in rows][1:] == [r[0] for r in full]


async def test_list_runs_uses_both_plans_with_one_answer(tied: str) -> None:
    async with engine.connect(tied) as tracker:
        for order in ("-metrics.loss", "config.lr", "-config.k, name", "metrics.acc"):
            everything = [r.run_id for r in await tracker.list_runs(order_by=order)]
            for limit in (1, 3, 10):
                for offset in (0, 2):
                    page = await tracker.list_runs(order_by=order, limit=limit, offset=offset)
                    assert [r.run_id for r in page] == everything[offset:offset + limit]


def test_selection_defaults() -> None:
    assert Selection() == selection(None, None, None, 0, False)
