"""Properties of the runs-table query language against a pure-Python model.

Hypothesis makes random runs (through the public API) and random query trees; each tree is
rendered to text by this file's own renderer, run through ``list_runs``/``group_runs``, and
compared with this file's own evaluator of the same tree. The evaluator is written from the
semantics in ``docs/queries.md``, not from the engine's code.

Each property runs on SQLite (in memory, a database per example) and on the real PostgreSQL
store, with fewer examples there: one schema for the module, a project per example.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import re
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine import RunState
from tests.conftest import BACKENDS, backend_url

# Data -----------------------------------------------------------------------------------------

NAN, INF = math.nan, math.inf
T0 = 1_700_000_000.0
CONFIG_KEYS = ("a", "b/c", "odd key", "x.y", "q`t")
METRICS = ("loss", "train/acc", "odd name", "a.b")
TAGS = ("a", "b", "x y", "it's")
NAMES = ("alpha", "beta", "it's", "gamma")
WORKERS = ("gpu-1", "gpu-2", "b", "Box 3")
TEXTS = ("", "a", "ab", "b", "it's", 'say "hi"', "é", "2024-01-01", "10", "'; DROP TABLE runs; --")
# Datetimes and numbers that are the same instants: aware and naive (taken as UTC), and as
# POSIX seconds, so ties between kinds come up in comparisons, orderings and groups.
WHEN = (datetime(2024, 1, 1, tzinfo=UTC), datetime(2023, 6, 1, 12, 30, tzinfo=UTC),
        datetime(2024, 1, 1), datetime(2023, 6, 1, 12, 30))
INSTANTS = (1_704_067_200, 1_704_067_200.0, 1_685_622_600.0)
NUMBERS = (0, 1, -1, 2, 0.5, -1.5, 2.0, 1e300, -0.0, *INSTANTS)
METRIC_VALUES = (0.0, 0.5, 1.0, -1.0, 2.5, NAN, INF, -INF)
STATUSES = ("running", "succeeded", "failed", "aborted", "crashed")
AGGS = ("last", "min", "max", "count", "last_step")
TIMES = tuple(T0 + k * 0.25 for k in range(0, 80, 3))

# One instant in four kinds, drawn often enough that runs share it under one key.
SAME_INSTANT = (WHEN[0], WHEN[2], INSTANTS[0], INSTANTS[1])

config_values = st.one_of(
    st.none(), st.booleans(), st.sampled_from(NUMBERS), st.sampled_from((NAN, INF, -INF)),
    st.sampled_from(TEXTS), st.sampled_from(WHEN), st.sampled_from(SAME_INSTANT),
    st.lists(st.sampled_from(("a", "b", "x y")), max_size=2))


@dataclass
class RunSpec:
    name: str
    experiment: str | None
    tags: list[str]
    config: dict[str, Any]
    metrics: dict[str, list[float]]
    outcome: str  # succeeded, failed, running, deleted
    worker: str | None = None  # a job claimed by this worker (None: a plain run)


run_specs = st.builds(
    RunSpec,
    name=st.sampled_from(NAMES),
    experiment=st.sampled_from((None, "e1", "e2")),
    tags=st.lists(st.sampled_from(TAGS), max_size=2),
    config=st.dictionaries(st.sampled_from(CONFIG_KEYS), config_values, max_size=3),
    metrics=st.dictionaries(st.sampled_from(METRICS),
                            st.lists(st.sampled_from(METRIC_VALUES), min_size=1, max_size=3),
                            max_size=3),
    outcome=st.sampled_from(("succeeded", "succeeded", "failed", "running", "deleted")),
    worker=st.sampled_from((None, None, *WORKERS)),
)


class Clock:
    """A fake clock: every reading is a quarter second later (exact in binary and in µs)."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


class Boom(Exception):
    pass


@dataclass(frozen=True)
class Store:
    """Where the examples of a property run, and how many there are."""

    url: str
    examples: int

    def settings(self, test: Callable[..., None]) -> Callable[..., None]:
        return settings(SETTINGS, max_examples=self.examples)(test)


@pytest.fixture(scope="module", params=[b for b in BACKENDS if b != "sqlite-file"])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Store:
    """SQLite in memory (a fresh database each time it is opened), or one PostgreSQL schema
    whose examples each get a project of their own (a schema each would cost more than the
    example)."""
    url = backend_url(str(request.param), Path(tmp_path_factory.mktemp("props")))
    return Store(url, 100 if url == ":memory:" else 15)


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """One example's async body, on an event loop of its own (the tests are sync, so that
    each backend can set its own number of examples)."""
    asyncio.run(body())


@contextlib.asynccontextmanager
async def database(store: Store, specs: list[RunSpec]) -> Any:
    """A tracker holding the runs, in a project of their own; yields it with the runs'
    states, oldest first (read one by one with ``get_run``, not through the query path)."""
    async with engine.connect(store.url, project=f"p{uuid.uuid4().hex[:12]}",
                              flush_interval=0.0005, clock=Clock(), durability="normal",
                              crash_timeout=1e9) as tracker, contextlib.AsyncExitStack() as open_:
        ids = []
        for i, spec in enumerate(specs):
            run_id = f"r{i}"
            ids.append(run_id)
            if spec.worker is None:
                context = tracker.start_run(run_id, name=spec.name, experiment=spec.experiment,
                                            tags=spec.tags, config=spec.config)
            else:  # a job, claimed, whose script attaches to it
                await tracker.enqueue(["train"], run_id=run_id, name=spec.name,
                                      experiment=spec.experiment, tags=spec.tags,
                                      config=spec.config)
                await tracker.claim_job(worker=spec.worker)
                context = tracker.start_run(run_id, resume=True)
            if spec.outcome == "running":
                run = await open_.enter_async_context(context)
                _log(run, spec)
                await run.flush()
                continue
            with contextlib.suppress(Boom):
                async with context as run:
                    _log(run, spec)
                    if spec.outcome == "failed":
                        raise Boom("diverged")
            if spec.outcome == "deleted":
                await tracker.delete_run(run_id)
        states = [await tracker.get_run(run_id) for run_id in ids]
        yield tracker, states


def _log(run: Any, spec: RunSpec) -> None:
    for step in range(max((len(v) for v in spec.metrics.values()), default=0)):
        points = {m: v[step] for m, v in spec.metrics.items() if step < len(v)}
        run.log_metrics(points, step=step)


# Query trees: this file's own representation and renderer -----------------------------------

# A field is ("run", name) | ("tags",) | ("config", path) | ("metric", name, aggregate|None).
# A node is ("cmp", field, op, literal) | ("in", field, literals, negated) |
# ("contains", field, text) | ("exists", field) | ("not", node) | ("and"|"or", [nodes]).

TEXT_RUN = ("run_id", "name", "status", "experiment", "worker")
TIME_RUN = ("created_at", "updated_at", "ended_at")
ORDERING = ("<", "<=", ">", ">=")


def _name(name: str, force: bool) -> str:
    if not force and re.fullmatch(r"[A-Za-z0-9_/-]+", name):
        return name
    return "`" + name.replace("`", "``") + "`"


def render_field(field: tuple[Any, ...], force: bool = False) -> str:
    if field[0] == "run":
        return field[1]
    if field[0] == "tags":
        return "tags"
    if field[0] == "config":
        return "config." + _name(field[1], force)
    return "metrics." + _name(field[1], force) + (f".{field[2]}" if field[2] else "")


def render_literal(value: Any, double: bool = False) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, str):
        quote = '"' if double else "'"
        return quote + value.replace(quote, quote * 2) + quote
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return repr(value)


def render(node: tuple[Any, ...], style: int = 0) -> str:
    kind = node[0]
    upper = style % 3 == 1
    word: Callable[[str], str] = (lambda w: w.upper()) if upper else (lambda w: w)
    force, double = style % 2 == 1, style % 5 == 2
    if kind == "cmp":
        return f"{render_field(node[1], force)} {node[2]} {render_literal(node[3], double)}"
    if kind == "in":
        values = ", ".join(render_literal(v, double) for v in node[2])
        return f"{render_field(node[1], force)} {word('not in' if node[3] else 'in')} ({values})"
    if kind == "contains":
        return f"{render_field(node[1], force)} {word('contains')} {render_literal(node[2])}"
    if kind == "exists":
        return f"{render_field(node[1], force)} {word('exists')}"
    bare = style % 4 == 0  # leaves need no parentheses: comparisons bind tightest
    if kind == "not":
        inner = render(node[1], style)
        return f"{word('not')} {inner if bare and node[1][0] not in LOOSE else f'({inner})'}"
    joiner = f" {word(kind)} "
    return joiner.join(render(item, style) if bare and item[0] not in LOOSE
                       else f"({render(item, style)})" for item in node[1])


LOOSE = ("and", "or")


fields = st.one_of(
    st.sampled_from(TEXT_RUN + TIME_RUN).map(lambda n: ("run", n)),
    st.just(("tags",)),
    st.sampled_from(CONFIG_KEYS).map(lambda k: ("config", k)),
    st.tuples(st.just("metric"), st.sampled_from(METRICS),
              st.sampled_from((None, *AGGS))),
)


def literals(field: tuple[Any, ...], op: str) -> st.SearchStrategy[Any]:
    """Literals the parser accepts for this field and operator."""
    ordering = op in ORDERING
    null = st.nothing() if ordering else st.none()
    kind = field[0]
    if kind == "run" and field[1] == "status":
        return st.one_of(null, st.sampled_from(STATUSES))
    if kind == "run" and field[1] in TEXT_RUN:
        return st.one_of(null, st.sampled_from((*NAMES, *TEXTS, *WORKERS, "r0", "r1", "e1",
                                                "e2")))
    if kind == "run":
        return st.one_of(null, st.sampled_from(TIMES), st.sampled_from(TIMES).map(
            lambda t: datetime.fromtimestamp(t, UTC).isoformat()))
    if kind == "tags":
        return st.one_of(st.none(), st.sampled_from((*TAGS, "zzz")))
    if kind == "metric":
        values = [v for v in (*METRIC_VALUES, 1, 2, 3) if not (ordering and v != v)]
        return st.one_of(null, st.sampled_from(values))
    if ordering:
        return st.one_of(st.sampled_from((*NUMBERS, INF, -INF)), st.sampled_from(TEXTS),
                         st.sampled_from(WHEN).map(lambda w: w.isoformat()))
    return st.one_of(st.none(), st.booleans(), st.sampled_from((*NUMBERS, NAN, INF, -INF)),
                     st.sampled_from(TEXTS), st.sampled_from(WHEN).map(lambda w: w.isoformat()))


@st.composite
def leaves(draw: st.DrawFn) -> tuple[Any, ...]:
    field = draw(fields)
    kind = draw(st.sampled_from(("cmp", "cmp", "in", "contains", "exists")))
    if kind == "exists":
        return ("exists", field)
    if kind == "contains" and (field[0] in ("tags", "config") or
                               (field[0] == "run" and field[1] in TEXT_RUN)):
        return ("contains", field, draw(st.sampled_from((*TEXTS, *TAGS, "l", "x y"))))
    if kind == "in":
        values = draw(st.lists(literals(field, "="), min_size=1, max_size=3))
        return ("in", field, values, draw(st.booleans()))
    ops = ("=", "!=") if field[0] == "tags" else ("=", "!=", *ORDERING)
    op = draw(st.sampled_from(ops))
    return ("cmp", field, op, draw(literals(field, op)))


trees = st.recursive(
    leaves(),
    lambda inner: st.one_of(
        inner.map(lambda n: ("not", n)),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: ("and", items)),
        st.lists(inner, min_size=2, max_size=3).map(lambda items: ("or", items)),
    ),
    max_leaves=6,
)

# The evaluator -------------------------------------------------------------------------------

MISSING = object()


def value_of(state: RunState, field: tuple[Any, ...]) -> Any:
    kind = field[0]
    if kind == "run":
        value = getattr(state, field[1])
        if isinstance(value, datetime):
            return _ts(value)
        return None if value is None else str(value)
    if kind == "tags":
        return state.tags
    if kind == "config":
        return state.config.get(field[1], MISSING)
    summary = state.metrics.get(field[1])
    return MISSING if summary is None else getattr(summary, field[2] or "last")


def has_value(field: tuple[Any, ...], value: Any) -> bool:
    if field[0] == "tags":
        return bool(value)
    return value is not MISSING and value is not None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _ts(when: datetime) -> float:
    """POSIX seconds; a naive datetime is UTC (whatever the machine's zone)."""
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _seconds(text: str) -> float | None:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def _as_seconds(field: tuple[Any, ...], literal: Any) -> Any:
    if field[0] == "run" and field[1] in TIME_RUN and isinstance(literal, str):
        return _seconds(literal)
    return literal


def equal(field: tuple[Any, ...], value: Any, literal: Any) -> bool:
    """``field = literal`` for a run that has a value (literal not null)."""
    literal = _as_seconds(field, literal)
    if field[0] == "tags":
        return literal in value
    if field[0] == "metric":
        return math.isnan(value) if math.isnan(literal) else value == literal
    if field[0] == "run":
        return value == literal
    if isinstance(literal, bool):
        return isinstance(value, bool) and value == literal
    if isinstance(literal, float) and math.isnan(literal):
        return isinstance(value, float) and math.isnan(value)
    if _number(literal):
        return (_number(value) and value == literal) or \
            (isinstance(value, datetime) and _ts(value) == literal)
    seconds = _seconds(literal)
    return (isinstance(value, str) and value == literal) or \
        (isinstance(value, datetime) and seconds is not None and _ts(value) == seconds)


OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b}


def ordered(field: tuple[Any, ...], op: str, value: Any, literal: Any) -> bool:
    literal = _as_seconds(field, literal)
    test = OPS[op]
    if field[0] in ("run", "metric"):
        return test(value, literal)
    if _number(literal):
        return (_number(value) and test(value, literal)) or \
            (isinstance(value, datetime) and test(_ts(value), literal))
    seconds = _seconds(literal)
    return (isinstance(value, str) and test(value, literal)) or \
        (isinstance(value, datetime) and seconds is not None
         and test(_ts(value), seconds))


def compare(field: tuple[Any, ...], op: str, state: RunState, literal: Any) -> bool:
    value = value_of(state, field)
    present = has_value(field, value)
    if literal is None:
        return present if op == "!=" else not present
    if field[0] == "tags":
        return (literal not in value) if op == "!=" else literal in value
    if not present:
        return False
    if op == "=":
        return equal(field, value, literal)
    if op == "!=":
        return not equal(field, value, literal)
    return ordered(field, op, value, literal)


def evaluate(node: tuple[Any, ...], state: RunState) -> bool:
    kind = node[0]
    if kind == "and":
        return all(evaluate(i, state) for i in node[1])
    if kind == "or":
        return any(evaluate(i, state) for i in node[1])
    if kind == "not":
        return not evaluate(node[1], state)
    field = node[1]
    value = value_of(state, field)
    if kind == "exists":
        return has_value(field, value)
    if kind == "cmp":
        return compare(field, node[2], state, node[3])
    if kind == "contains":
        if field[0] == "tags":
            return node[2] in value
        return (isinstance(value, str) and node[2] in value) or \
            (isinstance(value, list) and node[2] in value)
    any_ = any(compare(field, "=", state, v) for v in node[2])
    if node[3]:
        return not any_ if field[0] == "tags" else has_value(field, value) and not any_
    return any_


# Ordering ------------------------------------------------------------------------------------

order_keys = st.lists(
    st.tuples(st.one_of(st.sampled_from(TEXT_RUN + TIME_RUN).map(lambda n: ("run", n)),
                        st.sampled_from(CONFIG_KEYS).map(lambda k: ("config", k)),
                        st.tuples(st.just("metric"), st.sampled_from(METRICS),
                                  st.sampled_from((None, *AGGS)))),
              st.booleans()),
    min_size=0, max_size=3)


def sort_key(field: tuple[Any, ...], state: RunState) -> tuple[int, tuple[Any, ...]]:
    """(class, values): class 0 numbers, 1 text, 2 missing; values compared within it."""
    value = value_of(state, field)
    if value is MISSING or value is None:
        return 2, ()
    if field[0] in ("run", "metric"):
        if isinstance(value, float) and math.isnan(value):
            return 2, ()
        return 0, (value,)
    # Numbers compare by value alone, whatever their kind: a bool as 0 or 1, a datetime as
    # its POSIX seconds. Equal ones tie, and ties go by the next key, then oldest first.
    if isinstance(value, bool):
        return 0, (int(value),)
    if isinstance(value, datetime):
        return 0, (_ts(value),)
    if _number(value):
        return (2, ()) if math.isnan(value) else (0, (value,))
    if isinstance(value, list):
        return 1, (orjson.dumps(value).decode(),)
    return 1, (value,)


def expected_order(states: list[RunState], keys: list[tuple[Any, bool]]) -> list[RunState]:
    position = {s.run_id: i for i, s in enumerate(states)}

    def cmp(a: RunState, b: RunState) -> int:
        for field, descending in keys:
            (ca, va), (cb, vb) = sort_key(field, a), sort_key(field, b)
            if ca != cb:
                return -1 if ca < cb else 1
            if va != vb:
                less = va < vb
                return (1 if less else -1) if descending else (-1 if less else 1)
        return position[a.run_id] - position[b.run_id]

    return sorted(states, key=functools.cmp_to_key(cmp))


def render_order(keys: list[tuple[Any, bool]]) -> str:
    return ", ".join(("-" if d else "") + render_field(f) for f, d in keys)


SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# Properties ----------------------------------------------------------------------------------

def test_where_matches_the_model(store: Store) -> None:
    @store.settings
    @given(specs=st.lists(run_specs, min_size=1, max_size=8),
           queries=st.lists(st.tuples(trees, st.integers(0, 29)), min_size=1, max_size=12))
    def check(specs: list[RunSpec], queries: list[tuple[Any, int]]) -> None:
        async def body() -> None:
            async with database(store, specs) as (tracker, states):
                alive = [s for s in states if not s.deleted]
                head = max(s.position for s in states)
                for tree, style in queries:
                    text = render(tree, style)
                    got = [s.run_id for s in await tracker.list_runs(text)]
                    want = [s.run_id for s in alive if evaluate(tree, s)]
                    assert got == want, text
                    # Time travel evaluates the same tree in Python over the folded log.
                    past = [s.run_id for s in await tracker.list_runs(text, as_of=head)]
                    assert past == want, text
                tree = queries[0][0]
                found = await tracker.list_runs(render(tree), include_deleted=True)
                assert [s.run_id for s in found] == \
                    [s.run_id for s in states if evaluate(tree, s)]

        run(body)

    check()


def test_order_limit_offset_match_the_model(store: Store) -> None:
    @store.settings
    @given(specs=st.lists(run_specs, min_size=1, max_size=8), keys=order_keys,
           where=st.one_of(st.none(), trees), limit=st.one_of(st.none(), st.integers(0, 5)),
           offset=st.integers(0, 3))
    def check(specs: list[RunSpec], keys: list[tuple[Any, bool]], where: Any,
              limit: int | None, offset: int) -> None:
        async def body() -> None:
            async with database(store, specs) as (tracker, states):
                chosen = [s for s in states
                          if not s.deleted and (where is None or evaluate(where, s))]
                every = [s.run_id for s in expected_order(chosen, keys)]
                want = every[offset:] if limit is None else every[offset:offset + limit]
                query = None if where is None else render(where)
                order = render_order(keys) or None
                got = await tracker.list_runs(query, order_by=order, limit=limit,
                                              offset=offset)
                assert [s.run_id for s in got] == want, (order, where)
                head = max(s.position for s in states)
                past = await tracker.list_runs(query, order_by=order, limit=limit,
                                               offset=offset, as_of=head)
                assert [s.run_id for s in past] == want, (order, where)
                # A page is the slice of the whole answer, whichever plan picks it (the
                # top-k walk answers pages, the full plan the whole).
                whole = [s.run_id for s in await tracker.list_runs(query, order_by=order)]
                assert whole == every
                for n in (1, 2, limit or 3):
                    page = await tracker.list_runs(query, order_by=order, limit=n,
                                                   offset=offset)
                    assert [s.run_id for s in page] == whole[offset:offset + n], (order, n)

        run(body)

    check()


def test_values_of_one_instant_tie_whatever_their_kind(store: Store) -> None:
    """Runs whose config holds one instant as different kinds (aware, naive, POSIX seconds)
    tie, in the order and on every page: the general property rarely draws such runs."""
    tying = st.sampled_from((*SAME_INSTANT, WHEN[1], WHEN[3], True, 1, "x", None))

    @store.settings
    @given(specs=st.lists(st.builds(RunSpec, name=st.sampled_from(NAMES), experiment=st.none(),
                                    tags=st.just([]), config=st.fixed_dictionaries({"a": tying}),
                                    metrics=st.just({}), outcome=st.just("succeeded")),
                          min_size=2, max_size=8),
           descending=st.booleans(), then=st.sampled_from((None, "name", "-name")),
           limit=st.integers(1, 4), offset=st.integers(0, 2))
    def check(specs: list[RunSpec], descending: bool, then: str | None, limit: int,
              offset: int) -> None:
        keys: list[tuple[Any, bool]] = [(("config", "a"), descending)]
        if then is not None:
            keys.append((("run", "name"), then.startswith("-")))
        order = render_order(keys)

        async def body() -> None:
            async with database(store, specs) as (tracker, states):
                want = [s.run_id for s in expected_order(states, keys)]
                got = [s.run_id for s in await tracker.list_runs(order_by=order)]
                assert got == want, order
                page = await tracker.list_runs(order_by=order, limit=limit, offset=offset)
                assert [s.run_id for s in page] == want[offset:offset + limit], order

        run(body)

    check()


def test_heads_only_matches_the_model(store: Store) -> None:
    @store.settings
    @given(specs=st.lists(run_specs, min_size=1, max_size=8), heads=st.booleans())
    def check(specs: list[RunSpec], heads: bool) -> None:
        async def body() -> None:
            async with database(store, specs) as (tracker, states):
                newest: dict[str, str] = {}
                for s in states:
                    if s.experiment is not None and not s.deleted:
                        newest[s.experiment] = s.run_id
                want = [s.run_id for s in states if not s.deleted and
                        (not heads or newest.get(s.experiment or "") == s.run_id)]
                got = await tracker.list_runs(heads_only=heads)
                assert [s.run_id for s in got] == want

        run(body)

    check()


def _group_key(value: Any) -> Any:
    if value is MISSING or value is None:
        return ("none",)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if _number(value):
        return ("num", value)
    if isinstance(value, list):
        return ("list", tuple(value))
    if isinstance(value, datetime):
        return ("time", _ts(value))  # equal instants are one group, naive or aware
    return ("text", value)


def _close(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def test_group_runs_matches_the_model(store: Store) -> None:
    @store.settings
    @given(specs=st.lists(run_specs, min_size=1, max_size=8),
           by=st.lists(st.one_of(st.sampled_from(("experiment", "status", "name")),
                                 st.sampled_from(CONFIG_KEYS).map(
                                     lambda k: "config." + _name(k, False))),
                       min_size=1, max_size=2, unique=True),
           aggregates=st.one_of(st.none(), st.lists(
               st.tuples(st.sampled_from(METRICS), st.sampled_from(AGGS)), max_size=3,
               unique=True)),
           where=st.one_of(st.none(), trees))
    def check(specs: list[RunSpec], by: list[str], aggregates: list[tuple[str, str]] | None,
              where: Any) -> None:
        async def body() -> None:
            async with database(store, specs) as (tracker, states):
                chosen = [s for s in states
                          if not s.deleted and (where is None or evaluate(where, s))]
                fields = []
                for text in by:
                    if text.startswith("config."):
                        key = next(k for k in CONFIG_KEYS if "config." + _name(k, False) == text)
                        fields.append(("config", key))
                    else:
                        fields.append(("run", text))
                expected: dict[tuple[Any, ...], list[RunState]] = {}
                for s in chosen:
                    key = tuple(_group_key(value_of(s, f)) for f in fields)
                    expected.setdefault(key, []).append(s)
                names = None if aggregates is None else \
                    [f"metrics.{_name(m, False)}.{a}" for m, a in aggregates]
                query = None if where is None else render(where)
                groups = await tracker.group_runs(by, where=query, aggregates=names)
                head = max(s.position for s in states)
                past = await tracker.group_runs(by, where=query, aggregates=names, as_of=head)
                assert [g.key.keys() for g in past] == [g.key.keys() for g in groups]
                assert [(tuple(_group_key(v) for v in g.key.values()), g.count,
                         list(g.metrics)) for g in past] == \
                    [(tuple(_group_key(v) for v in g.key.values()), g.count,
                      list(g.metrics)) for g in groups]
                for then, now in zip(past, groups, strict=True):
                    for name, stats in now.metrics.items():
                        other = then.metrics[name]
                        assert other.count == stats.count
                        assert _close(other.min, stats.min)
                        assert _close(other.max, stats.max)
                        assert _close(other.mean, stats.mean) or not math.isfinite(stats.mean)
                got = {tuple(_group_key(v) for v in g.key.values()): g for g in groups}
                assert set(got) == set(expected)
                for key, members in expected.items():
                    group = got[key]
                    assert group.count == len(members)
                    wanted = aggregates if aggregates is not None else sorted(
                        {(m, "last") for s in members for m in s.metrics})
                    assert len(group.metrics) == len(wanted)
                    for metric, agg in wanted:
                        values = [getattr(s.metrics[metric], agg) for s in members
                                  if metric in s.metrics]
                        values = [float(v) for v in values if not math.isnan(v)]
                        stats = next(v for k, v in group.metrics.items()
                                     if k == f"metrics.{_name(metric, False)}.{agg}")
                        assert stats.count == len(values)
                        if values:
                            assert _close(stats.min, min(values))
                            assert _close(stats.max, max(values))
                            finite = [v for v in values if math.isfinite(v)]
                            if len(finite) == len(values) and max(map(abs, values)) < 1e100:
                                assert _close(stats.mean, sum(values) / len(values))
                        else:
                            assert math.isnan(stats.mean)
                            assert math.isnan(stats.min)

        run(body)

    check()
