"""Series reads: forks, rewinds, step ranges, and downsampling that never hides a spike."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine
from engine._model import Series
from engine._series import downsample
from tests.conftest import MakeTracker
from tests.strategies import floats


def _points(series: Series) -> list[tuple[Any, float, float]]:
    return list(series)


def _key(value: float) -> tuple[bool, float]:
    return (math.isnan(value), 0.0 if math.isnan(value) else value)


def check_downsampled(full: Series, small: Series, max_points: int) -> None:
    """The promises of ``max_points``: few points, real ones, in order, spikes kept."""
    assert len(small) <= max_points
    original = {(s, v if v == v else "nan", t) for s, v, t in full}
    assert all((s, v if v == v else "nan", t) in original for s, v, t in small)
    steps = list(small.steps)
    assert steps == sorted(set(steps))
    if len(full):
        assert small.steps[0] == full.steps[0]
        assert small.steps[-1] == full.steps[-1]
        finite = [v for v in full.values if v == v]
        kept = [v for v in small.values if v == v]
        if finite:
            assert min(finite) in kept
            assert max(finite) in kept


@given(values=st.lists(floats, min_size=1, max_size=400), max_points=st.integers(4, 60))
def test_downsampling_points_keeps_first_last_min_max(values: list[float],
                                                      max_points: int) -> None:
    from array import array

    series = Series(array("q", range(len(values))), array("d", values),
                    array("d", [float(i) for i in range(len(values))]))
    small = downsample(series, (), len(series), max_points)
    if len(series) > max_points:
        check_downsampled(series, small, max_points)


@pytest.mark.parametrize(("count", "max_points"), [(10, 4), (5_000, 40), (70_000, 400),
                                                   (150_000, 4_000), (150_000, 13)])
async def test_downsampled_reads_keep_every_spike(make: MakeTracker, count: int,
                                                  max_points: int) -> None:
    rng = random.Random(count)
    async with make() as tracker:
        async with tracker.start_run("r") as run:
            for step in range(count):
                value = rng.gauss(0, 1)
                if step % 997 == 0:
                    value = math.nan
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
                run.log_metrics({"m": math.sin(step)}, step=step)
        async with tracker.start_run("child", fork=("parent", 9_999)) as run:
            for step in range(10_000, 60_000):
                run.log_metrics({"m": math.cos(step) + (50 if step == 33_333 else 0)}, step=step)
        for low, high in [(None, None), (5_003, None), (None, 41_111), (2_500, 55_555)]:
            full = await tracker.read_series("child", "m", min_step=low, max_step=high)
            expected = [s for s in range(60_000) if (low is None or s >= low)
                        and (high is None or s <= high)]
            assert list(full.steps) == expected
            small = await tracker.read_series("child", "m", min_step=low, max_step=high,
                                              max_points=1_000)
            check_downsampled(full, small, 1_000)


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
