"""Block summaries: the first, last, min and max point of each run of consecutive points.

Every chunk of the series store carries one summary per ``BLOCK`` points, and downsampling
summarizes buckets the same way, so this is the series store's inner loop: at ingest and in a
rebuild every point passes through it. Runs of at least ``_NUMPY_FROM`` NaN-free points are
summarized with NumPy's ``argmin``/``argmax`` over a reshaped view, ten to thirty times faster
than the four pure-Python passes (``min``, ``max`` and two ``index``) that short runs and runs
holding a NaN take. Both paths give the same summaries, bit for bit (``tests/core/test_blocks.py``):
on NaN-free points the first-occurrence ``argmin``/``argmax`` pick exactly the points
``min``/``max`` would.

A summary is 12 floats: (step, value, timestamp) of the first, last, min and max point. Min
and max pass over NaN; a block of nothing but NaN has its first point as min and max.
"""

from __future__ import annotations

import math
from array import array
from typing import Any

import numpy as np

__all__ = ["SUMMARY", "block", "greater", "lesser", "minmax", "summarize"]

SUMMARY = 12  # floats per block summary
_NAN = math.nan
_NUMPY_FROM = 256  # below this many points NumPy's call overhead outweighs its speed


def lesser(a: float, b: float) -> float:
    """NaN-aware min that keeps the earlier value among equals (as builtin ``min`` does)."""
    if a != a:
        return b
    return b if b < a else a


def greater(a: float, b: float) -> float:
    """NaN-aware max that keeps the earlier value among equals."""
    if a != a:
        return b
    return b if b > a else a


def minmax(values: array[float] | list[float]) -> tuple[float, float]:
    """NaN-aware min and max (NaN, NaN when every value is NaN or there are none)."""
    total = sum(values)
    if total != total:  # NaN inside (or +inf with -inf): filter, then look again
        values = [v for v in values if v == v]
        if not values:
            return _NAN, _NAN
    return min(values), max(values)


def block(steps: array[Any], values: array[float], times: array[float], lo: int,
          hi: int, clean: bool = False) -> tuple[float, ...]:
    """The summary of points ``[lo, hi)``; ``clean`` promises they hold no NaN."""
    piece = values[lo:hi]
    if clean:
        low = min(piece)
        high = max(piece)
    else:
        low, high = minmax(piece)
    i_low = lo if low != low else lo + piece.index(low)
    i_high = lo if high != high else lo + piece.index(high)
    last = hi - 1
    return (
        steps[lo], values[lo], times[lo],
        steps[last], values[last], times[last],
        steps[i_low], values[i_low], times[i_low],
        steps[i_high], values[i_high], times[i_high],
    )


def summarize(steps: array[Any], values: array[float], times: array[float], lo: int, hi: int,
              size: int, *, use_numpy: bool = True) -> tuple[array[float], float, float]:
    """Summaries of the blocks of ``size`` consecutive points from ``lo`` to ``hi`` (the last
    one may be shorter), and the NaN-aware min and max of all those points.

    ``use_numpy=False`` forces the pure-Python path (the reference the tests compare with).
    """
    if use_numpy and hi - lo >= _NUMPY_FROM:
        found = _summarize_numpy(steps, values, times, lo, hi, size)
        if found is not None:
            return found
    summaries = array("d")
    low = high = _NAN
    # One NaN check for every block at once: a NaN anywhere makes the sum NaN.
    total = sum(values[lo:hi])
    clean = total == total
    for start in range(lo, hi, size):
        summary = block(steps, values, times, start, min(start + size, hi), clean)
        summaries.extend(summary)
        low = lesser(low, summary[7])
        high = greater(high, summary[10])
    return summaries, low, high


def _summarize_numpy(steps: array[Any], values: array[float], times: array[float], lo: int,
                     hi: int, size: int) -> tuple[array[float], float, float] | None:
    """The NumPy path of :func:`summarize`; None when a NaN is among the points."""
    # Slices are copies, so NumPy never holds a buffer export on the caller's arrays (an
    # exported array.array cannot grow).
    v = np.frombuffer(values[lo:hi], dtype=np.float64)
    if np.isnan(v).any():
        return None
    s = np.frombuffer(steps[lo:hi], dtype=np.int64 if steps.typecode == "q" else np.float64)
    t = np.frombuffer(times[lo:hi], dtype=np.float64)
    n = hi - lo
    full = n // size
    starts = np.arange(0, n, size)
    ends = np.minimum(starts + size, n) - 1
    lows = np.empty(len(starts), dtype=np.intp)
    highs = np.empty(len(starts), dtype=np.intp)
    if full:
        grid = v[: full * size].reshape(full, size)
        lows[:full] = grid.argmin(axis=1) + starts[:full]
        highs[:full] = grid.argmax(axis=1) + starts[:full]
    if full < len(starts):
        tail = v[full * size :]
        lows[full] = tail.argmin() + full * size
        highs[full] = tail.argmax() + full * size
    out = np.empty((len(starts), SUMMARY), dtype=np.float64)
    steps_f = s.astype(np.float64)
    for column, where in enumerate((starts, ends, lows, highs)):
        out[:, 3 * column] = steps_f[where]
        out[:, 3 * column + 1] = v[where]
        out[:, 3 * column + 2] = t[where]
    summaries = array("d")
    summaries.frombytes(out.tobytes())
    # argmin/argmax return the first occurrence, as lesser/greater keep the earlier value.
    low_values = v[lows]
    high_values = v[highs]
    return (summaries, float(low_values[low_values.argmin()]),
            float(high_values[high_values.argmax()]))
