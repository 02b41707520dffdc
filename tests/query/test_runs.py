"""``list_runs`` and ``group_runs`` through the public API, on every backend: each operator,
missing values, NaN, ordering, paging, scopes, grouping, the deepest queries, and injection
attempts.

Tests that only read share one database per backend (``shared``, filled once per module); the
tests that write open a fresh one (``db_url``, from ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import random
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import engine
from engine._query.parser import MAX_DEPTH, MAX_TERMS, parse_where
from engine.errors import ClosedError, QuerySyntaxError, ValidationError
from tests.conftest import BACKENDS, MakeTracker, backend_url, in_thread

NAN = math.nan
T0 = 1_700_000_000.0


class Clock:
    """Each reading one second later, so run times are known exactly."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


RUNS: list[dict[str, Any]] = [
    {"run_id": "adam-1", "name": "first", "experiment": "e", "tags": ["baseline"],
     "config": {"optimizer": "adam", "lr": 0.01, "flag": True, "layers": ["conv", "relu"],
                "when": datetime(2024, 1, 1, tzinfo=UTC), "none": None},
     "metrics": {"loss": [0.9, 0.5, 0.7], "train/acc": [0.6], "odd name": [1.0]}},
    {"run_id": "sgd-1", "name": "second", "experiment": "e", "tags": ["baseline", "x y"],
     "config": {"optimizer": "sgd", "lr": 0.1, "flag": False, "seed": 1},
     "metrics": {"loss": [NAN], "train/acc": [0.9]}},
    {"run_id": "sgd-2", "name": "it's", "experiment": None, "tags": [],
     "config": {"optimizer": "sgd", "lr": 1, "seed": 1.0, "flag": 1},
     "metrics": {"loss": [0.2, NAN], "train/acc": [0.95]}, "fail": True},
    {"run_id": "bare", "name": "fourth", "experiment": "f", "tags": [],
     "config": {}, "metrics": {}},
]


@contextlib.asynccontextmanager
async def tracker_with_runs(url: str = ":memory:") -> AsyncIterator[engine.Tracker]:
    async with engine.connect(url, flush_interval=0.001, clock=Clock()) as tracker:
        for spec in RUNS:
            with contextlib.suppress(RuntimeError):
                async with tracker.start_run(spec["run_id"], name=spec["name"],
                                             experiment=spec["experiment"],
                                             tags=spec["tags"], config=spec["config"]) as run:
                    for metric, values in spec["metrics"].items():
                        for step, value in enumerate(values):
                            run.log_metrics({metric: value}, step=step)
                    if spec.get("fail"):
                        raise RuntimeError("diverged")
        yield tracker


async def ids(tracker: engine.Tracker, where: str | None = None, **options: Any) -> list[str]:
    return [r.run_id for r in await tracker.list_runs(where, **options)]


# The backends whose databases outlive a connection: one is filled and read by many tests.
LASTING = [b for b in BACKENDS if b != "sqlite-memory"]


@pytest.fixture(scope="module", params=LASTING)
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database holding ``RUNS`` on each lasting backend; tests must only read it."""
    url = backend_url(str(request.param), tmp_path_factory.mktemp("shared"))

    async def fill() -> None:
        async with tracker_with_runs(url):
            pass

    in_thread(lambda: asyncio.run(fill()))
    return url


def reading(url: str) -> engine.Tracker:
    return engine.connect(url, durability="normal")


WHERE_CASES: list[tuple[str, list[str]]] = [
    # Run fields.
    ("run_id = 'sgd-1'", ["sgd-1"]),
    ("name = 'it''s'", ["sgd-2"]),
    ('name = "it\'s"', ["sgd-2"]),
    ("name != 'first'", ["sgd-1", "sgd-2", "bare"]),
    ("name < 'g'", ["adam-1", "bare"]),
    ("name >= 'second'", ["sgd-1"]),
    ("name contains 'ou'", ["bare"]),
    ("name in ('first', 'fourth')", ["adam-1", "bare"]),
    ("name not in ('first', 'fourth')", ["sgd-1", "sgd-2"]),
    ("status = 'failed'", ["sgd-2"]),
    ("status != 'failed'", ["adam-1", "sgd-1", "bare"]),
    ("experiment = 'e'", ["adam-1", "sgd-1"]),
    ("experiment != 'e'", ["bare"]),  # a run without one has nothing to differ
    ("experiment = null", ["sgd-2"]),
    ("experiment exists", ["adam-1", "sgd-1", "bare"]),
    ("experiment not in ('e')", ["bare"]),
    ("not experiment = 'e'", ["sgd-2", "bare"]),
    # Tags.
    ("tags contains 'baseline'", ["adam-1", "sgd-1"]),
    ("tags = 'x y'", ["sgd-1"]),
    ("tags != 'baseline'", ["sgd-2", "bare"]),
    ("tags in ('x y', 'nope')", ["sgd-1"]),
    ("tags not in ('x y')", ["adam-1", "sgd-2", "bare"]),
    ("tags exists", ["adam-1", "sgd-1"]),
    ("tags = null", ["sgd-2", "bare"]),
    ("tags in ('baseline', null)", ["adam-1", "sgd-1", "sgd-2", "bare"]),
    # Configs: types stay apart; missing and null fail every comparison.
    ("config.optimizer = 'adam'", ["adam-1"]),
    ("config.optimizer != 'adam'", ["sgd-1", "sgd-2"]),
    ("config.lr < 0.5", ["adam-1", "sgd-1"]),
    ("config.lr >= 0.1", ["sgd-1", "sgd-2"]),
    ("config.lr = 1", ["sgd-2"]),
    ("config.seed = 1", ["sgd-1", "sgd-2"]),  # 1 and 1.0 are equal numbers
    ("config.flag = true", ["adam-1"]),  # the int 1 is not true
    ("config.flag = 1", ["sgd-2"]),
    ("config.flag != true", ["sgd-1", "sgd-2"]),
    ("config.flag > 0", ["sgd-2"]),  # bools are not ordered with numbers
    ("config.layers contains 'relu'", ["adam-1"]),
    ("config.layers contains 'rel'", []),  # an element, not a substring, of a list
    ("config.optimizer contains 'gd'", ["sgd-1", "sgd-2"]),
    ("config.layers = 'relu'", []),
    ("config.when = '2024-01-01'", ["adam-1"]),
    ("config.when > '2023-12-31T23:59:59Z'", ["adam-1"]),
    ("config.when < '2024-01-01T00:00:00-01:00'", ["adam-1"]),
    ("config.when = 'not a date'", []),
    ("config.none = null", ["adam-1", "sgd-1", "sgd-2", "bare"]),
    ("config.none exists", []),
    ("config.seed = null", ["adam-1", "bare"]),
    ("config.seed exists", ["sgd-1", "sgd-2"]),
    ("config.seed not exists", ["adam-1", "bare"]),
    ("config.seed != 2", ["sgd-1", "sgd-2"]),
    ("config.seed not in (2)", ["sgd-1", "sgd-2"]),
    ("not config.seed = 2", ["adam-1", "sgd-1", "sgd-2", "bare"]),
    ("config.optimizer in ('adam', 1, true, null)", ["adam-1", "bare"]),
    ("config.missing = 'x' or config.missing != 'x'", []),
    # Metrics: last by default; NaN is a value that no number equals.
    ("metrics.loss < 0.8", ["adam-1"]),
    ("metrics.loss.min < 0.3", ["sgd-2"]),
    ("metrics.loss.max >= 0.9", ["adam-1"]),
    ("metrics.loss.count = 3", ["adam-1"]),
    ("metrics.loss.last_step = 1", ["sgd-2"]),
    ("metrics.loss = nan", ["sgd-1", "sgd-2"]),
    ("metrics.loss != nan", ["adam-1"]),
    ("metrics.loss != 0.7", ["sgd-1", "sgd-2"]),
    ("metrics.loss.min = nan", ["sgd-1"]),
    ("metrics.loss > -inf", ["adam-1"]),
    ("metrics.loss exists", ["adam-1", "sgd-1", "sgd-2"]),
    ("metrics.loss = null", ["bare"]),
    ("metrics.loss in (0.7, nan)", ["adam-1", "sgd-1", "sgd-2"]),
    ("metrics.loss not in (0.7)", ["sgd-1", "sgd-2"]),
    ("not metrics.loss < 0.8", ["sgd-1", "sgd-2", "bare"]),
    ("metrics.train/acc > 0.9", ["sgd-2"]),
    ("metrics.`train/acc`.max >= 0.9", ["sgd-1", "sgd-2"]),
    ("metrics.`odd name` = 1", ["adam-1"]),
    # Structure.
    ("metrics.train/acc > 0.9 or config.optimizer = 'adam'", ["adam-1", "sgd-2"]),
    ("(metrics.loss = nan or tags exists) and not status = 'failed'", ["adam-1", "sgd-1"]),
    ("config.seed = 1 AND (name = 'second' OR name = 'it''s')", ["sgd-1", "sgd-2"]),
    ("", ["adam-1", "sgd-1", "sgd-2", "bare"]),
]


@pytest.mark.parametrize(("where", "expected"), WHERE_CASES)
async def test_each_operator(shared: str, where: str, expected: list[str]) -> None:
    async with reading(shared) as tracker:
        assert await ids(tracker, where) == expected


async def test_times_compare_with_iso_strings_and_posix_seconds(shared: str) -> None:
    async with reading(shared) as tracker:
        states = await tracker.list_runs()
        second = states[1].created_at
        assert await ids(tracker, f"created_at >= '{second.isoformat()}'") == \
            ["sgd-1", "sgd-2", "bare"]
        naive = second.replace(tzinfo=None).isoformat()  # naive means UTC
        assert await ids(tracker, f"created_at < '{naive}'") == ["adam-1"]
        assert await ids(tracker, f"created_at < {second.timestamp()}") == ["adam-1"]
        assert await ids(tracker, "ended_at exists") == ["adam-1", "sgd-1", "sgd-2", "bare"]
        ended = states[0].ended_at
        assert ended is not None
        assert await ids(tracker, f"ended_at <= '{ended.isoformat()}'") == ["adam-1"]
        assert await ids(tracker, "updated_at > '2000-01-01'") == await ids(tracker)


async def test_a_running_run_has_no_end(make: MakeTracker) -> None:
    async with make(flush_interval=0.001) as tracker:
        async with tracker.start_run("open") as run:
            await run.flush()
            assert await ids(tracker, "ended_at = null") == ["open"]
            assert await ids(tracker, "status = 'running'") == ["open"]
        assert await ids(tracker, "ended_at = null") == []


ORDER_CASES: list[tuple[str | None, list[str]]] = [
    (None, ["adam-1", "sgd-1", "sgd-2", "bare"]),
    ("metrics.loss", ["adam-1", "sgd-1", "sgd-2", "bare"]),  # NaN and missing last
    ("-metrics.loss", ["adam-1", "sgd-1", "sgd-2", "bare"]),
    ("metrics.loss.min", ["sgd-2", "adam-1", "sgd-1", "bare"]),
    ("-metrics.loss.min", ["adam-1", "sgd-2", "sgd-1", "bare"]),
    ("-metrics.train/acc", ["sgd-2", "sgd-1", "adam-1", "bare"]),
    ("metrics.train/acc desc", ["sgd-2", "sgd-1", "adam-1", "bare"]),
    ("config.lr", ["adam-1", "sgd-1", "sgd-2", "bare"]),
    ("-config.lr", ["sgd-2", "sgd-1", "adam-1", "bare"]),
    ("config.seed, -name", ["sgd-1", "sgd-2", "bare", "adam-1"]),  # a tie, then names
    ("-config.optimizer, run_id", ["sgd-1", "sgd-2", "adam-1", "bare"]),
    ("experiment, -run_id", ["sgd-1", "adam-1", "bare", "sgd-2"]),
    ("-experiment", ["bare", "adam-1", "sgd-1", "sgd-2"]),  # ties keep creation order
    ("config.flag", ["sgd-1", "adam-1", "sgd-2", "bare"]),  # false, true (0, 1), 1
    ("-name", ["sgd-1", "sgd-2", "bare", "adam-1"]),
    ("-created_at", ["bare", "sgd-2", "sgd-1", "adam-1"]),
    ("status, name", ["sgd-2", "adam-1", "bare", "sgd-1"]),
]


@pytest.mark.parametrize(("order_by", "expected"), ORDER_CASES)
async def test_ordering_puts_missing_values_last(shared: str, order_by: str | None,
                                                 expected: list[str]) -> None:
    async with reading(shared) as tracker:
        assert await ids(tracker, order_by=order_by) == expected
        for limit in (1, 3):  # the top-k walk, where it applies, agrees with the full plan
            assert await ids(tracker, order_by=order_by, limit=limit) == expected[:limit]
            assert await ids(tracker, order_by=order_by, limit=limit, offset=1) == \
                expected[1:1 + limit]


async def test_mixed_config_types_sort_numbers_then_text(make: MakeTracker) -> None:
    async with make(flush_interval=0.001) as tracker:
        for run_id, value in [("t", "b"), ("n", 2), ("z", None), ("nan", NAN), ("a", "a"),
                              ("m", -1.5), ("b", True), ("l", ["x"])]:
            async with tracker.start_run(run_id, config={"v": value}):
                pass
        async with tracker.start_run("missing"):
            pass
        assert await ids(tracker, order_by="config.v") == \
            ["m", "b", "n", "l", "a", "t", "z", "nan", "missing"]
        assert await ids(tracker, order_by="-config.v") == \
            ["n", "b", "m", "t", "a", "l", "z", "nan", "missing"]


async def test_limit_and_offset_page_through_the_order(shared: str) -> None:
    async with reading(shared) as tracker:
        everything = await ids(tracker, order_by="-metrics.train/acc")
        pages = [await ids(tracker, order_by="-metrics.train/acc", limit=2, offset=o)
                 for o in (0, 2, 4)]
        assert pages == [everything[:2], everything[2:4], []]
        assert await ids(tracker, limit=0) == []
        assert await ids(tracker, offset=3) == ["bare"]
        with pytest.raises(ValidationError):
            await tracker.list_runs(limit=-1)


async def test_deleted_runs_heads_and_projects(db_url: str) -> None:
    async with tracker_with_runs(db_url) as tracker:
        assert await ids(tracker, heads_only=True) == ["sgd-1", "bare"]
        await tracker.delete_run("sgd-1")
        assert await ids(tracker, "experiment = 'e'") == ["adam-1"]
        assert await ids(tracker, "experiment = 'e'", include_deleted=True) == \
            ["adam-1", "sgd-1"]
        assert await ids(tracker, heads_only=True) == ["adam-1", "bare"]
        async with tracker.start_run("elsewhere", project="other", config={"lr": 0.01}):
            pass
        assert await ids(tracker, "config.lr = 0.01") == ["adam-1"]
        assert await ids(tracker, "config.lr = 0.01", project="other") == ["elsewhere"]


async def test_runs_come_back_whole(shared: str) -> None:
    async with reading(shared) as tracker:
        (found,) = await tracker.list_runs("run_id = 'adam-1'")
        assert found == await tracker.get_run("adam-1")
        assert found.metrics["loss"].min == 0.5
        assert found.config["layers"] == ["conv", "relu"]


async def test_bad_queries_raise_before_reading(shared: str) -> None:
    async with reading(shared) as tracker:
        with pytest.raises(QuerySyntaxError) as caught:
            await tracker.list_runs("metrics.loss >> 1")
        assert caught.value.position == 14
        with pytest.raises(QuerySyntaxError):
            await tracker.list_runs(order_by="tags")
        with pytest.raises(QuerySyntaxError):
            await tracker.group_runs("metrics.loss")
    with pytest.raises(ClosedError):
        await tracker.list_runs("name = 'a'")


@pytest.mark.parametrize("nasty", [
    "'; DROP TABLE runs; --", "x' OR '1'='1", "\" OR \"\"=\"", "a`) OR 1=1 --",
    "%", "_", "\\", "); DELETE FROM metrics; --", "' || (SELECT run_id FROM runs) || '",
])
async def test_injection_attempts_are_just_data(db_url: str, nasty: str) -> None:
    async with tracker_with_runs(db_url) as tracker:
        async with tracker.start_run("evil", name=nasty, tags=[nasty],
                                     config={nasty: nasty, "plain": nasty}) as run:
            run.log_metrics({nasty: 1.0}, step=0)
        quoted = nasty.replace("'", "''")
        named = nasty.replace("`", "``")
        assert await ids(tracker, f"name = '{quoted}'") == ["evil"]
        assert await ids(tracker, f"name != '{quoted}'") == ["adam-1", "sgd-1", "sgd-2", "bare"]
        assert await ids(tracker, f"tags contains '{quoted}'") == ["evil"]
        assert await ids(tracker, f"config.`{named}` = '{quoted}'") == ["evil"]
        assert await ids(tracker, f"config.plain contains '{quoted}'") == ["evil"]
        assert await ids(tracker, f"metrics.`{named}` >= 1") == ["evil"]
        assert await ids(tracker, f"name contains '{quoted}'") == ["evil"]
        assert await ids(tracker, order_by=f"-metrics.`{named}`", limit=1) == ["evil"]
        groups = await tracker.group_runs(f"config.`{named}`")
        assert [(list(g.key.values()), g.count) for g in groups] == [([nasty], 1), ([None], 4)]
        assert len(await tracker.list_runs()) == 5  # every table still there, and whole


async def test_group_runs_counts_and_metric_stats(shared: str) -> None:
    async with reading(shared) as tracker:
        groups = await tracker.group_runs("config.optimizer",
                                          aggregates="metrics.loss.min, metrics.train/acc")
        assert [(g.key, g.count) for g in groups] == [
            ({"config.optimizer": "adam"}, 1), ({"config.optimizer": "sgd"}, 2),
            ({"config.optimizer": None}, 1)]
        sgd = groups[1].metrics
        assert list(sgd) == ["metrics.loss.min", "metrics.train/acc.last"]
        assert sgd["metrics.loss.min"] == engine.MetricStats(1, 0.2, 0.2, 0.2)  # NaN passed over
        acc = sgd["metrics.train/acc.last"]
        assert acc.count == 2
        assert math.isclose(acc.mean, 0.925)
        assert (acc.min, acc.max) == (0.9, 0.95)
        nothing = groups[2].metrics["metrics.loss.min"]
        assert nothing.count == 0
        assert math.isnan(nothing.mean)


async def test_group_runs_defaults_and_several_fields(shared: str) -> None:
    async with reading(shared) as tracker:
        groups = await tracker.group_runs(["experiment", "status"], where="name != 'fourth'")
        assert [(tuple(g.key.values()), g.count) for g in groups] == [
            (("e", "succeeded"), 2), ((None, "failed"), 1)]
        assert set(groups[0].metrics) == {"metrics.loss.last", "metrics.`odd name`.last",
                                          "metrics.train/acc.last"}
        assert groups[0].metrics["metrics.loss.last"].count == 1  # sgd-1's NaN passed over
        none = await tracker.group_runs("experiment", aggregates=[])
        assert all(g.metrics == {} for g in none)
        assert await tracker.group_runs("experiment", where="name = 'nobody'") == []
        with pytest.raises(dataclasses.FrozenInstanceError):
            groups[0].count = 3  # type: ignore[misc]


async def test_group_keys_keep_types_apart(make: MakeTracker) -> None:
    async with make(flush_interval=0.001) as tracker:
        for i, value in enumerate([1, 1.0, True, "1", NAN, None, ["a"], NAN]):
            async with tracker.start_run(f"r{i}", config={"v": value}):
                pass
        async with tracker.start_run("missing"):
            pass
        groups = await tracker.group_runs("config.v")
        keys = [g.key["config.v"] for g in groups]
        assert [g.count for g in groups] == [2, 1, 1, 1, 2, 2]
        assert keys[0] == 1
        assert keys[1] is True
        assert keys[2:4] == ["1", ["a"]]
        assert math.isnan(keys[4])
        assert keys[5] is None


async def test_one_instant_naive_or_aware_is_one_group(make: MakeTracker) -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    async with make(flush_interval=0.001) as tracker:
        for run_id, value, loss in [("aware", when, 1.0), ("naive", when.replace(tzinfo=None), 3.0),
                                    ("earlier", datetime(2023, 6, 1), 5.0),
                                    ("seconds", when.timestamp(), 7.0)]:
            async with tracker.start_run(run_id, config={"when": value}) as run:
                run.log_metrics({"loss": loss}, step=0)
        groups = await tracker.group_runs("config.when", aggregates="metrics.loss")
    assert [(g.key["config.when"], g.count) for g in groups] == [
        (datetime(2023, 6, 1, tzinfo=UTC), 1), (when.timestamp(), 1), (when, 2)]
    merged = groups[2].metrics["metrics.loss.last"]
    assert merged == engine.MetricStats(2, 2.0, 1.0, 3.0)


def test_the_sync_facade(tmp_path: Path) -> None:
    with engine.sync.connect(str(tmp_path / "runs.db")) as tracker:
        for i in range(3):
            with tracker.start_run(f"r{i}", config={"i": i}) as run:
                run.log_metrics({"loss": 1.0 / (i + 1)}, step=0)
        assert [r.run_id for r in tracker.list_runs("config.i >= 1",
                                                    order_by="metrics.loss")] == ["r2", "r1"]
        assert [r.run_id for r in tracker.list_runs(limit=1)] == ["r0"]
        (group,) = tracker.group_runs("experiment", aggregates="metrics.loss")
        assert group.count == 3
        assert group.metrics["metrics.loss.last"].max == 1.0
        table = tracker.fetch_runs_table("config.i >= 1", order_by="-config.i", limit=1,
                                         columns="run_id, config.i, metrics.loss")
        assert table.columns == ("run_id", "config.i", "metrics.loss.last")
        assert table.rows == (("r2", 2, 1 / 3),)
        assert tracker.fetch_runs_table().to_csv().splitlines()[1].startswith("r0,")
        with pytest.raises(QuerySyntaxError):
            tracker.fetch_runs_table(columns="run_id, nonsense")


@pytest.mark.parametrize(("call", "argument"), [
    ("list_runs", {"order_by": 3}), ("list_runs", {"order_by": ["name", None]}),
    ("list_runs", {"where": b"name = 'a'"}), ("group_runs", {"by": 1}),
    ("group_runs", {"by": "experiment", "aggregates": 0}),
    ("group_runs", {"by": "experiment", "aggregates": {"metrics.loss"}}),
    ("fetch_runs_table", {"columns": 7}),
])
async def test_query_arguments_that_are_not_text_are_query_errors(
        shared: str, call: str, argument: dict[str, Any]) -> None:
    async with reading(shared) as tracker:
        with pytest.raises(QuerySyntaxError) as caught:
            await getattr(tracker, call)(**argument)
        (name,) = argument.keys() - {"by"} or {"by"}
        assert caught.value.message.startswith(name)


# The deepest queries ----------------------------------------------------------------------

ALIVE = frozenset(r["run_id"] for r in RUNS)
# Single predicates with known answers (an `and` or `or` inside one would bind differently
# once it is glued to others).
LEAVES = {where: frozenset(found) for where, found in WHERE_CASES
          if where and not any(w in where.lower().split() for w in ("and", "or"))}


def deep_query(rng: random.Random, leaves: Mapping[str, frozenset[str]],
               every: frozenset[str], depth: int = MAX_DEPTH,
               width: int = 1) -> tuple[str, frozenset[str]]:
    """A query nesting exactly ``depth`` levels (parentheses and nots, as the parser counts
    them) and the runs it selects, worked out with sets."""
    names = sorted(leaves)
    text = rng.choice([n for n in names if not n.startswith("not ")])  # a `not` nests too
    found = leaves[text]
    level = 0
    while level < depth:
        if depth - level >= 2 and rng.random() < 0.3:
            text, found, level = f"not ({text})", every - found, level + 2
            continue
        word = rng.choice(("and", "or"))
        side = [rng.choice(names) for _ in range(width)]
        inner = f"({text})"
        text = f" {word} ".join([inner, *side] if rng.random() < 0.5 else [*side, inner])
        for leaf in side:
            found = found & leaves[leaf] if word == "and" else found | leaves[leaf]
        level += 1
    return text, found


def widest(rng: random.Random, leaves: Mapping[str, frozenset[str]],
           every: frozenset[str]) -> tuple[str, frozenset[str]]:
    """A query of the deepest nesting with as many terms as a query may hold."""
    for width in range(MAX_TERMS // MAX_DEPTH, 0, -1):
        state = rng.getstate()
        text, found = deep_query(rng, leaves, every, width=width)
        try:
            parse_where(text)
        except QuerySyntaxError:
            rng.setstate(state)
            continue
        return text, found
    raise AssertionError("no query fits")  # pragma: no cover


def in_order(found: frozenset[str]) -> list[str]:
    return [r["run_id"] for r in RUNS if r["run_id"] in found]


@pytest.mark.parametrize("seed", range(3))
async def test_the_deepest_queries_run_on_every_backend(shared: str, seed: int) -> None:
    rng = random.Random(seed)
    queries = [deep_query(rng, LEAVES, ALIVE) for _ in range(4)]
    if seed == 0:
        queries.append(widest(rng, LEAVES, ALIVE))
    async with reading(shared) as tracker:
        for text, found in queries:
            assert await ids(tracker, text) == in_order(found), text
            ordered = await ids(tracker, text, order_by="-metrics.train/acc, config.lr")
            assert sorted(ordered) == sorted(found)
            assert await ids(tracker, text, order_by="-metrics.train/acc, config.lr",
                             limit=2) == ordered[:2]  # the top-k walk
            groups = await tracker.group_runs("experiment", where=text,
                                              aggregates="metrics.loss.min")
            assert sum(g.count for g in groups) == len(found)
            heads = await ids(tracker, text, heads_only=True)
            assert heads == [i for i in ("sgd-1", "bare") if i in found]
        deeper = f"not ({queries[0][0]})"
        with pytest.raises(QuerySyntaxError) as caught:
            await tracker.list_runs(deeper)
        assert "nests deeper than" in caught.value.message
        over = "(" * (MAX_DEPTH - 1) + "not not name = 'a'" + ")" * (MAX_DEPTH - 1)
        with pytest.raises(QuerySyntaxError) as caught:
            await tracker.list_runs(over)
        assert caught.value.position == over.index("name")  # where the nesting goes over


async def test_chains_of_the_same_word_and_double_negations_do_not_nest(shared: str) -> None:
    chained = "name = 'first'"
    for i in range(MAX_DEPTH - 1):  # as deep as the parser allows, yet one flat `or`
        chained = f"({chained}) or run_id = 'r{i}'"
    even = "not " * (MAX_DEPTH - 2) + "name = 'first'"
    async with reading(shared) as tracker:
        assert await ids(tracker, chained) == ["adam-1"]
        assert await ids(tracker, even) == ["adam-1"]
        assert await ids(tracker, "not " + even) == ["sgd-1", "sgd-2", "bare"]


async def test_naive_datetime_configs_are_compared_as_utc(make: MakeTracker,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # a machine not set to UTC
    time.tzset()
    try:
        async with make() as tracker:
            async with tracker.start_run("r", config={"when": datetime(2024, 1, 1, 12, 0)}):
                pass
            before = await tracker.list_runs("config.when > '2024-01-01T11:59:00'")
            after = await tracker.list_runs("config.when > '2024-01-01T12:01:00'")
            assert [r.run_id for r in before] == ["r"]
            assert after == []
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize(("where", "order_by", "at"), [
    ("name = 'a\x00b'", None, 9), ("config.`x\x00y` = 1", None, 9), (None, "name, \x00", 6)])
async def test_a_nul_in_a_query_is_a_syntax_error_on_every_backend(
        make: MakeTracker, where: str | None, order_by: str | None, at: int) -> None:
    async with make() as tracker:
        with pytest.raises(QuerySyntaxError) as caught:
            await tracker.list_runs(where, order_by=order_by)
        assert caught.value.position == at
