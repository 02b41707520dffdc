"""What logging accepts and refuses (docs/logging.md), on every backend.

Each rule is checked at the API a training script calls (``log_metrics``, ``log_configs``,
``add_tags``, ``start_run``) and, where it matters, read back through ``get_run`` and
``read_series`` after ``await run.flush()``: a refused call must leave nothing behind.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

import engine
from engine.errors import ValidationError
from tests.conftest import MakeTracker

# Keys logging refuses, with why.
BAD_KEYS = [
    pytest.param("", id="empty"),
    pytest.param("k" * 1025, id="too-long"),
    pytest.param("/loss", id="leading-slash"),
    pytest.param("loss/", id="trailing-slash"),
    pytest.param("train//loss", id="double-slash"),
    pytest.param("/", id="only-slash"),
    pytest.param("train/lo\x00ss", id="nul"),
    pytest.param("train/\nloss", id="newline"),
    pytest.param("train\tloss", id="tab"),
    pytest.param("loss\x1b[31m", id="escape"),
    pytest.param("loss\x7f", id="del"),
]

NON_STRING_KEYS = [
    pytest.param(1, id="int"),
    pytest.param(None, id="none"),
    pytest.param(b"loss", id="bytes"),
    pytest.param(("train", "loss"), id="tuple"),
    pytest.param(1.5, id="float"),
]


def bits(value: float) -> tuple[bool, float, float]:
    """What makes two floats the same value: NaN-ness, the number, and the sign (of 0.0)."""
    return (math.isnan(value), 0.0 if math.isnan(value) else value, math.copysign(1.0, value))


async def series_points(tracker: engine.Tracker, run_id: str,
                        metric: str) -> list[tuple[int | float, float]]:
    series = await tracker.read_series(run_id, metric)
    return list(zip(series.steps, series.values, strict=True))


# Keys -------------------------------------------------------------------------------------


async def test_namespaced_keys_up_to_1024_characters_are_accepted(make: MakeTracker) -> None:
    longest = "n/" * 511 + "xy"  # 1024 characters, 512 segments
    assert len(longest) == 1024
    keys = ["loss", "train/loss", "a/b/c/d", "émoji 🐦/top-1 acc", longest]
    async with make() as tracker, tracker.start_run("r") as run:
        run.log_metrics(dict.fromkeys(keys, 1.0), step=0)
        run.log_configs(dict.fromkeys(keys, "v"))
        await run.flush()
        state = await tracker.get_run("r")
        assert set(state.metrics) == set(keys)
        assert state.config == dict.fromkeys(keys, "v")
        assert await series_points(tracker, "r", longest) == [(0, 1.0)]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_metric_key_is_refused_and_named(make: MakeTracker, key: str) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        with pytest.raises(ValidationError) as caught:
            run.log_metrics({key: 1.0}, step=0)
        assert caught.value.key == key
        await run.flush()
        assert (await tracker.get_run("r")).metrics == {}


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_config_key_is_refused_and_named(make: MakeTracker, key: str) -> None:
    async with make() as tracker:
        with pytest.raises(ValidationError) as caught:
            tracker.start_run("r", config={key: 1})
        assert caught.value.key == key
        async with tracker.start_run("r") as run:
            with pytest.raises(ValidationError) as caught:
                run.log_configs({key: 1})
            assert caught.value.key == key
            await run.flush()
            assert (await tracker.get_run("r")).config == {}


@pytest.mark.parametrize("key", NON_STRING_KEYS)
async def test_non_string_keys_are_refused(make: MakeTracker, key: Any) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        with pytest.raises(ValidationError) as caught:
            run.log_metrics({key: 1.0}, step=0)
        assert caught.value.key == repr(key)
        with pytest.raises(ValidationError) as caught:
            run.log_metrics({"train": {key: 1.0}}, step=0)
        assert caught.value.key is not None
        with pytest.raises(ValidationError) as caught:
            run.log_configs({key: "x"})
        assert caught.value.key == repr(key)
        await run.flush()
        state = await tracker.get_run("r")
        assert state.metrics == {}
        assert state.config == {}


@pytest.mark.parametrize("nested", [
    pytest.param({"train": {"": 1.0}}, id="empty-inner"),
    pytest.param({"train": {"loss/": 1.0}}, id="inner-trailing-slash"),
    pytest.param({"train/": {"loss": 1.0}}, id="outer-trailing-slash"),
    pytest.param({"train": {"lo\nss": 1.0}}, id="inner-control"),
])
async def test_nested_parts_follow_the_key_rules(make: MakeTracker,
                                                 nested: dict[str, Any]) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        with pytest.raises(ValidationError):
            run.log_metrics(nested, step=0)
        with pytest.raises(ValidationError):
            run.log_configs(nested)
        await run.flush()
        state = await tracker.get_run("r")
        assert state.metrics == {}
        assert state.config == {}


# Flattening -------------------------------------------------------------------------------


async def test_nested_metrics_are_flattened_with_slashes(make: MakeTracker) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        run.log_metrics({"train": {"loss": 0.5, "acc": {"top1": 0.7, "top5": 0.9}}, "lr": 0.1},
                        step=3)
        await run.flush()
        state = await tracker.get_run("r")
        assert set(state.metrics) == {"train/loss", "train/acc/top1", "train/acc/top5", "lr"}
        assert await series_points(tracker, "r", "train/acc/top1") == [(3, 0.7)]
        assert await series_points(tracker, "r", "train/loss") == [(3, 0.5)]
        assert (await tracker.read_series("r", "train")).steps.tolist() == []


async def test_nested_configs_are_flattened_with_slashes(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r", config={"model": {"depth": 12, "act": "gelu"}}) as run:
            run.log_configs({"optimizer": {"name": "adam", "betas": {"b1": 0.9}},
                             "parameters/lr": 0.001})
            run.log_configs({"parameters": {"batch_size": 64}})
            await run.flush()
        state = await tracker.get_run("r")
        assert state.config == {
            "model/depth": 12, "model/act": "gelu", "optimizer/name": "adam",
            "optimizer/betas/b1": 0.9, "parameters/lr": 0.001, "parameters/batch_size": 64,
        }


async def test_a_key_given_twice_after_flattening_is_refused(make: MakeTracker) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        with pytest.raises(ValidationError) as caught:
            run.log_metrics({"train/loss": 1.0, "ok": 2.0, "train": {"loss": 3.0}}, step=0)
        assert caught.value.key == "train/loss"
        with pytest.raises(ValidationError) as caught:
            run.log_configs({"opt": {"lr": 0.1}, "keep": 1, "opt/lr": 0.2})
        assert caught.value.key == "opt/lr"
        with pytest.raises(ValidationError):
            tracker.start_run("other", config={"a/b": 1, "a": {"b": 2}})
        await run.flush()
        state = await tracker.get_run("r")
        assert state.metrics == {}
        assert state.config == {}


# Metric values ----------------------------------------------------------------------------


async def test_ints_floats_nan_and_infinities_come_back_exactly(make: MakeTracker) -> None:
    values = [0, -7, 2**53, 1.5, -0.0, 0.0, math.nan, math.inf, -math.inf, 5e-324,
              1.7976931348623157e308, -2.5e-300]
    async with make() as tracker, tracker.start_run("r") as run:
        for step, value in enumerate(values):
            run.log_metrics({"m": value}, step=step)
        await run.flush()
        series = await tracker.read_series("r", "m")
        assert series.steps.tolist() == list(range(len(values)))
        assert [bits(v) for v in series.values] == [bits(float(v)) for v in values]
        assert math.isnan(series.values[6])
        assert series.values[7] == math.inf
        assert series.values[8] == -math.inf
        assert math.copysign(1.0, series.values[4]) == -1.0
        assert math.copysign(1.0, series.values[5]) == 1.0
        summary = (await tracker.get_run("r")).metrics["m"]
        assert summary.count == len(values)
        assert summary.last == -2.5e-300
        assert summary.min == -math.inf
        assert summary.max == math.inf


async def test_nan_as_the_last_value_is_kept_in_the_summary(make: MakeTracker) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        run.log_metrics({"loss": 2.0}, step=0)
        run.log_metrics({"loss": 1.0}, step=1)
        run.log_metrics({"loss": math.nan}, step=2)
        await run.flush()
        summary = (await tracker.get_run("r")).metrics["loss"]
        assert math.isnan(summary.last)
        assert (summary.min, summary.max, summary.count, summary.last_step) == (1.0, 2.0, 3, 2)


@pytest.mark.parametrize("value", [
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param("0.5", id="str"),
    pytest.param(None, id="none"),
    pytest.param([0.5], id="list"),
    pytest.param(Decimal("0.5"), id="decimal"),
    pytest.param(Fraction(1, 2), id="fraction"),
    pytest.param(1j, id="complex"),
    pytest.param(object(), id="object"),
    pytest.param(b"1", id="bytes"),
])
async def test_metric_values_other_than_numbers_are_refused(make: MakeTracker,
                                                            value: Any) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        with pytest.raises(ValidationError) as caught:
            run.log_metrics({"train/loss": value}, step=0)
        assert caught.value.key == "train/loss"
        await run.flush()
        assert (await tracker.get_run("r")).metrics == {}


# Steps ------------------------------------------------------------------------------------


async def test_int_and_float_steps_from_zero_are_accepted(make: MakeTracker) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        for step in (0, 0.5, 1, 2.25, 10, 2**53):  # ints up to 2**53: exact as doubles too
            run.log_metrics({"m": 1.0}, step=step)
        run.log_metrics({"z": 1.0}, step=0.0)
        await run.flush()
        assert (await tracker.read_series("r", "m")).steps.tolist() == [0, 0.5, 1, 2.25, 10,
                                                                        2**53]
        assert (await tracker.read_series("r", "z")).steps.tolist() == [0.0]


@pytest.mark.parametrize("step", [
    pytest.param(-1, id="negative-int"),
    pytest.param(-0.5, id="negative-float"),
    pytest.param(math.nan, id="nan"),
    pytest.param(math.inf, id="inf"),
    pytest.param(-math.inf, id="-inf"),
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param("1", id="str"),
    pytest.param([1], id="list"),
    pytest.param(Decimal(1), id="decimal"),
    pytest.param(2**53 + 1, id="beyond-2**53"),
    pytest.param(2**63, id="beyond-int64"),
])
async def test_bad_steps_are_refused(make: MakeTracker, step: Any) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        with pytest.raises(ValidationError) as caught:
            run.log_metrics({"loss": 1.0}, step=step)
        assert caught.value.key in ("step", "loss")
        await run.flush()
        assert (await tracker.get_run("r")).metrics == {}
        run.log_metrics({"loss": 1.0})  # the refused call did not move the implicit step
        await run.flush()
        assert (await tracker.read_series("r", "loss")).steps.tolist() == [0]


@pytest.mark.parametrize(("last", "step"), [(7, 7), (7, 3), (7, 7.0), (2.5, 2.5), (2.5, 0)])
async def test_a_step_not_above_the_metrics_last_is_refused_with_both_named(
        make: MakeTracker, last: int | float, step: int | float) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        run.log_metrics({"val/loss": 1.0}, step=last)
        with pytest.raises(ValidationError) as caught:
            run.log_metrics({"val/loss": 2.0}, step=step)
        message = str(caught.value)
        assert caught.value.key == "val/loss"
        assert "val/loss" in message
        numbers = Counter(re.findall(r"\d+(?:\.\d+)?", message))
        assert not Counter([str(step), str(last)]) - numbers, message
        await run.flush()
        assert await series_points(tracker, "r", "val/loss") == [(last, 1.0)]


async def test_step_order_is_per_metric(make: MakeTracker) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        run.log_metrics({"a": 1.0}, step=10)
        run.log_metrics({"b": 2.0}, step=2)  # b has no steps yet: a lower step is fine
        run.log_metrics({"b": 3.0}, step=3)
        run.log_metrics({"a": 4.0}, step=11)
        await run.flush()
        assert await series_points(tracker, "r", "a") == [(10, 1.0), (11, 4.0)]
        assert await series_points(tracker, "r", "b") == [(2, 2.0), (3, 3.0)]


async def test_omitted_step_is_one_more_than_the_runs_highest(make: MakeTracker) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        run.log_metrics({"a": 1.0})
        run.log_metrics({"a": 2.0})
        run.log_metrics({"b": 3.0}, step=10)
        run.log_metrics({"a": 4.0})  # highest logged by the run is 10, on another metric
        run.log_metrics({"c": 5.0}, step=11.5)
        run.log_metrics({"c": 6.0})
        await run.flush()
        assert (await tracker.read_series("r", "a")).steps.tolist() == [0, 1, 11]
        assert (await tracker.read_series("r", "c")).steps.tolist() == [11.5, 12.5]


# Configs ----------------------------------------------------------------------------------

GOOD_CONFIG: dict[str, Any] = {
    "name": "adam",
    "empty": "",
    "depth": 12,
    "big": 2**62,
    "negative": -3,
    "lr": 0.001,
    "nan": math.nan,
    "flag": True,
    "off": False,
    "started": datetime(2024, 5, 17, 12, 30, 5, 123456, tzinfo=UTC),
    "local": datetime(2024, 5, 17, 12, 30, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    "naive": datetime(2024, 5, 17, 12, 30, 5),
    "missing": None,
    "layers": ["conv", "relu", "pool"],
    "none_yet": [],
}


async def test_config_values_of_every_allowed_type_read_back_equal(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r", config={"at_start": {"seed": 7}}) as run:
            run.log_configs(GOOD_CONFIG)
            run.log_configs({"tuple": ("a", "b")})
            await run.flush()
        config = (await tracker.get_run("r")).config
    expected = {**GOOD_CONFIG, "at_start/seed": 7, "tuple": ["a", "b"]}
    assert set(config) == set(expected)
    for key, value in expected.items():
        got = config[key]
        assert type(got) is type(value), key
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got)
        else:
            assert got == value, key
    assert config["started"].utcoffset() == timedelta(0)
    assert config["local"].utcoffset() == timedelta(hours=5, minutes=30)
    assert config["naive"].tzinfo is None


async def test_a_later_config_value_replaces_the_earlier_one(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r", config={"lr": 0.1, "name": "sgd"}) as run:
            run.log_configs({"lr": 0.01})
            run.log_configs({"name": None})
            await run.flush()
        assert (await tracker.get_run("r")).config == {"lr": 0.01, "name": None}


@pytest.mark.parametrize("value", [
    pytest.param([{"a": 1}], id="dict-in-list"),
    pytest.param({1, 2}, id="set"),
    pytest.param(frozenset({"a"}), id="frozenset"),
    pytest.param(b"bytes", id="bytes"),
    pytest.param([["a"]], id="list-of-list"),
    pytest.param([1, None], id="none-in-list"),
    pytest.param([1.0, float("nan")], id="nan-in-list"),
    pytest.param([float("inf")], id="inf-in-list"),
    pytest.param([2**64], id="huge-int-in-list"),
    pytest.param(Decimal("0.1"), id="decimal"),
    pytest.param(1j, id="complex"),
    pytest.param(object(), id="object"),
    pytest.param("a\x00b", id="nul"),
    pytest.param(["ok", "a\x00"], id="nul-in-list"),
])
async def test_config_values_of_other_types_are_refused(make: MakeTracker, value: Any) -> None:
    async with make() as tracker:
        with pytest.raises(ValidationError) as caught:
            tracker.start_run("r", config={"opt": {"bad": value}})
        assert caught.value.key == "opt/bad"
        async with tracker.start_run("r") as run:
            with pytest.raises(ValidationError) as caught:
                run.log_configs({"opt": {"bad": value}})
            assert caught.value.key == "opt/bad"
            await run.flush()
            assert (await tracker.get_run("r")).config == {}


# Tags -------------------------------------------------------------------------------------


async def test_tags_up_to_256_characters_are_accepted(make: MakeTracker) -> None:
    longest = "t" * 256
    async with make() as tracker:
        async with tracker.start_run("r", tags=("baseline", longest)) as run:
            run.add_tags("good", " spaced / tag ", ["x", "y"])
            run.remove_tags("baseline", "never-there")
            await run.flush()
        assert (await tracker.get_run("r")).tags == frozenset(
            {longest, "good", " spaced / tag ", "x", "y"})


@pytest.mark.parametrize("tag", [
    pytest.param("", id="empty"),
    pytest.param("t" * 257, id="too-long"),
    pytest.param(1, id="int"),
    pytest.param(None, id="none"),
    pytest.param(b"tag", id="bytes"),
    pytest.param("a\x00b", id="nul"),
])
async def test_bad_tags_are_refused(make: MakeTracker, tag: Any) -> None:
    async with make() as tracker:
        with pytest.raises(ValidationError) as caught:
            tracker.start_run("r", tags=("ok", tag))
        assert caught.value.key in (tag, repr(tag))
        async with tracker.start_run("r", tags=("keep",)) as run:
            with pytest.raises(ValidationError) as caught:
                run.add_tags("fine", tag)
            assert caught.value.key in (tag, repr(tag))
            with pytest.raises(ValidationError):
                run.remove_tags("keep", tag)
            await run.flush()
            assert (await tracker.get_run("r")).tags == frozenset({"keep"})


# NUL --------------------------------------------------------------------------------------


async def test_nul_is_refused_in_reasons_and_escaped_in_failure_messages(
        make: MakeTracker) -> None:
    """No log holds NUL, on any backend (PostgreSQL's text cannot): an abort reason with one
    is refused and requests nothing; a failure reason made from an exception's message has
    it written as ``\\0``, in the event and the projections alike."""
    async with make() as tracker:
        with pytest.raises(ValueError, match="bad"):
            async with tracker.start_run("r"):
                raise ValueError("bad\x00news")
        async with tracker.start_run("s") as run:
            with pytest.raises(ValidationError) as caught:
                await tracker.abort_run("s", reason="why\x00")
            assert caught.value.key == "reason"
            await run.flush()
            assert not run.abort_requested
        assert (await tracker.get_run("r")).status_reason == "ValueError: bad\\0news"
        events = [e async for e in tracker.events()]
        assert [(e.run_id, e.type) for e in events] == [
            ("r", "RunCreated"), ("r", "StatusChanged"), ("s", "RunCreated"),
            ("s", "StatusChanged")]
        assert events[1].data["reason"] == "ValueError: bad\\0news"
        assert (await tracker.get_run("s")).status.value == "succeeded"
        store = tracker._store
        assert store is not None
        assert await store.verify_rebuild() == []


# A rejected call changes nothing ----------------------------------------------------------


async def test_a_refused_metrics_call_writes_none_of_its_keys(make: MakeTracker) -> None:
    async with make() as tracker, tracker.start_run("r") as run:
        run.log_metrics({"loss": 1.0, "acc": 0.1}, step=0)
        await run.flush()
        calls: list[dict[str, Any]] = [
            {"loss": 0.9, "acc": 0.2, "bad//key": 3.0, "fresh": 1.0},
            {"loss": 0.9, "acc": True, "fresh": 1.0},
            {"fresh": 1.0, "loss": 0.9, "acc": None},
            {"fresh": 1.0, "nested": {"ok": 1.0, "": 2.0}},
        ]
        for call in calls:
            with pytest.raises(ValidationError):
                run.log_metrics(call, step=1)
        with pytest.raises(ValidationError):  # one key's step goes back: none is written
            run.log_metrics({"fresh": 1.0, "loss": 0.5}, step=0)
        await run.flush()
        state = await tracker.get_run("r")
        assert set(state.metrics) == {"loss", "acc"}
        assert state.metrics["loss"].count == 1
        assert await series_points(tracker, "r", "loss") == [(0, 1.0)]
        assert await series_points(tracker, "r", "acc") == [(0, 0.1)]
        assert await series_points(tracker, "r", "fresh") == []
        # Nothing refused moved a step: step 1 is still free, and the implicit step is 1.
        run.log_metrics({"loss": 0.8, "fresh": 7.0}, step=1)
        run.log_metrics({"acc": 0.3})
        await run.flush()
        assert await series_points(tracker, "r", "loss") == [(0, 1.0), (1, 0.8)]
        assert await series_points(tracker, "r", "acc") == [(0, 0.1), (2, 0.3)]
        assert await series_points(tracker, "r", "fresh") == [(1, 7.0)]


async def test_a_refused_config_or_tags_call_writes_nothing(make: MakeTracker) -> None:
    async with make() as tracker, tracker.start_run("r", config={"lr": 0.1}, tags="a") as run:
        with pytest.raises(ValidationError):
            run.log_configs({"lr": 0.5, "depth": 3, "bad": {1, 2}})
        with pytest.raises(ValidationError):
            run.log_configs({"lr": 0.5, "": 3})
        with pytest.raises(ValidationError):
            run.add_tags("b", "c", "")
        with pytest.raises(ValidationError):
            run.remove_tags("a", "t" * 300)
        await run.flush()
        state = await tracker.get_run("r")
        assert state.config == {"lr": 0.1}
        assert state.tags == frozenset({"a"})
        types = [e.type async for e in tracker.events()]
        assert types == ["RunCreated"]


async def test_a_refused_start_run_creates_no_run(make: MakeTracker) -> None:
    async with make() as tracker:
        for bad in ({"config": {"x": [{1}]}}, {"tags": ("",)}, {"config": {"": 1}}):
            with pytest.raises(ValidationError):
                tracker.start_run("r", **bad)
        assert await tracker.list_runs() == []
        assert [e async for e in tracker.events()] == []


# The error type ---------------------------------------------------------------------------


async def test_validation_errors_are_value_errors(make: MakeTracker) -> None:
    assert issubclass(ValidationError, ValueError)
    assert issubclass(ValidationError, engine.errors.EngineError)
    async with make() as tracker, tracker.start_run("r") as run:
        with pytest.raises(ValueError, match="loss"):
            run.log_metrics({"loss": "high"}, step=0)
        run.log_metrics({"loss": 1.0}, step=0)
        await run.flush()
        assert await series_points(tracker, "r", "loss") == [(0, 1.0)]
