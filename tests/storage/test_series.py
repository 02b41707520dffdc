"""Series reads: forks, rewinds, step ranges, and downsampling that never hides a spike."""

from __future__ import annotations

import contextlib
import math
import random
import struct
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine._core.model import Series
from engine._core.series import BLOCK, CHUNK, Chunk, _blocks_of_points, downsample
from engine._projections import projector
from tests.conftest import MakeTracker
from tests.strategies import floats


def _bits(value: float) -> bytes:
    return struct.pack("<d", value)


def reference_buckets(full: Series, max_points: int) -> list[int]:
    """Which points the point path keeps, worked out plainly: ``max_points // 4`` buckets of
    ``ceil(n / buckets)`` consecutive points, each keeping its first, last, min and max
    (the first of equal ones; NaN never wins), in step order."""
    n = len(full)
    values = full.values
    target = -(-n // max(1, max_points // 4))
    kept: list[int] = []
    for lo in range(0, n, target):
        hi = min(lo + target, n)
        keep = {lo, hi - 1}
        numbers = [i for i in range(lo, hi) if not math.isnan(values[i])]
        if numbers:
            keep.add(min(numbers, key=lambda i: values[i]))
            keep.add(max(numbers, key=lambda i: values[i]))
        kept.extend(sorted(keep))
    return kept


def _bucket_kept(values: array[float], kept: list[int]) -> bool:
    """Whether the points ``kept`` (indices, in order) are exactly what a bucket spanning
    ``kept[0] .. kept[-1]`` keeps: its first and last, a point holding its min and one
    holding its max (NaN passed over), and nothing else."""
    lo, hi = kept[0], kept[-1]
    piece = values[lo : hi + 1]
    total = sum(piece)
    numbers = [v for v in piece if v == v] if total != total else piece
    if not numbers:
        return len(kept) <= 2
    low, high = min(numbers), max(numbers)
    shown = [values[i] for i in kept]
    return (low in shown and high in shown
            and all(values[i] in (low, high) for i in kept[1:-1]))


def check_downsampled(full: Series, small: Series, max_points: int, *,
                      slack: int = BLOCK) -> None:
    """The promises of ``max_points``, bucket by bucket.

    The result must be real points of ``full`` (bit for bit), in step order, at most
    ``max_points`` of them, and it must split into buckets of consecutive points — none
    longer than ``ceil(n / (max_points // 4)) + slack`` — each of which shows its first, last,
    min and max point and nothing else. Bucket edges are not fixed here (the block path puts
    them on stored block boundaries), so the split is searched for: a bucket shows at most
    four points and its last point is followed directly by the next bucket's first.
    """
    n = len(full)
    assert len(small) <= max_points
    if n == 0:
        assert len(small) == 0
        return
    where = {step: i for i, step in enumerate(full.steps)}
    picked: list[int] = []
    for step, value, at in small:
        i = where.get(step)
        assert i is not None, f"step {step} is not in the series"
        assert _bits(value) == _bits(full.values[i]), (step, value, full.values[i])
        assert _bits(at) == _bits(full.timestamps[i]), step
        picked.append(i)
    assert picked == sorted(set(picked)), "points out of step order or repeated"
    longest = -(-n // max(1, max_points // 4)) + slack
    m = len(picked)
    # reach[j]: the points before picked[j] split into valid buckets ending at picked[j] - 1.
    reach = [picked[0] == 0] + [False] * m
    for j in range(m):
        if not reach[j]:
            continue
        for k in range(j, min(j + 4, m)):
            lo, hi = picked[j], picked[k]
            if hi - lo + 1 > longest:
                break
            ends_right = picked[k + 1] == hi + 1 if k + 1 < m else hi == n - 1
            if ends_right and _bucket_kept(full.values, picked[j : k + 1]):
                reach[k + 1] = True
    assert reach[m], "the points kept do not split into buckets that each show their first, " \
                     "last, min and max"


def _series(values: list[float], step: int = 1) -> Series:
    return Series(array("q", range(0, len(values) * step, step)), array("d", values),
                  array("d", [1e9 + i / 8 for i in range(len(values))]))


@st.composite
def value_lists(draw: st.DrawFn, max_size: int = 3_000) -> list[float]:
    """Long series made from a small palette (NaN, ±inf, ±0.0 and ties included), repeated in
    a random order: long enough for buckets of hundreds of points, cheap to generate."""
    palette = draw(st.lists(floats, min_size=1, max_size=12))
    size = draw(st.integers(1, max_size))
    rng = random.Random(draw(st.integers(0, 2**32)))
    return [rng.choice(palette) for _ in range(size)]


@given(values=value_lists(), max_points=st.integers(4, 80))
@settings(max_examples=60)
def test_the_point_path_keeps_each_buckets_first_last_min_and_max(
        values: list[float], max_points: int) -> None:
    series = _series(values)
    small = downsample(series, (), len(series), max_points)
    assert [int(s) for s in small.steps] == reference_buckets(series, max_points)
    check_downsampled(series, small, max_points, slack=0)


@given(values=value_lists(), max_points=st.integers(4, 80), data=st.data())
@settings(max_examples=60)
def test_the_block_path_keeps_each_buckets_first_last_min_and_max(
        values: list[float], max_points: int, data: st.DataObject) -> None:
    """From block summaries alone, over pieces cut anywhere (as chunk ends, fork and rewind
    caps and step bounds cut them), so blocks come in every size up to ``BLOCK``."""
    series = _series(values)
    n = len(series)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n), max_size=8), label="cuts")) | {n})
    runs = []
    lo = 0
    for hi in cuts:
        runs.append(_blocks_of_points(series.steps, series.values, series.timestamps, lo, hi))
        lo = hi
    small = downsample(None, runs, n, max_points)
    check_downsampled(series, small, max_points, slack=BLOCK)


def test_a_bucket_longer_than_two_blocks_is_not_lost() -> None:
    """Buckets of 256 points or more from the points alone (once read back as nothing)."""
    series = _series([float(i % 7) for i in range(300)])
    small = downsample(series, (), 300, 4)
    assert list(small.steps) == [0, 6, 299]
    check_downsampled(series, small, 4, slack=0)


@pytest.mark.parametrize(("count", "max_points"), [(1_000_000, 4_000), (129_000, 4_000),
                                                   (50_000, 40)])
def test_block_buckets_are_as_many_as_asked(count: int, max_points: int) -> None:
    """A rising series shows two points per bucket, so its length counts the buckets: all
    ``max_points // 4`` of them, even when a bucket is a little over one block (grouping a
    fixed number of whole blocks per bucket gave 977, or half, of them)."""
    series = Series(array("q", range(count)), array("d", range(count)),
                    array("d", range(count)))
    runs = [_blocks_of_points(series.steps, series.values, series.timestamps, 0, count)]
    small = downsample(None, runs, count, max_points)
    assert len(small) == 2 * (max_points // 4)
    check_downsampled(series, small, max_points)


@pytest.mark.parametrize(("count", "max_points"), [(10, 4), (5_000, 40), (70_000, 400),
                                                   (150_000, 4_000), (150_000, 13),
                                                   (40_000, 1_000)])
async def test_downsampled_reads_keep_every_spike(make: MakeTracker, count: int,
                                                  max_points: int) -> None:
    rng = random.Random(count)
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            for step in range(count):
                value = rng.gauss(0, 1)
                if step % 997 == 0:
                    value = math.nan
                elif step % 1_009 == 5:
                    value = -math.inf  # a bucket's min (+inf would hide the spike below)
                if step == count // 3:
                    value = 1e9  # the spike a chart must show
                run.log_metrics({"m": value}, step=step * 2)
        full = await tracker.read_series("r", "m")
        small = await tracker.read_series("r", "m", max_points=max_points)
        check_downsampled(full, small, max_points)
        assert 1e9 in list(small.values)


async def test_downsampling_a_fork_cut_mid_chunk_and_a_step_range(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("parent") as run:
            for step in range(20_000):
                value = math.nan if step % 1_000 == 999 else math.sin(step)
                run.log_metrics({"m": value}, step=step)
        async with tracker.start_run("child", fork=("parent", 9_999)) as run:
            for step in range(10_000, 60_000):
                run.log_metrics({"m": math.cos(step) + (50 if step == 33_333 else 0)}, step=step)
        for low, high in [(None, None), (5_003, None), (None, 41_111), (2_500, 55_555)]:
            full = await tracker.read_series("child", "m", min_step=low, max_step=high)
            expected = [s for s in range(60_000) if (low is None or s >= low)
                        and (high is None or s <= high)]
            assert list(full.steps) == expected
            for max_points in (1_000, 40_000, 4):  # from blocks, from points, one bucket
                small = await tracker.read_series("child", "m", min_step=low, max_step=high,
                                                  max_points=max_points)
                check_downsampled(full, small, max_points)


async def test_downsampling_a_rewound_fork_across_segments(make: MakeTracker) -> None:
    """Segments of three epochs and two runs, each capped, downsampled as one series."""
    async with make() as tracker:
        async with tracker.start_run("p") as run:
            for step in range(9_000):
                run.log_metrics({"m": float(step % 301)}, step=step)
        async with tracker.start_run("c", fork=("p", 6_000)) as run:
            for step in range(6_001, 12_000):
                run.log_metrics({"m": -float(step % 257)}, step=step)
        async with tracker.start_run("c", resume=True, rewind_to=8_500) as run:
            for step in range(8_501, 20_000):
                run.log_metrics({"m": math.inf if step == 15_000 else float(step)}, step=step)
        full = await tracker.read_series("c", "m")
        assert len(full) == 20_000
        for max_points in (400, 4_000, 13):
            small = await tracker.read_series("c", "m", max_points=max_points)
            check_downsampled(full, small, max_points)
            assert math.inf in list(small.values)


async def test_a_fork_never_sees_what_its_parent_logs_or_rewinds_later(
        make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("parent") as run:
            run.log_metrics({"a": 1.0, "b": 1.0}, step=0)
            run.log_metrics({"a": 2.0}, step=100)
            await run.flush()
            # Fork beyond the parent's last points: the child takes what exists now.
            async with tracker.start_run("child", fork=("parent", 200)) as child:
                child.log_metrics({"a": 3.0}, step=201)
            run.log_metrics({"a": 9.0, "b": 9.0}, step=150)  # after the fork
        async with tracker.start_run("parent", resume=True, rewind_to=0):
            pass
        a = await tracker.read_series("child", "a")
        b = await tracker.read_series("child", "b")
        assert list(a.steps) == [0, 100, 201]
        assert list(a.values) == [1.0, 2.0, 3.0]
        assert list(b.steps) == [0]
        state = await tracker.get_run("child")
        assert state.metrics["a"].max == 3.0
        assert state.metrics["b"].count == 1
        parent = await tracker.get_run("parent")
        assert parent.metrics["a"].count == 1


async def test_rewinds_stack_and_may_cut_into_inherited_points(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("p") as run:
            for step in range(10):
                run.log_metrics({"m": float(step)}, step=step)
        async with tracker.start_run("c", fork=("p", 7)) as run:
            for step in range(8, 12):
                run.log_metrics({"m": 10.0 + step}, step=step)
        async with tracker.start_run("c", resume=True, rewind_to=9) as run:
            run.log_metrics({"m": -1.0}, step=10)
        async with tracker.start_run("c", resume=True, rewind_to=5) as run:
            run.log_metrics({"m": -2.0}, step=6)
        series = await tracker.read_series("c", "m")
        assert list(series.steps) == [0, 1, 2, 3, 4, 5, 6]
        assert list(series.values) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, -2.0]
        summary = (await tracker.get_run("c")).metrics["m"]
        assert (summary.count, summary.min, summary.max, summary.last) == (7, -2.0, 5.0, -2.0)
        assert list((await tracker.read_series("p", "m")).steps) == list(range(10))


async def test_float_steps_and_int_steps_read_back_in_one_canonical_form(
        make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({"ints": 1.0, "mixed": 1.0}, step=1)
            run.log_metrics({"ints": 2.0, "mixed": 2.0}, step=2.5)
            run.log_metrics({"ints": 3.0}, step=3.0)
        mixed = await tracker.read_series("r", "mixed")
        assert mixed.steps.typecode == "d"
        assert list(mixed.steps) == [1.0, 2.5]
        async with tracker.start_run("s") as run:
            run.log_metrics({"m": 1.0}, step=1)
            run.log_metrics({"m": 2.0}, step=2.0)
        assert (await tracker.read_series("s", "m")).steps.typecode == "q"


async def test_missing_runs_and_metrics(make: MakeTracker) -> None:
    async with make() as tracker:
        async with tracker.start_run("r"):
            pass
        assert len(await tracker.read_series("r", "never-logged")) == 0
        with pytest.raises(engine.errors.RunNotFoundError):
            await tracker.read_series("nope", "m")
        with pytest.raises(engine.errors.ValidationError, match="max_points"):
            await tracker.read_series("r", "m", max_points=3)


async def test_series_stay_whole_when_the_writer_keeps_fewer_open_chunks_than_it_writes(
        make: MakeTracker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The writer keeps a bounded number of points of open chunks in memory (a server with
    many writers of many metrics would otherwise hold a chunk for each); a series whose
    chunk it let go of is read back when logged again, and loses nothing, across chunks."""
    monkeypatch.setattr(projector, "TAIL_POINTS", 40)
    steps = CHUNK + 300
    async with make() as tracker:
        async with contextlib.AsyncExitStack() as stack:
            runs = [await stack.enter_async_context(tracker.start_run(f"r{i}"))
                    for i in range(3)]
            for start in range(0, steps, 150):  # every run and metric in turn, many commits
                for i, run in enumerate(runs):
                    for step in range(start, min(start + 150, steps)):
                        run.log_metrics({"a": step + i * 0.5, "b": -step - i}, step=step)
                    await run.flush()
        for i in range(3):
            a = await tracker.read_series(f"r{i}", "a")
            b = await tracker.read_series(f"r{i}", "b")
            assert list(a.steps) == list(b.steps) == list(range(steps))
            assert list(a.values) == [step + i * 0.5 for step in range(steps)]
            assert list(b.values) == [float(-step - i) for step in range(steps)]
            summary = (await tracker.get_run(f"r{i}")).metrics["a"]
            assert (summary.count, summary.last) == (steps, steps - 1 + i * 0.5)


def test_the_open_chunks_kept_never_hold_more_points_than_allowed() -> None:
    """Least recently extended first: the tails written last stay."""
    keeper = projector.Projector(io=None)  # type: ignore[arg-type]
    for k in range(10):
        chunk = Chunk(0, 0)
        chunk.extend(array("q", range(k * 10)), array("d", [0.0] * (k * 10)),
                     array("d", [0.0] * (k * 10)), 0)
        keeper.keep_tail((k, "m"), chunk)
    keeper.trim(max_runs=100, max_tail_points=200)
    assert sum(len(c.values) for c in keeper._tails.values()) <= 200
    assert list(keeper._tails) == [(8, "m"), (9, "m")]  # 80 + 90 points; adding 70 would not fit
    chunk = Chunk(0, 0)  # one more after the count: the bound is kept again
    chunk.extend(array("q", range(50)), array("d", [0.0] * 50), array("d", [0.0] * 50), 0)
    keeper.keep_tail((10, "m"), chunk)
    keeper.trim(max_runs=100, max_tail_points=200)
    assert list(keeper._tails) == [(9, "m"), (10, "m")]
