"""The query language's parser: every construct, every error with its position, and fuzzing
that lets nothing but ``QuerySyntaxError`` out."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine._query.parser import (
    MAX_DEPTH,
    MAX_ORDER_FIELDS,
    MAX_TERMS,
    parse_aggregates,
    parse_fields,
    parse_group_by,
    parse_order,
    parse_where,
    selection,
)
from engine._query.plans import compile_groups, compile_top
from engine._query.sql import POSTGRES, SQLITE, compile_select
from engine._query.tree import (
    And,
    Compare,
    Contains,
    Exists,
    Field,
    In,
    Not,
    Or,
    OrderKey,
)
from engine.errors import QuerySyntaxError, ValidationError
from engine.sync import SyncTracker
from tests.conftest import backend_url
from tests.query.test_props import CONFIG_KEYS, METRIC_VALUES, METRICS, NAMES, TAGS, render, trees
from tests.query.test_runs import LASTING

LOSS = Field("metric", "loss", "last")


def error_of(query: str) -> QuerySyntaxError:
    with pytest.raises(QuerySyntaxError) as caught:
        parse_where(query)
    return caught.value


@pytest.mark.parametrize("op", ["=", "!=", "<", "<=", ">", ">="])
def test_every_comparison(op: str) -> None:
    assert parse_where(f"metrics.loss {op} 0.5") == Compare(LOSS, op, 0.5)


def test_aliases_of_equality_and_inequality() -> None:
    assert parse_where("name == 'a'") == parse_where("name = 'a'")
    assert parse_where("name <> 'a'") == parse_where("name != 'a'")


def test_fields() -> None:
    assert parse_where("run_id = 'x'") == Compare(Field("run", "run_id"), "=", "x")
    assert parse_where("tags contains 'a'") == Contains(Field("tags", "tags"), "a")
    assert parse_where("config.lr = 1") == Compare(Field("config", "lr"), "=", 1)
    for aggregate in ("last", "min", "max", "count", "last_step"):
        assert parse_where(f"metrics.loss.{aggregate} = 1") == \
            Compare(Field("metric", "loss", aggregate), "=", 1)


def test_slashes_in_bare_names_and_the_default_aggregate() -> None:
    assert parse_where("metrics.train/acc > 0.9") == \
        Compare(Field("metric", "train/acc", "last"), ">", 0.9)
    assert parse_where("config.optimizer/lr < 1e-3") == \
        Compare(Field("config", "optimizer/lr"), "<", 0.001)
    assert parse_where("metrics.val-loss.min < 1").field == Field("metric", "val-loss", "min")


def test_backticked_names() -> None:
    assert parse_where("metrics.`train/loss`.max <= 1").field == \
        Field("metric", "train/loss", "max")
    assert parse_where("config.`optimizer/lr` = 1").field == Field("config", "optimizer/lr")
    assert parse_where("config.`a.b c` exists") == Exists(Field("config", "a.b c"))
    assert parse_where("metrics.`it``s` exists") == Exists(Field("metric", "it`s", "last"))
    assert parse_where("metrics.`min`.min = 1").field == Field("metric", "min", "min")


def test_string_literals() -> None:
    assert parse_where("name = 'it''s'").value == "it's"  # type: ignore[union-attr]
    assert parse_where('name = "say ""hi"""').value == 'say "hi"'  # type: ignore[union-attr]
    assert parse_where("name = \"it's\"").value == "it's"  # type: ignore[union-attr]
    assert parse_where("name = ''").value == ""  # type: ignore[union-attr]
    assert parse_where("name = 'é ✓'").value == "é ✓"  # type: ignore[union-attr]


def test_number_bool_null_nan_inf_literals() -> None:
    def value(text: str) -> object:
        node = parse_where(f"config.x = {text}")
        assert isinstance(node, Compare)
        return node.value

    assert value("3") == 3
    assert type(value("3")) is int
    assert value("-3") == -3
    assert value("2.5") == 2.5
    assert value(".5") == 0.5
    assert value("1e3") == 1000.0
    assert type(value("1e3")) is float
    assert value("1E-2") == 0.01
    assert value("true") is True
    assert value("FALSE") is False
    assert value("null") is None
    assert math.isnan(value("nan"))  # type: ignore[arg-type]
    assert value("inf") == math.inf
    assert value("-inf") == -math.inf
    assert value("99999999999999999999") == 1e20  # past 64 bits: a float
    assert value("9" * 5000) == math.inf


def test_in_not_in_contains_exists() -> None:
    name = Field("run", "name")
    assert parse_where("name in ('a', 'b')") == In(name, ("a", "b"))
    assert parse_where("name not in ('a',)") == In(name, ("a",), negated=True)
    assert parse_where("name contains 'x'") == Contains(name, "x")
    assert parse_where("experiment exists") == Exists(Field("run", "experiment"))
    assert parse_where("experiment not exists") == Not(Exists(Field("run", "experiment")))
    assert parse_where("metrics.loss in (1, nan, null)").values == (  # type: ignore[union-attr]
        1, parse_where("metrics.loss in (1, nan, null)").values[1], None)  # type: ignore


def test_boolean_structure_and_precedence() -> None:
    a = Compare(Field("run", "name"), "=", "a")
    b = Compare(Field("run", "name"), "=", "b")
    c = Compare(Field("run", "name"), "=", "c")
    assert parse_where("name = 'a' or name = 'b' and name = 'c'") == Or((a, And((b, c))))
    assert parse_where("(name = 'a' or name = 'b') and name = 'c'") == And((Or((a, b)), c))
    assert parse_where("not name = 'a' and name = 'b'") == And((Not(a), b))
    assert parse_where("not (name = 'a' and name = 'b')") == Not(And((a, b)))
    assert parse_where("NOT name = 'a' AND name = 'b' OR name = 'c'") == \
        Or((And((Not(a), b)), c))


def test_datetime_literals_become_posix_seconds() -> None:
    created = Field("run", "created_at")
    assert parse_where("created_at >= '2024-01-01'") == Compare(created, ">=", 1704067200.0)
    assert parse_where("ended_at < '2024-01-01T01:00:00+01:00'") == \
        Compare(Field("run", "ended_at"), "<", 1704067200.0)
    assert parse_where("created_at > '2024-01-01T00:00:00Z'").value == 1704067200.0  # type: ignore
    assert parse_where("created_at > 1704067200").value == 1704067200  # type: ignore
    assert parse_where("ended_at = null") == Compare(Field("run", "ended_at"), "=", None)


def test_empty_queries_select_everything() -> None:
    assert parse_where("") is None
    assert parse_where("   ") is None


def test_rendering_round_trips() -> None:
    for query in ["metrics.train/acc > 0.9", "config.`a.b` in (1, 'x', true, null, nan)",
                  "not (name = 'it''s' or tags contains 'x') and experiment exists",
                  "metrics.`odd name`.min <= -inf", "not config.x exists",
                  "created_at >= '2024-01-01'", "name not in ('a', \"b\")"]:
        tree = parse_where(query)
        assert parse_where(str(tree)) == tree or str(parse_where(str(tree))) == str(tree)


@pytest.mark.parametrize(("query", "position", "message"), [
    ("x = 1", 0, "unknown field 'x'"),
    ("metric.loss > 1", 0, "did you mean metrics?"),
    ("name = 'a", 7, "unterminated string"),
    ("config.`a = 1", 7, "unterminated name"),
    ("config.`` = 1", 7, "empty"),
    ("(name = 'a'", 11, "expected ')'"),
    ("name = 'a')", 10, "unexpected ')'"),
    ("name = 'a' name = 'b'", 11, "unexpected 'name'"),
    ("name 'a'", 5, "expected an operator"),
    ("name =", 6, "expected a value"),
    ("name = 3", 7, "name is text"),
    ("status = 'bogus'", 9, "is not a status"),
    ("metrics.loss = 'a'", 15, "is a number"),
    ("metrics.loss.median > 1", 13, "unknown aggregate 'median'"),
    ("metrics.a.b.c > 1", 11, "too many parts"),
    ("metrics. > 1", 8, "expected a name after '.'"),
    ("metrics > 1", 7, "expected metrics.<name>"),
    ("config.a.b = 1", 8, "one part after 'config.'"),
    ("name.x = 'a'", 4, "name has no parts"),
    ("metrics.loss contains 'a'", 0, "contains works on text"),
    ("name contains 1", 14, "contains takes a string"),
    ("created_at < 'yesterday'", 13, "not an ISO-8601"),
    ("tags < 'a'", 7, "tags are a set"),
    ("tags = 1", 7, "a tag is a string"),
    ("config.x < null", 11, "needs a number or a string"),
    ("config.x > true", 11, "needs a number or a string"),
    ("metrics.loss < nan", 15, "needs a number or a string"),
    ("name in ()", 9, "expected a value"),
    ("name in 'a'", 8, "expected '('"),
    ("name not 'a'", 9, "expected in or exists"),
    ("name = 'a' and", 14, "expected a field"),
    ("1 = name", 0, "expected a field"),
    ("`metrics`.x = 1", 0, "backticked name"),
    ("name = 'a' ; drop", 11, "unexpected character ';'"),
    ("name ! 'a'", 5, "unexpected character '!'"),
    ("config.x = 12abc", 13, "in a number"),
    ("config.x = -'a'", 12, "expected a number after '-'"),
])
def test_errors_carry_the_position_of_the_problem(query: str, position: int,
                                                   message: str) -> None:
    error = error_of(query)
    assert error.position == position, str(error)
    assert message in error.message
    lines = str(error).splitlines()
    assert lines[0] == f"{error.message} at position {position}"
    assert lines[1] == f"  {query}"
    assert lines[2] == "  " + " " * position + "^"


def test_a_multi_line_query_shows_the_line_with_the_problem() -> None:
    query = "metrics.loss < 1\n  and\tconfig.x >> 2\n  or name = 'a'"
    error = error_of(query)
    assert error.position == query.index(">>") + 1
    assert str(error).splitlines() == [
        f"{error.message} at position {error.position} (line 2, column 17)",
        "    and\tconfig.x >> 2",
        "  " + "     \t" + " " * 10 + "^"]  # the tab stays a tab, so it lines up the same
    crlf = error_of("name = 'a'\r\nor\r\nname =")
    assert str(crlf).splitlines()[1:] == ["  name =", "        ^"]
    ended = error_of("name = 'a' and\n")
    assert str(ended).splitlines()[1:] == ["  ", "  ^"]  # the empty line after the break


def test_the_caret_counts_wide_characters_twice() -> None:
    query = "name = '日本語' and x = 1"
    error = error_of(query)
    assert error.position == query.index("x = 1")
    caret = str(error).splitlines()[2]
    assert caret == "  " + " " * (error.position + 3) + "^"  # three wide characters
    combining = "name = 'e\u0301' and x = 1"  # é written as e and a combining accent
    error = error_of(combining)
    assert str(error).splitlines()[2] == "  " + " " * (error.position - 1) + "^"


def test_same_word_chains_flatten_and_double_negations_cancel() -> None:
    a, b, c = (Compare(Field("run", "name"), "=", v) for v in "abc")
    assert parse_where("name = 'a' or (name = 'b' or name = 'c')") == Or((a, b, c))
    assert parse_where("((name = 'a' and name = 'b')) and name = 'c'") == And((a, b, c))
    assert parse_where("name = 'a' or (name = 'b' and name = 'c')") == Or((a, And((b, c))))
    assert parse_where("not not name = 'a'") == a
    assert parse_where("not (not (name = 'a'))") == a
    assert parse_where("not not not name = 'a'") == Not(a)
    assert parse_where("not name not exists") == Exists(Field("run", "name"))
    deep = "name = 'a'"
    for _ in range(MAX_DEPTH):
        deep = f"name = 'b' or ({deep})"
    deep = deep.replace("name = 'b' or (", "(", 1)  # exactly MAX_DEPTH levels
    assert parse_where(deep) == Or((*[b] * (MAX_DEPTH - 1), a))


def test_nesting_and_size_are_bounded() -> None:
    deep = "(" * (MAX_DEPTH + 5) + "name = 'a'" + ")" * (MAX_DEPTH + 5)
    assert "nests deeper" in error_of(deep).message
    assert "nests deeper" in error_of("not " * (MAX_DEPTH + 5) + "name = 'a'").message
    parse_where("(" * 20 + "name = 'a'" + ")" * 20)
    wide = " or ".join(["name = 'a'"] * (MAX_TERMS + 1))
    assert "too large" in error_of(wide).message
    listed = "name in (" + ", ".join(["'a'"] * MAX_TERMS) + ")"
    assert "too large" in error_of(listed).message


def test_arguments_that_are_not_text_are_refused() -> None:
    with pytest.raises(QuerySyntaxError, match="where takes a string"):
        parse_where(42)  # type: ignore[arg-type]
    for parse, what in ((parse_order, "order_by"), (parse_group_by, "by"),
                        (parse_aggregates, "aggregates"), (parse_fields, "fields")):
        for bad in (1, 0, b"name", {"name"}, ["name", 2], (None,)):
            with pytest.raises(QuerySyntaxError) as caught:
                parse(bad)  # type: ignore[operator]
            assert caught.value.message.startswith(f"{what} takes "), (parse, bad)
    assert parse_order(("name", "-created_at")) == (
        OrderKey(Field("run", "name")), OrderKey(Field("run", "created_at"), True))


def test_orderings_are_bounded() -> None:
    keys = [f"config.k{i}" for i in range(MAX_ORDER_FIELDS)]
    assert len(parse_order(keys)) == MAX_ORDER_FIELDS
    text = ", ".join([*keys, "name"])
    with pytest.raises(QuerySyntaxError) as caught:
        parse_order(text)
    assert caught.value.position == text.index("name")


def test_order_by() -> None:
    assert parse_order("-metrics.loss.min, created_at") == (
        OrderKey(Field("metric", "loss", "min"), True),
        OrderKey(Field("run", "created_at"), False))
    assert parse_order(["metrics.acc", "-config.lr"]) == (
        OrderKey(Field("metric", "acc", "last")), OrderKey(Field("config", "lr"), True))
    assert parse_order("metrics.acc DESC, name asc") == (
        OrderKey(Field("metric", "acc", "last"), True), OrderKey(Field("run", "name")))
    assert parse_order(None) == ()
    assert parse_order("") == ()
    for bad, position in (("tags", 0), ("-", 1), ("name,", 5), ("name name", 5),
                          ("-name desc", 6), ("metrics.x.y", 10)):
        with pytest.raises(QuerySyntaxError) as caught:
            parse_order(bad)
        assert caught.value.position == position, (bad, str(caught.value))


def test_field_lists() -> None:
    assert parse_group_by("experiment, config.optimizer, experiment") == (
        Field("run", "experiment"), Field("config", "optimizer"))
    assert parse_group_by(["status"]) == (Field("run", "status"),)
    assert parse_aggregates("metrics.loss.min, metrics.acc") == (
        Field("metric", "loss", "min"), Field("metric", "acc", "last"))
    assert parse_aggregates(None) is None
    assert parse_aggregates([]) == ()
    assert parse_fields("status_reason, fork_step", columns=True) == (
        Field("run", "status_reason"), Field("run", "fork_step"))
    with pytest.raises(QuerySyntaxError):
        parse_group_by("metrics.loss")
    with pytest.raises(QuerySyntaxError):
        parse_group_by("tags")
    with pytest.raises(QuerySyntaxError):
        parse_group_by("")
    with pytest.raises(QuerySyntaxError):
        parse_group_by(", ".join(f"config.c{i}" for i in range(9)))
    with pytest.raises(QuerySyntaxError):
        parse_aggregates("config.x")
    with pytest.raises(QuerySyntaxError):
        parse_fields("status_reason")  # a column, not a field of the where language


def test_limits_and_offsets_are_checked() -> None:
    for bad in ({"limit": -1}, {"limit": 1.5}, {"limit": True}, {"offset": -1},
                {"offset": None}, {"limit": 2**63}, {"heads_only": 1}):
        arguments = {"limit": None, "offset": 0, "heads_only": False, **bad}
        with pytest.raises(ValidationError):
            selection(None, None, **arguments)  # type: ignore[arg-type]


# Fuzzing -------------------------------------------------------------------------------------

# Pieces of the language, glued at random: most results almost parse.
GRAMMAR = st.lists(st.sampled_from([
    *"metricsconfgtagsnamexist.`'\"()<>=!, -_/0123456789eE ", "metrics.", "config.",
    " and ", " or ", " not ", " in ", " contains ", " exists", "null", "nan", "inf", "true",
    "'a'", "`x`", "created_at", "status", "tags", "metrics.loss", " = ", " < ", "(", ")",
    ", "]), max_size=30).map("".join)


def _survives(query: str) -> None:
    """Parsing (and compiling what parses) raises nothing but QuerySyntaxError."""
    try:
        tree = parse_where(query)
    except QuerySyntaxError as error:
        problem: QuerySyntaxError | None = error
    else:
        problem = None
    if problem is not None:
        assert 0 <= problem.position <= len(query)
        shown = str(problem).splitlines()[-2]
        lines = query.splitlines(keepends=True) or [""]
        starts = [sum(len(x) for x in lines[:i]) for i in range(len(lines))]
        holding = max(i for i, at in enumerate(starts) if at <= problem.position)
        assert shown == "  " + (lines[holding].splitlines() or [""])[0] or \
            shown == "  "  # the empty line after a final break
        return
    chosen = selection(None, None, 10, 0, False)
    for dialect in (SQLITE, POSTGRES):
        compiled = compile_select("p", type(chosen)(where=tree), include_deleted=False,
                                  dialect=dialect)
        assert compiled.sql.count("?" if dialect is SQLITE else "$") >= len(compiled.params)


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_raises_only_query_syntax_errors(query: str) -> None:
    _survives(query)


@settings(max_examples=1500, deadline=None)
@given(GRAMMAR)
def test_near_miss_queries_raise_only_query_syntax_errors(query: str) -> None:
    _survives(query)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_order_and_field_lists_raise_only_query_syntax_errors(text: str) -> None:
    for parse in (parse_order, parse_group_by, parse_aggregates,
                  lambda t: parse_fields(t, columns=True)):
        try:
            parse(text)
        except QuerySyntaxError as error:
            position = error.position
        else:
            position = 0
        assert 0 <= position <= len(text)


# Near misses of valid queries: random query trees, rendered, then cut and patched at
# random. Many still parse, and whatever parses must run on a real store.
PIECES = st.sampled_from([" and ", " or ", " not ", "(", ")", "'", "`", " in (1, 'a')",
                          " exists", "null", "-", "0", "9.5", "e", ".", ", ", " = ", " < ",
                          "metrics.loss", "config.a", "tags", "created_at", " contains 'a'"])


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = render(draw(trees), draw(st.integers(0, 29)))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        piece = draw(PIECES)
        cut = draw(st.sampled_from((0, 0, 1, len(piece))))
        text = text[:at] + piece + text[at + cut:]
    return text


@pytest.fixture(scope="module", params=LASTING)
def runs_to_query(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[SyncTracker, bool]]:
    """Runs over the fields the random trees name, on each backend that a module can share."""
    url = backend_url(str(request.param), tmp_path_factory.mktemp("fuzz"))
    rng = random.Random(5)
    with engine.sync.connect(url, durability="normal") as tracker:
        for i in range(10):
            config = {k: rng.choice(CONFIG_SAMPLES) for k in CONFIG_KEYS if rng.random() < 0.7}
            with tracker.start_run(f"r{i}", name=rng.choice(NAMES), config=config,
                                   experiment=rng.choice((None, "e1", "e2")),
                                   tags=rng.sample(TAGS, rng.randrange(3))) as run:
                for step in range(rng.randrange(3)):
                    run.log_metrics({m: rng.choice(METRIC_VALUES) for m in METRICS
                                     if rng.random() < 0.6}, step=step)
        yield tracker, request.param == "postgres"


CONFIG_SAMPLES = (None, True, 0, 1, -1.5, 2.0, math.nan, "a", "ab", "it's", "2024-01-01",
                  datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1), ["a", "x y"])


def test_accepted_near_misses_run_and_negate_exactly(
        runs_to_query: tuple[SyncTracker, bool]) -> None:
    tracker, postgres = runs_to_query
    every = sorted(r.run_id for r in tracker.list_runs())

    @settings(max_examples=60 if postgres else 200, deadline=None)
    @given(mutated())
    def check(query: str) -> None:
        try:
            tree = parse_where(query)
        except QuerySyntaxError:
            return  # what a refusal must look like is the other fuzzers' business
        found = [r.run_id for r in tracker.list_runs(query)]
        if tree is None:
            assert sorted(found) == every
            return
        rest = [r.run_id for r in tracker.list_runs(f"not ({query})")]
        assert sorted(found + rest) == every  # two-valued: each run on exactly one side
        assert [r.run_id for r in tracker.list_runs(str(tree))] == found
        top = tracker.list_runs(query, order_by="-metrics.loss.min, config.a", limit=3)
        assert {r.run_id for r in top} <= set(found)

    check()


def test_compiled_plans_exist_for_both_dialects() -> None:
    tree = selection("metrics.loss < 1 or config.x = 'a'", "-metrics.acc, name", 10, 0,
                     False)
    for dialect in (SQLITE, POSTGRES):
        assert compile_top("p", tree, include_deleted=False, dialect=dialect) is not None
        plan = compile_groups("p", tree, parse_group_by("experiment"), None,
                              include_deleted=False, dialect=dialect)
        assert plan.stats is not None
