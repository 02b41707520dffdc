"""Histograms: every rule, ``from_values`` against NumPy, and the plain form through the
payload codec, bit for bit."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine._core.codec import decode, decode_arrays, encode
from engine._core.histograms import MAX_BINS, Histogram, check_histogram
from engine.errors import ValidationError
from tests.strategies import same

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def histograms(draw: st.DrawFn) -> Histogram:
    edges = sorted(draw(st.sets(finite, min_size=2, max_size=40)))
    bins = len(edges) - 1
    if draw(st.booleans()):
        counts: list[Any] = draw(st.lists(st.integers(0, 2**63 - 1), min_size=bins,
                                          max_size=bins))
    else:
        counts = draw(st.lists(st.floats(0, allow_infinity=False), min_size=bins,
                               max_size=bins))
    return Histogram(edges, counts)


@given(histograms())
def test_the_plain_form_round_trips_exactly_through_the_codec(histogram: Histogram) -> None:
    raw = encode({"histogram": histogram.to_plain()})
    for back in (decode(raw)["histogram"], decode_arrays(raw)["histogram"]):
        again = Histogram.from_plain(back)
        assert again == histogram
        assert same(list(again.edges), list(histogram.edges))  # -0.0 and all: bit for bit
        assert same(list(again.counts), list(histogram.counts))


def test_int_counts_stay_ints_and_any_float_makes_them_floats() -> None:
    ints = Histogram([0, 1, 2], np.array([3, 4], np.uint32))
    assert ints.counts == (3, 4)
    assert all(type(c) is int for c in ints.counts)
    assert ints.edges == (0.0, 1.0, 2.0)
    assert all(type(e) is float for e in ints.edges)
    floats = Histogram(np.array([0.0, 0.5, 1.0], np.float32), [1, 2.5])
    assert floats.counts == (1.0, 2.5)
    assert all(type(c) is float for c in floats.counts)
    assert ints.to_plain()["counts"].typecode == "q"
    assert floats.to_plain()["counts"].typecode == "d"
    assert Histogram([0, 1, 2], [3, 4]) == ints
    assert hash(ints) == hash(Histogram((0.0, 1.0, 2.0), (3, 4)))


@pytest.mark.parametrize(("edges", "counts", "key", "match"), [
    ([0, 1], [-1], "counts", "counts must be >= 0, not -1"),
    ([0, 1, 2], [1, -0.5], "counts", ">= 0"),
    ([0, 1, 1], [1, 1], "edges", "increase strictly; edge 2"),
    ([1, 0], [1], "edges", "increase strictly"),
    ([0, 1, 2], [1], "edges", "3 edges for 1 counts"),
    ([0], [], "counts", "0 bins"),
    ([0, math.inf], [1], "edges", "finite, not inf"),
    ([math.nan, 1], [1], "edges", "finite"),
    ([0, 1], [math.nan], "counts", "finite"),
    ([0, 1], [math.inf], "counts", "finite"),
    ([0, 1], [True], "counts", "bools"),
    ([0, 1], np.array([True]), "counts", "bool"),
    ([False, True], [1], "edges", "bools"),
    ([0, 1], ["1"], "counts", "ints or floats"),
    ("01", [1], "edges", "numbers, not str"),
    ([0, 1], [2**64], "counts", "ints or floats"),
    ([0, 1], np.array([2**63], np.uint64), "counts", "64 bits"),
    ([[0, 1]], [1], "edges", "one-dimensional"),
    ([0, 1, 2], [[1, 1]], "counts", "one-dimensional"),
    ([[0], [1, 2]], [1], "edges", "numbers"),
    (list(range(MAX_BINS + 2)), [0] * (MAX_BINS + 1), "counts", f"1 to {MAX_BINS}"),
])
def test_every_rule_is_checked_naming_the_key(edges: Any, counts: Any, key: str,
                                              match: str) -> None:
    with pytest.raises(ValidationError, match=match) as caught:
        Histogram(edges, counts)
    assert caught.value.key == key
    with pytest.raises(ValidationError, match=match) as caught:
        check_histogram("grad/l1", {"edges": edges, "counts": counts})
    assert caught.value.key == "grad/l1"
    assert "'grad/l1'" in str(caught.value)


def test_check_histogram_takes_a_histogram_or_its_plain_form() -> None:
    histogram = Histogram([0, 1], [5])
    assert check_histogram("h", histogram) is histogram
    assert check_histogram("h", histogram.to_plain()) == histogram
    for value in [[0, 1], {"edges": [0, 1]}, None, 3.0]:
        with pytest.raises(ValidationError, match="is not a histogram") as caught:
            check_histogram("h", value)
        assert caught.value.key == "h"


# from_values -------------------------------------------------------------------------------------

@given(st.lists(finite.filter(lambda v: abs(v) < 1e300), max_size=200),
       st.integers(1, 100))
def test_from_values_is_numpys_histogram(values: list[float], bins: int) -> None:
    try:
        counts, edges = np.histogram(np.asarray(values, float), bins=bins)
    except ValueError:  # too narrow a range for distinct edges: refused, naming it
        with pytest.raises(ValidationError, match="bins") as caught:
            Histogram.from_values(values, bins=bins)
        assert caught.value.key == "values"
        return
    made = Histogram.from_values(values, bins=bins)
    assert made.counts == tuple(counts.tolist())
    assert made.edges == tuple(edges.tolist())
    assert sum(made.counts) == len(values)


def test_from_values_flattens_and_takes_a_range_or_edges() -> None:
    grads = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert Histogram.from_values(grads, bins=3).counts == (4, 4, 4)
    ranged = Histogram.from_values([-5, 0.5, 1.5, 99], bins=2, range=(0, 2))
    assert (ranged.edges, ranged.counts) == ((0.0, 1.0, 2.0), (1, 1))  # outside: left out
    assert Histogram.from_values([0.5, 2.5], bins=[0, 1, 3]).counts == (1, 1)
    assert Histogram.from_values([], bins=4).counts == (0, 0, 0, 0)
    assert len(Histogram.from_values(np.ones(10)).counts) == 64


@pytest.mark.parametrize(("kwargs", "key", "match"), [
    ({"values": [1.0, math.nan]}, "values", "1 NaN or infinite"),
    ({"values": [math.inf]}, "values", "NaN or infinite"),
    ({"values": ["a"]}, "values", "ints or floats"),
    ({"values": [True, False]}, "values", "bools"),
    ({"values": [1], "bins": 0}, "bins", "bins=0"),
    ({"values": [1], "bins": MAX_BINS + 1}, "bins", "bins="),
    ({"values": [1], "bins": True}, "bins", "bool"),
    ({"values": [1], "bins": [0]}, "bins", "1 edges"),
    ({"values": [1], "bins": [0, 2, 1]}, "bins", "increase strictly"),
    ({"values": [1], "range": (1, 1)}, "range", "low < high"),
    ({"values": [1], "range": (0, math.inf)}, "range", "finite"),
    ({"values": [1], "range": "ab"}, "range", "pair of numbers"),
    ({"values": [1], "range": (0, 1, 2)}, "range", "pair of numbers"),
    ({"values": [-1.7e308, 1.7e308]}, "values", "finite-sized bins"),
    ({"values": [1.0], "range": (1.0, 1.0 + 2e-16), "bins": 4}, "range", "finite-sized"),
])
def test_from_values_refuses_what_it_cannot_count(kwargs: dict[str, Any], key: str,
                                                  match: str) -> None:
    with pytest.raises(ValidationError, match=match) as caught:
        Histogram.from_values(**kwargs)
    assert caught.value.key == key
