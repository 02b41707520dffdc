"""The compiler: bound parameters only, both dialects, bounded nesting, subqueries the
planner cannot multiply, and the top-k plan against the full plan on each backend's real
tables."""

from __future__ import annotations

import asyncio
import random
import re
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine._query.execute import Fetch, top_keys
from engine._query.parser import MAX_DEPTH, parse_aggregates, parse_group_by, selection
from engine._query.plans import compile_groups, compile_top
from engine._query.sql import (
    CHUNK,
    HOIST_DEPTH,
    POSTGRES,
    PULL_UP,
    SQLITE,
    Compiled,
    Dialect,
    compile_load,
    compile_select,
)
from engine._query.tree import Selection
from tests.conftest import backend_url, in_thread
from tests.query.test_runs import LASTING

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
    """Every parameter has exactly one placeholder, numbered ``?n`` or ``$n``."""
    mark, other = ("?", "$") if dialect is SQLITE else ("$", "?")
    assert other not in compiled.sql
    assert compiled.sql.count(mark) == len(compiled.params)
    numbers = [int(n) for n in re.findall(re.escape(mark) + r"(\d+)", compiled.sql)]
    assert sorted(numbers) == list(range(1, len(compiled.params) + 1))


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


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=lambda d: d.name)
@settings(max_examples=200, deadline=None)
@given(text=st.text().filter(lambda s: "\x00" not in s)
       .map(lambda s: f"\u27e6{s}\u27e7"),  # marked: no statement of ours holds these
       op=st.sampled_from(["=", "!=", "<", "<=", ">", ">=", "contains"]),
       field=st.sampled_from(["config.opt", "name", "experiment", "tags", "status"]))
def test_every_text_literal_is_bound_for_every_field_and_operator(
        dialect: Dialect, text: str, op: str, field: str) -> None:
    """Whatever the text and the comparison — config values included, where a literal might
    be compared as a JSON array or a date — the text reaches the database as a parameter,
    never spliced into the statement, escaped or not."""
    if field == "status" and op in ("=", "!="):
        return  # a status compares only with the names of statuses (refused at the parse)
    if field == "tags" and op not in ("=", "!=", "contains"):
        return  # tags are a set: no order
    quoted = text.replace("'", "''")
    where = f"{field} {op} '{quoted}'"
    for compiled in all_statements(where, None, dialect):
        assert "\u27e6" not in compiled.sql  # neither the text nor its escaped form
        check_marks(compiled, dialect)
    params = compile_select("proj", selection(where, None, None, 0, False),
                            include_deleted=False, dialect=dialect).params
    assert text in params


def test_dialects_differ_where_the_databases_do() -> None:
    where = selection("name < 'b' and config.l contains 'x'", "name", None, 3, False)
    lite = compile_select("p", where, include_deleted=False, dialect=SQLITE).sql
    pg = compile_select("p", where, include_deleted=False, dialect=POSTGRES).sql
    for piece in ("instr(", "json_each(", "LIMIT -1 OFFSET ?6", "+r.project"):
        assert piece in lite
        assert piece not in pg
    for piece in ("strpos(", "jsonb_build_array($", 'COLLATE "C"', "OFFSET $6"):
        assert piece in pg
        assert piece not in lite
    lite_load, _ = compile_load([1, 2], SQLITE)
    pg_load, _ = compile_load([1, 2], POSTGRES)
    assert lite_load.params == ("[1,2]",)
    assert "json_each(?1)" in lite_load.sql
    assert pg_load.params == ([1, 2],)
    assert "unnest($1::bigint[])" in pg_load.sql


def _depth(sql: str) -> int:
    depth = deepest = 0
    for ch in sql:
        depth += ch == "("
        depth -= ch == ")"
        deepest = max(deepest, depth)
    return deepest


def _nested(levels: int, word: str = "and") -> str:
    """A query alternating ``and`` and ``or`` ``levels`` deep, with a `not` every third."""
    query = "config.c0 = 0"
    for i in range(1, levels + 1):
        glue = ("and", "or")[(i + (word == "or")) % 2]
        query = f"config.c{i} = {i} {glue} ({query})"
        if i % 3 == 0 and i < levels:
            query = f"not ({query})"
    return query


def test_chains_are_flat_up_to_a_chunk_then_nest_two_levels() -> None:
    def compiled(count: int) -> str:
        query = " or ".join(f"config.c{i} = {i}" for i in range(count))
        return compile_select("p", selection(query, None, None, 0, False),
                              include_deleted=False, dialect=SQLITE).sql

    leaf = _depth(compiled(1))
    assert _depth(compiled(CHUNK)) == leaf + 1
    assert _depth(compiled(CHUNK + 1)) == leaf + 2
    assert _depth(compiled(900)) == leaf + 2
    assert compiled(900).count(" OR ") == 899


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=lambda d: d.name)
def test_nesting_is_bounded_however_deep_the_query(dialect: Dialect) -> None:
    depths = []
    deepest = max(n for n in range(MAX_DEPTH) if n + 2 * ((n - 1) // 3) <= MAX_DEPTH)
    for levels in (3, 20, deepest):
        chosen = selection(_nested(levels), "-metrics.loss", 10, 0, True)
        full = compile_select("p", chosen, include_deleted=False, dialect=dialect)
        top = compile_top("p", chosen, include_deleted=False, dialect=dialect)
        assert top is not None
        groups = compile_groups("p", chosen, parse_group_by("config.x"), None,
                                include_deleted=False, dialect=dialect)
        for statement in (full, top.select(0.5), groups.counts):
            check_marks(statement, dialect)
        depths.append(_depth(full.sql))
        ctes = full.sql.count("(rk) AS (")
        assert (ctes == 0) == (levels < HOIST_DEPTH), levels
    assert depths[1] == depths[2]  # deeper queries, more CTEs, the same nesting
    assert depths[2] < HOIST_DEPTH + 12


def test_only_the_first_subqueries_may_become_joins() -> None:
    query = " and ".join(f"config.c{i} = {i}" for i in range(10))
    for dialect in (SQLITE, POSTGRES):
        sql = compile_select("p", selection(query, None, None, 0, False),
                             include_deleted=False, dialect=dialect).sql
        fenced = sql.count(") IS TRUE")
        assert fenced == (10 - PULL_UP if dialect is POSTGRES else 0)


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


# The top-k walk against the full plan, on a database full of ties, on each backend ----------

# Values of one config that tie: the same instant as an aware and a naive datetime and as
# POSIX seconds (an int and a float), and a bool equal to a number.
INSTANT = datetime(2024, 1, 1, tzinfo=UTC)
TIED_WHEN = [INSTANT, INSTANT.replace(tzinfo=None), INSTANT.timestamp(),
             int(INSTANT.timestamp()), datetime(2023, 6, 1, 12, 30), "x", float("nan")]


@pytest.fixture(scope="module", params=LASTING)
def tied(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Dialect]:
    """Sixty runs whose metrics and configs take few values (ties everywhere), some with
    NaN, some without the metric, a few deleted; and the dialect of their backend."""
    url = backend_url(str(request.param), tmp_path_factory.mktemp("tied"))
    rng = random.Random(7)
    with engine.sync.connect(url, durability="normal") as tracker:
        for i in range(60):
            config = {"lr": rng.choice([0.1, 0.2, 0.3, float("nan"), "x"]),
                      "k": rng.choice([1, 2, 2, 3, True]), "when": rng.choice(TIED_WHEN)}
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
    return url, SQLITE if str(request.param).startswith("sqlite") else POSTGRES


Work = Callable[[Fetch], Awaitable[Any]]


def _on(url: str, dialect: Dialect, work: Work) -> Any:
    """``work(fetch)``, where ``fetch`` runs a statement on the store's own tables."""
    found: list[Any] = []

    async def run() -> None:
        if dialect is SQLITE:
            db = sqlite3.connect(url)

            async def fetch(c: Compiled) -> Sequence[Sequence[Any]]:
                return db.execute(c.sql, c.params).fetchall()

            try:
                found.append(await work(fetch))
            finally:
                db.close()
            return
        from tests.pg import admin

        connection = await admin(url)

        async def fetch_pg(c: Compiled) -> Sequence[Sequence[Any]]:
            return [tuple(r) for r in await connection.fetch(c.sql, *c.params)]

        try:
            found.append(await work(fetch_pg))
        finally:
            await connection.close()

    in_thread(lambda: asyncio.run(run()))
    return found[0]


def _keys(rows: Sequence[Sequence[Any]]) -> list[Any]:
    return [row[0] for row in rows]


ORDER_FIRST = ["metrics.loss", "metrics.loss.min", "metrics.loss.max", "metrics.acc",
               "config.lr", "config.k", "config.when"]


def test_the_top_k_walk_agrees_with_the_full_plan(tied: tuple[str, Dialect]) -> None:
    url, dialect = tied

    # Each PostgreSQL example connects anew: fewer of them.
    @settings(max_examples=200 if dialect is SQLITE else 40, deadline=None)
    @given(first=st.sampled_from(ORDER_FIRST), descending=st.booleans(),
           rest=st.lists(st.sampled_from(["-metrics.acc", "config.k", "-config.lr", "name",
                                          "config.when"]), max_size=2),
           where=st.sampled_from([None, "tags contains 't'", "metrics.acc >= 2",
                                  "config.k = 2 or metrics.loss < 0.5", "name = 'nobody'",
                                  "config.when >= '2024-01-01'"]),
           limit=st.integers(1, 6), offset=st.integers(0, 4), budget=st.integers(1, 40),
           deleted=st.booleans())
    def check(first: str, descending: bool, rest: list[str], where: str | None, limit: int,
              offset: int, budget: int, deleted: bool) -> None:
        order = ", ".join([("-" if descending else "") + first, *rest])
        chosen = selection(where, order, limit, offset, False)

        async def work(fetch: Fetch) -> tuple[list[Any], list[Any] | None]:
            full = await fetch(compile_select("default", chosen, include_deleted=deleted,
                                              dialect=dialect))
            walked = await top_keys(fetch, dialect, "default", chosen, deleted,
                                    budget=max(budget, 4 * (limit + offset)))
            return _keys(full), walked

        full, walked = _on(url, dialect, work)
        # The walk answers only what it proved; when it cannot, the full plan does.
        assert walked is None or walked == full

    check()


@pytest.mark.parametrize(("order", "where", "walked"), [
    ("-config.k", None, True), ("config.k", "tags contains 't'", True),
    ("metrics.acc", None, True), ("-metrics.acc", "metrics.loss < 0.5", True),
    ("config.when", None, True), ("-config.when, name", None, True),
    ("metrics.loss", "name = 'nobody'", False),
])
def test_a_wide_tie_is_walked_in_run_key_order(tied: tuple[str, Dialect], order: str,
                                               where: str | None, walked: bool) -> None:
    """With a window that ends inside a tie, the walk reads the tie in run key order when
    the ordering has one field, and leaves a tie to sort by a second one to the full plan."""
    url, dialect = tied

    async def work(fetch: Fetch) -> list[tuple[bool, bool]]:
        outcomes = []
        for limit, offset in ((2, 0), (3, 1), (5, 0), (1, 3)):
            chosen = selection(where, order, limit, offset, False)
            full = _keys(await fetch(compile_select("default", chosen, include_deleted=False,
                                                    dialect=dialect)))
            for budget in range(4 * (limit + offset), 60):
                top = compile_top("default", chosen, include_deleted=False, dialect=dialect,
                                  budget=budget)
                assert top is not None
                edge = await fetch(top.edge)
                if len(edge) > 1 and edge[0][0] == edge[-1][0]:  # a window ending in a tie
                    found = await top_keys(fetch, dialect, "default", chosen, False,
                                           budget=budget)
                    outcomes.append((found is not None, found in (None, full)))
        return outcomes

    outcomes = _on(url, dialect, work)
    assert outcomes, "no window ends inside a tie"
    assert all(right for _, right in outcomes)  # what the walk answers is the full plan's
    assert any(answered for answered, _ in outcomes) == walked


def test_a_tie_at_the_top_to_sort_by_a_second_field_is_left_to_the_full_plan(
        tied: tuple[str, Dialect]) -> None:
    url, dialect = tied

    async def work(fetch: Fetch) -> list[Any]:
        found = []
        for order in ("-config.when", "-config.when, name"):
            chosen = selection(None, order, 1, 0, False)
            full = _keys(await fetch(compile_select("default", chosen, include_deleted=False,
                                                    dialect=dialect)))
            # The best value, the instant, is held by more than twice 4 entries.
            found.append((await top_keys(fetch, dialect, "default", chosen, False, budget=4),
                          full))
        return found

    (alone, first), (second, _) = _on(url, dialect, work)
    assert alone == first
    assert second is None


def test_the_walk_proves_a_typical_answer(tied: tuple[str, Dialect]) -> None:
    url, dialect = tied
    chosen = selection(None, "-metrics.acc, name", 3, 1, False)
    plan = compile_top("default", chosen, include_deleted=False, dialect=dialect, budget=16)
    assert plan is not None

    async def work(fetch: Fetch) -> tuple[Any, ...]:
        edge = await fetch(plan.edge)
        return (edge, await fetch(plan.select(edge[0][0])),
                await fetch(compile_select("default", chosen, include_deleted=False,
                                           dialect=dialect)))

    edge, rows, full = _on(url, dialect, work)
    assert len(edge) == 17  # the window's edge and the entries after it
    assert len(rows) == plan.needed
    assert _keys(rows)[1:] == _keys(full)


async def test_list_runs_uses_both_plans_with_one_answer(tied: tuple[str, Dialect]) -> None:
    url, _ = tied
    async with engine.connect(url) as tracker:
        for order in ("-metrics.loss", "config.lr", "-config.k, name", "metrics.acc",
                      "config.when", "-config.when"):
            everything = [r.run_id for r in await tracker.list_runs(order_by=order)]
            for limit in (1, 3, 10):
                for offset in (0, 2):
                    page = await tracker.list_runs(order_by=order, limit=limit, offset=offset)
                    assert [r.run_id for r in page] == everything[offset:offset + limit]


async def test_equal_instants_tie_and_ties_go_oldest_first(tied: tuple[str, Dialect]) -> None:
    url, _ = tied
    async with engine.connect(url) as tracker:
        runs = await tracker.list_runs(order_by="config.when")
        instants = [r.run_id for r in runs if r.config["when"] in TIED_WHEN[:4]
                    and not isinstance(r.config["when"], str)]
        assert len({type(r.config["when"]) for r in runs if r.run_id in instants}) >= 3
        ranks = [i for i, r in enumerate(runs) if r.run_id in instants]
        assert ranks == list(range(ranks[0], ranks[0] + len(ranks)))  # one tie, together
        assert instants == sorted(instants)  # in creation order, whatever the kind
        descending = [r.run_id for r in await tracker.list_runs(order_by="-config.when")
                      if r.run_id in instants]
        assert descending == instants  # a tie keeps creation order either way


def test_selection_defaults() -> None:
    assert Selection() == selection(None, None, None, 0, False)
