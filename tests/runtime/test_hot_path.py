"""The compiled core of the logging hot path does exactly what its Python twin does: same
answer, same bytes appended, and nothing appended when it says no."""

from __future__ import annotations

import os
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine._runtime import hot_path as _take
from engine._runtime.hot_path import take_floats_py


class Name(str):
    """A str subclass key: equal by value to the plain key."""


class Float(float):
    """A float subclass, as numpy.float64 is: not taken by the hot path (converted slowly)."""


def compiled() -> Any:
    if not _take.COMPILED:
        # Required where the project is built for real (CI has a compiler); a machine without
        # one runs the Python twin, which the other tests cover.
        if os.environ.get("CI"):
            pytest.fail("engine._runtime._speedups was not built: the hot path runs in Python")
        pytest.skip("engine._runtime._speedups was not built on this machine")
    return _take.take_floats


names = st.sampled_from(["a", "b", "c", "loss", "val/acc"])
keys = st.one_of(names, names.map(Name), st.integers(0, 2))
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=2),
    st.floats(allow_nan=False).map(Float),
)
rows = st.dictionaries(keys, values, max_size=6)


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[Any, Any], tuple[Any, ...], bytes]:
    metrics = draw(rows)
    own = tuple(metrics)
    expected = draw(st.one_of(
        st.just(own),
        st.permutations(own).map(tuple),
        st.lists(names, max_size=6, unique=True).map(tuple),
        st.just(own[:-1]),
        st.just((*own, "extra")),
    ))
    prefix = draw(st.binary(max_size=24).map(lambda b: b[: len(b) // 8 * 8]))
    return metrics, expected, prefix


@given(cases())
def test_the_compiled_hot_path_matches_its_python_twin(
        case: tuple[dict[Any, Any], tuple[Any, ...], bytes]) -> None:
    take = compiled()
    metrics, expected, prefix = case
    out_c, out_py = bytearray(prefix), bytearray(prefix)
    taken = take(metrics, expected, out_c)
    assert taken is take_floats_py(metrics, expected, out_py)
    assert bytes(out_c) == bytes(out_py)


@given(st.lists(st.floats(allow_nan=True), min_size=1, max_size=12))
def test_taken_values_are_appended_bit_for_bit_in_key_order(floats: list[float]) -> None:
    for take in {_take.take_floats, take_floats_py}:
        metrics = {f"m{i}": value for i, value in enumerate(floats)}
        out = bytearray(b"\x01" * 8)
        assert take(metrics, tuple(metrics), out)
        assert bytes(out) == b"\x01" * 8 + struct.pack(f"{len(floats)}d", *floats)


def test_the_hot_path_refuses_rather_than_guesses() -> None:
    for take in {_take.take_floats, take_floats_py}:
        out = bytearray()
        assert not take({"a": 1.0, "b": 2.0}, ("b", "a"), out)  # order matters
        assert not take({"a": 1.0, "b": True}, ("a", "b"), out)  # a bool is never a number
        assert not take({"a": 1.0, "b": 2}, ("a", "b"), out)  # an int: the slow check
        assert not take({"a": 1.0}, ("a", "b"), out)
        assert out == bytearray()
        assert take({Name("a"): 1.0}, ("a",), out)


def test_the_compiled_hot_path_checks_its_arguments() -> None:
    take = compiled()
    with pytest.raises(TypeError):
        take({"a": 1.0}, ["a"], bytearray())
    with pytest.raises(TypeError):
        take({"a": 1.0}, ("a",), [])
    with pytest.raises(TypeError):
        take({"a": 1.0}, ("a",))
