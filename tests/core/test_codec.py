"""The codec round-trips every payload exactly (orjson alone turns NaN into null)."""

from __future__ import annotations

import math
from array import array
from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine._core.codec import decode, decode_arrays, encode, plain
from tests.strategies import floats, payloads, same


@given(payloads)
def test_any_payload_round_trips_exactly(value: object) -> None:
    assert same(decode(encode(value)), value)


@given(st.lists(floats, max_size=200))
def test_float_lists_round_trip_bit_for_bit(values: list[float]) -> None:
    back = decode(encode({"values": values}))["values"]
    assert [math.copysign(1.0, v) if v == 0 else v for v in back if not math.isnan(v)] == \
        [math.copysign(1.0, v) if v == 0 else v for v in values if not math.isnan(v)]
    assert [math.isnan(v) for v in back] == [math.isnan(v) for v in values]


@given(st.lists(floats, max_size=300), st.lists(st.integers(-(2**63), 2**63 - 1), max_size=300))
def test_arrays_travel_as_binary_and_keep_every_bit(values: list[float], steps: list[int]) -> None:
    column = array("d", values)
    data = {"metrics": {"loss": {"values": column, "steps": array("q", steps)}}}
    raw = encode(data)
    kept = decode_arrays(raw)["metrics"]["loss"]
    assert kept["values"].tobytes() == column.tobytes()
    assert kept["steps"].tolist() == steps
    listed = decode(raw)["metrics"]["loss"]
    assert isinstance(listed["values"], list)
    assert array("d", listed["values"]).tobytes() == column.tobytes()


@pytest.mark.parametrize("special", [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.8e308 / 1.1])
def test_special_floats_anywhere(special: float) -> None:
    value = {"a": [1, {"b": special}], "c": special}
    assert same(decode(encode(value)), value)


def test_user_keys_that_look_like_tags_are_not_tags() -> None:
    value = {"$f": "nan", "$$x": 1, "$a": ["d", 0, 1], "$": math.nan, "$t": "2020-01-01"}
    back = decode(encode(value))
    assert same(back, value)
    assert isinstance(back["$f"], str)


def test_plain_payloads_are_plain_json() -> None:
    raw = encode({"name": "x", "n": [1, 2.5, None, True]})
    assert raw[:1] == b"\x00"
    assert raw[1:] == b'{"name":"x","n":[1,2.5,null,true]}'


def test_big_ints_and_datetimes_survive() -> None:
    value = {"big": 2**100, "neg": -(2**80), "when": datetime(2024, 5, 1, 12, 30, 1, 5)}
    assert same(decode(encode(value)), value)


def test_unsupported_values_are_refused() -> None:
    with pytest.raises(TypeError):
        encode({"x": object()})
    with pytest.raises(TypeError):
        encode({1: "non-string key"})


def test_plain_turns_arrays_into_lists() -> None:
    assert plain({"a": {"b": array("d", [1.0])}, "c": [1]}) == {"a": {"b": [1.0]}, "c": [1]}


def test_plain_turns_shared_arrays_into_lists_once() -> None:
    """A batch's metrics share their steps and timestamps arrays; each metric still gets
    the right lists (one list per shared array, converted once)."""
    from array import array

    from engine._core.codec import plain

    steps, times = array("q", [1, 2, 3]), array("d", [0.5, 0.25, 0.125])
    data = {"metrics": {name: {"steps": steps, "values": array("d", [v, v, -v]),
                               "timestamps": times} for name, v in (("a", 1.0), ("b", 2.0))}}
    out = plain(data)
    assert out == {"metrics": {
        "a": {"steps": [1, 2, 3], "values": [1.0, 1.0, -1.0], "timestamps": [0.5, 0.25, 0.125]},
        "b": {"steps": [1, 2, 3], "values": [2.0, 2.0, -2.0], "timestamps": [0.5, 0.25, 0.125]},
    }}
    assert out["metrics"]["a"]["steps"] is out["metrics"]["b"]["steps"]
    assert type(out["metrics"]["a"]["values"]) is list
