"""Time travel beyond one run: every read takes ``as_of`` — a position or a datetime — and
answers as the log stood then, whatever happened since."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from engine import ForkPoint, Status, Tracker
from engine.errors import RunNotFoundError, ValidationError
from tests.conftest import MakeTracker
from tests.runtime.test_lifecycle import FakeClock


async def history(tracker: Tracker, clock: FakeClock) -> dict[str, int]:
    """A small history whose interesting positions are returned by name."""
    marks: dict[str, int] = {}
    async with tracker.start_run("a", experiment="exp", config={"lr": 0.1}) as run:
        for step in range(5):
            run.log_metrics({"loss": 1.0 - step / 10}, step=step)
    marks["a_done"] = (await tracker.get_run("a")).position
    clock.now += 100
    async with tracker.start_run("b", experiment="exp", fork=("a", 2),
                                 config={"lr": 0.01}) as run:
        run.log_metrics({"loss": 0.2}, step=3)
    marks["b_done"] = (await tracker.get_run("b")).position
    clock.now += 100
    async with tracker.start_run("a", resume=True, rewind_to=1) as run:
        run.log_metrics({"loss": 0.05}, step=2)
    await tracker.delete_run("b")
    marks["end"] = (await tracker.get_run("a")).position
    return marks


async def test_every_read_answers_as_of_a_position(make: MakeTracker) -> None:
    clock = FakeClock()
    async with make(clock=clock) as tracker:
        marks = await history(tracker, clock)
        then = marks["b_done"]
        # The runs table: b was alive, a had not been rewound, both succeeded.
        runs = await tracker.list_runs(order_by="config.lr", as_of=then)
        assert [r.run_id for r in runs] == ["b", "a"]
        assert [r.run_id for r in await tracker.list_runs(as_of=marks["a_done"])] == ["a"]
        assert [r.run_id for r in await tracker.list_runs()] == ["a"]  # b deleted since
        low = await tracker.list_runs("metrics.loss.min < 0.7", as_of=then)
        assert [r.run_id for r in low] == ["a", "b"]
        assert await tracker.list_runs("metrics.loss.min < 0.7", as_of=marks["a_done"]) != []
        # Series: a's five points then, its rewound series now.
        series = await tracker.read_series("a", "loss", as_of=then)
        assert series.steps.tolist() == [0, 1, 2, 3, 4]
        assert (await tracker.read_series("a", "loss")).steps.tolist() == [0, 1, 2]
        assert (await tracker.read_series("b", "loss", as_of=then)).steps.tolist() == \
            [0, 1, 2, 3]
        part = await tracker.read_series("a", "loss", as_of=then, min_step=1, max_step=3)
        assert part.steps.tolist() == [1, 2, 3]
        chart = await tracker.read_series("a", "loss", as_of=then, max_points=4)
        assert len(chart) <= 4
        assert chart.steps[0] == 0
        assert chart.steps[-1] == 4
        # The experiment's head and the lineage, then and now.
        assert (await tracker.get_experiment("exp", as_of=then)).head == "b"
        assert (await tracker.get_experiment("exp")).head == "a"
        assert (await tracker.lineage("a", as_of=then)).children == (ForkPoint("b", 2),)
        assert (await tracker.lineage("a", as_of=marks["a_done"])).children == ()
        # Groups and the flat table.
        groups = await tracker.group_runs("status", as_of=then)
        assert [(g.key["status"], g.count) for g in groups] == [("succeeded", 2)]
        table = await tracker.fetch_runs_table(columns="run_id, config.lr", as_of=then,
                                               order_by="run_id")
        assert table.rows == (("a", 0.1), ("b", 0.01))
        with pytest.raises(RunNotFoundError):
            await tracker.read_series("b", "loss", as_of=marks["a_done"])
        with pytest.raises(RunNotFoundError):
            await tracker.lineage("b", as_of=marks["a_done"])


async def test_as_of_takes_a_datetime(make: MakeTracker) -> None:
    clock = FakeClock()
    start = clock.now
    async with make(clock=clock) as tracker:
        marks = await history(tracker, clock)
        at_first = datetime.fromtimestamp(start + 50, UTC)  # after a, before b
        assert [r.run_id for r in await tracker.list_runs(as_of=at_first)] == ["a"]
        naive = at_first.replace(tzinfo=None)  # naive means UTC, as in queries
        assert [r.run_id for r in await tracker.list_runs(as_of=naive)] == ["a"]
        elsewhere = at_first.astimezone(timezone(timedelta(hours=5)))
        assert (await tracker.get_run("a", as_of=elsewhere)).position == marks["a_done"]
        before_anything = datetime.fromtimestamp(start - 1, UTC)
        assert await tracker.list_runs(as_of=before_anything) == []
        with pytest.raises(RunNotFoundError):
            await tracker.get_run("a", as_of=before_anything)
        later = datetime.fromtimestamp(start + 150, UTC)
        assert (await tracker.get_run("b", as_of=later)).status is Status.SUCCEEDED


@pytest.mark.parametrize("bad", [-1, 1.5, "yesterday", True, 2**63])
async def test_a_bad_as_of_is_refused_by_name(make: MakeTracker, bad: object) -> None:
    async with make() as tracker:
        async with tracker.start_run("a"):
            pass
        for read in (tracker.list_runs(as_of=bad), tracker.get_run("a", as_of=bad),  # type: ignore[arg-type]
                     tracker.get_experiment("e", as_of=bad),  # type: ignore[arg-type]
                     tracker.read_series("a", "m", as_of=bad),  # type: ignore[arg-type]
                     tracker.group_runs("status", as_of=bad),  # type: ignore[arg-type]
                     tracker.fetch_runs_table(as_of=bad),  # type: ignore[arg-type]
                     tracker.lineage("a", as_of=bad)):  # type: ignore[arg-type]
            with pytest.raises(ValidationError) as caught:
                await read
            assert caught.value.key == "as_of"
