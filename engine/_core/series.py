"""The series store's layout: chunks of points, block summaries, and the read-side assembly.

A metric's own points in one epoch live in chunks of up to ``CHUNK`` points; each chunk holds
three little-endian columns (steps, values, timestamps) and, per ``BLOCK`` points, a summary
of the block's first, last, min and max points (step, value, timestamp each). Chunk
boundaries depend only on the order of points, never on how they were batched, so a rebuild
lays the store out exactly as incremental writes did.

A run's *effective* series is a list of segments — ``(run key, epoch, cap)``: the points of
that run's epoch with step <= cap — inherited ones first, then the run's own. Forks and
rewinds only add or cap segments; nothing is copied.

Reads concatenate column bytes (a memcpy per chunk), and downsampling with ``max_points`` works
from the block summaries alone, so a million-point series is charted without touching its
points.
"""

from __future__ import annotations

import math
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .blocks import SUMMARY, greater, lesser, minmax, summarize
from .model import Series

__all__ = [
    "BLOCK",
    "CHUNK",
    "BlockRun",
    "Chunk",
    "Summary",
    "Piece",
    "as_step",
    "assemble",
    "blocks_of_piece",
    "combine",
    "capped",
    "downsample",
    "effective_series",
    "from_le",
    "normalize_steps",
    "null_nan",
    "steps_array",
    "summarize_points",
    "to_le",
    "within",
]

CHUNK = 4096
BLOCK = 128
_BIG_ENDIAN = sys.byteorder == "big"
_NAN = math.nan


def to_le(column: array[Any]) -> bytes:
    """A column's bytes in little-endian order."""
    if _BIG_ENDIAN:
        column = array(column.typecode, column)
        column.byteswap()
    return column.tobytes()


def from_le(code: str, data: bytes | memoryview) -> array[Any]:
    """The inverse of :func:`to_le`."""
    column = array(code)
    column.frombytes(data)
    if _BIG_ENDIAN:
        column.byteswap()
    return column


def steps_array(steps: Sequence[Any]) -> array[Any]:
    """Steps as ``'q'`` when they are all ints, else ``'d'``."""
    if isinstance(steps, array):
        return array(steps.typecode, steps)
    try:
        return array("q", steps)
    except TypeError:
        return array("d", steps)


def as_step(step: int | float) -> int | float:
    """A step in canonical form: integral floats become ints."""
    return int(step) if type(step) is float and step.is_integer() else step


def normalize_steps(steps: array[Any]) -> array[Any]:
    """Steps as ``'q'`` when every one is integral, else ``'d'`` — one canonical form."""
    if steps.typecode == "q":
        return steps
    if all(s.is_integer() for s in steps):
        return array("q", map(int, steps))
    return steps


@dataclass(slots=True)
class Summary:
    """Running summary of a stretch of points: count, last point, NaN-aware min and max."""

    count: int
    last: float
    last_step: int | float
    min: float
    max: float


def combine(a: Summary | None, b: Summary | None) -> Summary | None:
    """The summary of a stretch followed by another (``b`` is later)."""
    if a is None:
        return b
    if b is None:
        return a
    return Summary(a.count + b.count, b.last, b.last_step, lesser(a.min, b.min),
                   greater(a.max, b.max))


def summarize_points(steps: Sequence[Any], values: array[float]) -> Summary | None:
    """The summary of the given points (None when there are none)."""
    if not values:
        return None
    low, high = minmax(values)
    return Summary(len(values), values[-1], steps[-1], low, high)


class Chunk:
    """Up to ``CHUNK`` consecutive points of one (run, metric, epoch), with block summaries."""

    __slots__ = ("blocks", "epoch", "seq", "steps", "times", "values")

    def __init__(self, epoch: int, seq: int, steps: array[Any] | None = None,
                 values: array[float] | None = None, times: array[float] | None = None,
                 blocks: array[float] | None = None) -> None:
        self.epoch = epoch
        self.seq = seq
        self.steps = steps if steps is not None else array("q")
        self.values = values if values is not None else array("d")
        self.times = times if times is not None else array("d")
        self.blocks = blocks if blocks is not None else array("d")

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def full(self) -> bool:
        return len(self.values) >= CHUNK

    def extend(self, steps: array[Any], values: array[float], times: array[float],
               start: int) -> tuple[int, float, float]:
        """Take points from ``start`` until the chunk is full.

        Returns the next unused index, and the NaN-aware min and max over the blocks it
        summarized again (the new points, plus older ones that shared their first block).
        """
        old = len(self.values)
        stop = min(len(values), start + CHUNK - old)
        if stop <= start:
            return start, _NAN, _NAN
        new_steps = steps[start:stop]
        if new_steps.typecode != self.steps.typecode:
            if self.steps.typecode == "q":
                self.steps = array("d", self.steps)
            else:
                new_steps = array("d", new_steps)
        self.steps.extend(new_steps)
        self.values.extend(values[start:stop])
        self.times.extend(times[start:stop])
        first = old // BLOCK * BLOCK
        del self.blocks[first // BLOCK * SUMMARY :]
        summaries, low, high = summarize(self.steps, self.values, self.times, first,
                                         len(self.values), BLOCK)
        self.blocks.extend(summaries)
        return stop, low, high

    def summary(self) -> Summary:
        """Count, last point, min and max of the whole chunk, from its block summaries."""
        blocks = self.blocks
        low = high = _NAN
        for i in range(0, len(blocks), SUMMARY):
            low = lesser(low, blocks[i + 7])
            high = greater(high, blocks[i + 10])
        return Summary(len(self.values), self.values[-1], self.steps[-1], low, high)

    def row(self) -> tuple[Any, ...]:
        """``(epoch, seq, n, first_step, last_step, last_value, vmin, vmax, blocks, steps,
        values, times)`` as stored; the small columns and the block summaries come first so a
        downsampled read never walks the big columns."""
        s = self.summary()
        return (
            self.epoch, self.seq, s.count, self.steps[0], self.steps[-1], _nan_null(s.last),
            _nan_null(s.min), _nan_null(s.max), to_le(self.blocks),
            self.steps.typecode.encode() + to_le(self.steps), to_le(self.values),
            to_le(self.times),
        )

    @classmethod
    def from_columns(cls, epoch: int, seq: int, blocks: bytes, steps: bytes, values: bytes,
                     times: bytes) -> Chunk:
        """Rebuild a chunk from its stored columns."""
        return cls(epoch, seq, from_le(chr(steps[0]), memoryview(steps)[1:]),
                   from_le("d", values), from_le("d", times), from_le("d", blocks))


def _nan_null(value: float) -> float | None:
    # SQLite stores NaN as NULL anyway; being explicit keeps both backends alike. A NULL in a
    # column that is otherwise never NULL therefore reads back as NaN.
    return None if value != value else value


def null_nan(value: float | None) -> float:
    """The inverse of storing NaN as NULL."""
    return _NAN if value is None else value


@dataclass(slots=True)
class Piece:
    """Stored columns of one chunk, as a read fetched them."""

    n: int
    first_step: int | float
    last_step: int | float
    steps: bytes | None
    values: bytes | None
    times: bytes | None
    blocks: bytes | None


Bounded = tuple[Piece, "int | float | None", "int | float | None"]
PlanStep = tuple[int, int, "int | float | None"]
"""A segment of an effective series as a read plans it: ``(rk, epoch, cap or None)``."""


def capped(cap: int | float | None, high: int | float | None) -> int | float | None:
    """The highest step a read of a segment capped at ``cap`` keeps, given the read's
    ``high`` bound (None: no bound)."""
    if high is None:
        return cap
    return high if cap is None else min(cap, high)


async def effective_series(plan: Sequence[PlanStep], max_points: int | None,
                           block_runs: Callable[[PlanStep], Awaitable[list[BlockRun]]],
                           pieces: Callable[[PlanStep], Awaitable[list[Bounded]]]) -> Series:
    """A run's effective series from its segments, whole or downsampled.

    With ``max_points``, the stored block summaries are read first (``block_runs``): when the
    buckets span whole blocks the chart is made from them alone, without the points.
    Otherwise the chunks (``pieces``) are assembled.
    """
    if max_points is not None:
        runs = [run for seg in plan for run in await block_runs(seg)]
        total = sum(sum(r.counts) for r in runs)
        if total > max_points and -(-total // max(1, max_points // 4)) >= BLOCK:
            return downsample(None, runs, total, max_points)
    series = assemble([part for seg in plan for part in await pieces(seg)])
    if max_points is not None and len(series) > max_points:
        return downsample(series, (), len(series), max_points)
    return series


def assemble(parts: Iterable[Bounded]) -> Series:
    """Concatenate chunks into one series; each piece keeps only its steps in ``[low, high]``.

    The pieces come in step order; a segment's cap is its pieces' ``high``.
    """
    step_parts: list[array[Any]] = []
    value_parts: list[bytes] = []
    time_parts: list[bytes] = []
    for piece, low, high in parts:
        assert piece.steps is not None and piece.values is not None and piece.times is not None
        steps = from_le(chr(piece.steps[0]), memoryview(piece.steps)[1:])
        lo = 0 if low is None or piece.first_step >= low else bisect_left(steps, low)
        hi = piece.n if high is None or piece.last_step <= high else bisect_right(steps, high)
        if hi <= lo:
            continue
        if lo == 0 and hi == piece.n:
            step_parts.append(steps)
            value_parts.append(piece.values)
            time_parts.append(piece.times)
        else:
            step_parts.append(steps[lo:hi])
            value_parts.append(memoryview(piece.values)[lo * 8 : hi * 8].tobytes())
            time_parts.append(memoryview(piece.times)[lo * 8 : hi * 8].tobytes())
    return Series(_join_steps(step_parts), from_le("d", b"".join(value_parts)),
                  from_le("d", b"".join(time_parts)))


def _join_steps(parts: list[array[Any]]) -> array[Any]:
    if all(p.typecode == "q" for p in parts):
        ints = array("q")
        for p in parts:
            ints.extend(p)
        return ints
    floats = array("d")
    for p in parts:
        floats.extend(p if p.typecode == "d" else array("d", p))
    return normalize_steps(floats)


@dataclass(slots=True)
class BlockRun:
    """Block summaries of consecutive points: ``counts[i]`` points summarized by
    ``summaries[i * 12 : i * 12 + 12]``, and whether the steps are all integers."""

    counts: list[int]
    summaries: array[float]
    integral: bool


def blocks_of_piece(piece: Piece, low: int | float | None,
                    high: int | float | None) -> BlockRun:
    """Block summaries of a piece restricted to ``[low, high]``.

    Whole blocks come from the stored summaries; a block cut by a bound is summarized again
    from the piece's points (which the caller fetched for exactly those pieces).
    """
    inside = ((low is None or piece.first_step >= low)
              and (high is None or piece.last_step <= high))
    if inside:
        assert piece.blocks is not None
        summaries = from_le("d", piece.blocks)
        nblocks = len(summaries) // SUMMARY
        counts = [BLOCK] * nblocks
        counts[-1] = piece.n - BLOCK * (nblocks - 1)
        integral = piece.steps is None or piece.steps[:1] == b"q"
        return BlockRun(counts, summaries, integral)
    assert piece.steps is not None and piece.values is not None and piece.times is not None
    steps = from_le(chr(piece.steps[0]), memoryview(piece.steps)[1:])
    values = from_le("d", piece.values)
    times = from_le("d", piece.times)
    lo = 0 if low is None else bisect_left(steps, low)
    hi = piece.n if high is None else bisect_right(steps, high)
    return _blocks_of_points(steps, values, times, lo, hi)


def _blocks_of_points(steps: array[Any], values: array[float], times: array[float], lo: int,
                      hi: int) -> BlockRun:
    counts = [min(BLOCK, hi - start) for start in range(lo, hi, BLOCK)]
    summaries, _, _ = summarize(steps, values, times, lo, hi, BLOCK)
    return BlockRun(counts, summaries, steps.typecode == "q")


def within(series: Series, low: int | float | None, high: int | float | None) -> Series:
    """The points of ``series`` with ``low <= step <= high`` (a None bound: no bound)."""
    steps = series.steps
    start = 0 if low is None else bisect_left(steps, low)
    end = len(steps) if high is None else bisect_right(steps, high)
    if start == 0 and end == len(steps):
        return series
    return Series(steps[start:end], series.values[start:end], series.timestamps[start:end])


def downsample(series: Series | None, runs: Sequence[BlockRun], total: int,
               max_points: int) -> Series:
    """Keep each bucket's first, last, min and max point; at most ``max_points`` points.

    There are ``max_points // 4`` buckets of consecutive points. From ``series``' points
    (given), every bucket but the last holds exactly ``ceil(total / buckets)`` points. From
    block summaries alone (``series`` None, ``runs`` given), a bucket is made of whole blocks:
    bucket ``k`` ends at the first block boundary at or past ``k * total / buckets`` points,
    so it holds fewer than ``total / buckets + BLOCK`` points and there are at most
    ``buckets`` of them.
    """
    buckets = max(1, max_points // 4)
    if series is None:
        return _from_blocks(runs, total, buckets)
    target = -(-total // buckets)
    counts = [min(target, total - lo) for lo in range(0, total, target)]
    summaries, _, _ = summarize(series.steps, series.values, series.timestamps, 0, total, target)
    # Each of these "blocks" is a whole bucket: with as many buckets as points, every block
    # boundary is a bucket boundary.
    return _from_blocks([BlockRun(counts, summaries, series.steps.typecode == "q")], total,
                        max(1, total))


def _from_blocks(runs: Sequence[BlockRun], total: int, buckets: int) -> Series:
    """Group consecutive blocks into ``buckets`` buckets of nearly ``total / buckets`` points:
    a bucket ends at the first block boundary at or past its share of the points. (Grouping a
    fixed number of blocks per bucket instead would give up to half the buckets asked for.)"""
    out_steps: list[float] = []
    out_values: list[float] = []
    out_times: list[float] = []
    integral = all(r.integral for r in runs)
    seen = 0  # points in the blocks so far
    done = 0  # buckets emitted (or passed over by one long block)
    first: tuple[float, float, float] | None = None
    last: tuple[float, float, float] = (0.0, 0.0, 0.0)
    low = high = (_NAN, _NAN, _NAN)

    def emit() -> None:
        assert first is not None
        points = {first[0]: first, last[0]: last}
        if low[1] == low[1]:
            points[low[0]] = low
            points[high[0]] = high
        for step in sorted(points):
            s, v, t = points[step]
            out_steps.append(s)
            out_values.append(v)
            out_times.append(t)

    for run in runs:
        sums = run.summaries
        for i, count in enumerate(run.counts):
            b = i * SUMMARY
            if first is None:
                first = (sums[b], sums[b + 1], sums[b + 2])
                low = (sums[b + 6], sums[b + 7], sums[b + 8])
                high = (sums[b + 9], sums[b + 10], sums[b + 11])
            else:
                v = sums[b + 7]
                if v == v and (low[1] != low[1] or v < low[1]):
                    low = (sums[b + 6], v, sums[b + 8])
                v = sums[b + 10]
                if v == v and (high[1] != high[1] or v > high[1]):
                    high = (sums[b + 9], v, sums[b + 11])
            last = (sums[b + 3], sums[b + 4], sums[b + 5])
            seen += count
            if seen * buckets >= (done + 1) * total:  # past the next bucket's share
                emit()
                first = None
                done = seen * buckets // total
    if first is not None:
        emit()
    steps: array[Any] = array("q", map(int, out_steps)) if integral else array("d", out_steps)
    return Series(steps, array("d", out_values), array("d", out_times))
