"""The HTTP API's JSON: whatever goes in comes back exactly (NaN, ±inf, -0.0, big ints,
datetimes, array columns, keys that look like tags), and malformed bodies are WireErrors."""

from __future__ import annotations

import math
from array import array
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine._core import wire

_FLOATS = st.floats(allow_nan=True, allow_infinity=True)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
                     _FLOATS, st.text(max_size=8),
                     st.datetimes(timezones=st.just(UTC)))
_COLUMNS = st.one_of(
    st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=5).map(
        lambda v: array("q", v)),
    st.lists(_FLOATS, max_size=5).map(lambda v: array("d", v)))
_KEYS = st.one_of(st.text(max_size=5), st.sampled_from(["$a", "$f", "$$x", "$r", "$"]))
VALUES = st.recursive(st.one_of(_SCALARS, _COLUMNS),
                      lambda inner: st.one_of(st.lists(inner, max_size=4),
                                              st.dictionaries(_KEYS, inner, max_size=4)),
                      max_leaves=20)


def same(a: Any, b: Any) -> bool:
    """Bit-exact equality: NaN equals NaN, -0.0 differs from 0.0, arrays by bytes."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return math.copysign(1, a) == math.copysign(1, b) and (a == b or (a != a and b != b))
    if isinstance(a, array):
        return a.typecode == b.typecode and a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@given(VALUES)
def test_every_value_comes_back_exactly(value: Any) -> None:
    assert same(wire.loads(wire.dumps(value)), value)


def test_a_nan_keeps_its_sign_bit() -> None:
    back = wire.loads(wire.dumps([-math.nan, math.nan]))
    assert [math.copysign(1.0, x) for x in back] == [-1.0, 1.0]


def test_a_column_held_in_several_places_is_sent_once_and_comes_back_shared() -> None:
    steps = array("q", range(1000))
    batch = {"a": {"steps": steps}, "b": {"steps": steps}}
    body = wire.dumps(batch)
    assert len(body) < len(wire.dumps({"a": {"steps": steps}})) + 40
    back = wire.loads(body)
    assert back["a"]["steps"] is back["b"]["steps"]
    assert list(back["b"]["steps"]) == list(range(1000))


def test_without_arrays_columns_are_lists() -> None:
    back = wire.loads(wire.dumps({"v": array("d", [1.5, math.inf])}), arrays=False)
    assert back == {"v": [1.5, math.inf]}


@pytest.mark.parametrize("body", [
    b"{", b'{"$f": "big"}', b'{"$i": "12a"}', b'{"$a": ["x", ""]}', b'{"$a": ["d", "AAA"]}',
    b'{"$a": ["d", "!!!!"]}', b'{"$r": 0}', b'{"$q": 1}', b'{"$t": "yesterday"}',
    b'{"$a": "d"}',
])
def test_malformed_bodies_are_wire_errors(body: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.loads(body)


def test_what_json_cannot_carry_is_refused_when_sent() -> None:
    with pytest.raises(TypeError):
        wire.dumps({"x": object()})
    with pytest.raises(TypeError):
        wire.dumps({1: "int keys"})
    assert wire.loads(wire.dumps(datetime(2026, 1, 1, tzinfo=UTC))) == datetime(
        2026, 1, 1, tzinfo=UTC)
