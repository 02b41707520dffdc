"""Block summaries: the NumPy path gives exactly the pure-Python summaries, bit for bit.

Which path a range takes depends on its length and on whether it holds a NaN, so the same
points folded in different pieces (a live flush, a rebuild's pages) must lay out the same
bytes either way, or a rebuild would differ from the incremental state.
"""

from __future__ import annotations

import struct
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine._core import blocks as _blocks
from engine._core.blocks import SUMMARY, summarize
from tests.strategies import floats

# Few distinct values make ties (and 0.0 beside -0.0) common, where "the first of the
# equal minima" is easiest to get wrong.
_tied = st.sampled_from([0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), 2.5])
values_lists = st.lists(st.one_of(_tied, floats.filter(lambda v: v == v)),
                        min_size=_blocks._NUMPY_FROM, max_size=1500)


def _bits(column: array[float]) -> bytes:
    return column.tobytes()


def _both(steps: array[int] | array[float], values: array[float], times: array[float],
          lo: int, hi: int, size: int) -> None:
    fast, fast_low, fast_high = summarize(steps, values, times, lo, hi, size)
    slow, slow_low, slow_high = summarize(steps, values, times, lo, hi, size, use_numpy=False)
    assert _bits(fast) == _bits(slow)
    assert struct.pack("<2d", fast_low, fast_high) == struct.pack("<2d", slow_low, slow_high)
    assert len(fast) == SUMMARY * -(-(hi - lo) // size)


@settings(max_examples=80, deadline=None)
@given(values_lists, st.sampled_from([1, 7, 128, 300]), st.booleans(), st.data())
def test_numpy_summaries_equal_the_pure_python_ones(values: list[float], size: int,
                                                     float_steps: bool,
                                                     data: st.DataObject) -> None:
    n = len(values)
    # Mostly ranges long enough for the NumPy path, sometimes shorter ones.
    lo = data.draw(st.integers(0, n - 1))
    hi = data.draw(st.integers(lo + 1, n))
    if data.draw(st.booleans()):
        lo, hi = 0, n
    steps: array[int] | array[float] = (array("d", (s * 0.5 for s in range(n))) if float_steps
                                         else array("q", range(3, 3 + 2 * n, 2)))
    times = array("d", (1.7e9 + s * 1e-3 for s in range(n)))
    _both(steps, array("d", values), times, lo, hi, size)


def test_the_numpy_path_is_taken_for_long_clean_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Guard against the fast path silently never running: a long NaN-free run goes to NumPy,
    and ``use_numpy=False`` (the reference the property tests compare with) does not."""
    calls: list[int] = []
    original = _blocks._summarize_numpy

    def counting(*args: object) -> object:
        calls.append(1)
        return original(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(_blocks, "_summarize_numpy", counting)
    n = 4096
    steps, values = array("q", range(n)), array("d", (float(s % 97) for s in range(n)))
    times = array("d", range(n))
    summarize(steps, values, times, 0, n, 128)
    assert calls == [1]
    summarize(steps, values, times, 0, n, 128, use_numpy=False)
    summarize(steps, values, times, 0, _blocks._NUMPY_FROM - 1, 128)
    assert calls == [1]


def test_a_nan_sends_the_run_to_the_pure_python_path() -> None:
    n = 600
    values = array("d", (float(s) for s in range(n)))
    values[511] = float("nan")
    steps, times = array("q", range(n)), array("d", range(n))
    summaries, low, high = summarize(steps, values, times, 0, n, 128)
    # The block ending in the NaN skips it: its max is the point before.
    block = summaries[3 * SUMMARY : 4 * SUMMARY]
    assert block[9:12].tolist() == [510.0, 510.0, 510.0]
    assert (low, high) == (0.0, 599.0)
    _both(steps, values, times, 0, n, 128)
