"""``kittiwake tail RUN``: a live view of a run's metrics, until the run ends."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

import engine
from engine._cli.display import fmt
from engine._cli.main import main
from engine._cli.tail import Tail, sparkline, tail
from tests.conftest import MakeTracker


class Screen(io.StringIO):
    """What the view draws; each flush ends a frame."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[str] = []
        self._drawn = 0
        self._frame = anyio.Event()

    def flush(self) -> None:
        text = self.getvalue()
        self.frames.append(text[self._drawn:])
        self._drawn = len(text)
        self._frame.set()
        self._frame = anyio.Event()

    async def frame(self, count: int) -> str:
        """Wait until ``count`` frames are drawn; the last one."""
        while len(self.frames) < count:
            await self._frame.wait()
        return self.frames[-1]


class Ticks:
    """The view's timer in the test's hands: each ``fire()`` lets one tick pass, and
    ``done(n)`` waits until the view has dealt with ``n`` of them."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[None](1)
        self.taken = 0
        self._taken = anyio.Event()

    async def tick(self) -> None:
        self.taken += 1
        self._taken.set()
        self._taken = anyio.Event()
        await self.receive.receive()

    def close(self) -> None:
        self.send.close()
        self.receive.close()

    async def fire(self) -> None:
        taken = self.taken
        await self.send.send(None)
        while self.taken == taken:  # the timer has drawn (or not) and waits for the next
            await self._taken.wait()


async def follow(view: Tail, into: list[str]) -> None:
    into.append(await view.run())


async def test_a_burst_shows_on_the_next_tick_without_waiting_for_more_points(
        make: MakeTracker) -> None:
    async with make() as tracker, tracker.start_run("watched") as run:
        run.log_metrics({"loss": 1.0}, step=0)
        await run.flush()
        screen, ticks = Screen(), Ticks()
        # A clock that never moves: points alone never draw again, only the timer does.
        view = Tail(tracker, "watched", screen, refresh=1.0, clock=lambda: 0.0,
                    tick=ticks.tick)
        ended: list[str] = []
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(follow, view, ended)
                first = await screen.frame(1)
                assert "[running]" in first
                for step in range(1, 6):  # a burst, then nothing
                    run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
                    await run.flush()
                head = [e.position async for e in tracker.events()][-1]
                while view.position < head:
                    await view.progressed()
                assert len(screen.frames) == 1  # taken in, not drawn yet
                await ticks.fire()
                burst = await screen.frame(2)
                assert "[running]" in burst  # drawn while the run goes on
                assert fmt(1.0 / 6) in burst  # the burst's last point, at step 5
                await ticks.fire()  # nothing new: nothing drawn
                assert len(screen.frames) == 2
                tasks.cancel_scope.cancel()
        ticks.close()
        assert ended == []


class Racing:
    """A tracker whose first ``read_series`` finds points logged after ``get_run`` read
    the run: the view seeds its trend from a newer state than it subscribes from."""

    def __init__(self, tracker: engine.Tracker, late: Callable[[], Any]) -> None:
        self._tracker = tracker
        self._late = late

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tracker, name)

    async def read_series(self, *args: Any, **kwargs: Any) -> Any:
        if self._late is not None:
            late, self._late = self._late, None
            await late()
        return await self._tracker.read_series(*args, **kwargs)


async def test_each_point_is_counted_once_in_the_trend(make: MakeTracker) -> None:
    async with make() as tracker:
        ended: list[str] = []
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks, tracker.start_run("r") as run:
                for step in range(10):
                    run.log_metrics({"m": float(step)}, step=step)
                await run.flush()

                async def late() -> None:
                    for step in range(10, 15):
                        run.log_metrics({"m": float(step)}, step=step)
                    await run.flush()

                view = Tail(Racing(tracker, late), "r", io.StringIO())  # type: ignore[arg-type]
                tasks.start_soon(follow, view, ended)
                while view.view is None:
                    await view.progressed()
                for step in range(15, 20):
                    run.log_metrics({"m": float(step)}, step=step)
        assert ended == ["succeeded"]
        assert view.view is not None
        metric = view.view.metrics["m"]
        assert list(metric.trend) == [float(s) for s in range(20)]
        assert (metric.step, metric.last, metric.low, metric.high) == (19, 19.0, 0.0, 19.0)


async def test_a_rewind_while_following_redraws_from_the_rewound_series(
        make: MakeTracker, backend: str) -> None:
    if backend == "sqlite-memory":
        pytest.skip("an in-memory database cannot be shared by two trackers")
    async with make() as tracker, make() as restarted:
        ended: list[str] = []
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks, \
                    tracker.start_run("r") as run:
                for step in range(10):
                    run.log_metrics({"m": float(step)}, step=step)
                await run.flush()
                view = Tail(tracker, "r", io.StringIO())
                tasks.start_soon(follow, view, ended)
                while view.view is None or view.view.metrics["m"].step != 9:
                    await view.progressed()
                # The job restarts elsewhere from its checkpoint at step 4.
                async with restarted.start_run("r", resume=True, rewind_to=4) as again:
                    while view.view.metrics["m"].step != 4:
                        await view.progressed()
                    again.log_metrics({"m": 100.0}, step=5)
        assert ended == ["succeeded"]
        metric = view.view.metrics["m"]
        assert list(metric.trend) == [0.0, 1.0, 2.0, 3.0, 4.0, 100.0]
        assert (metric.step, metric.last, metric.high) == (5, 100.0, 100.0)


async def test_tail_follows_a_run_until_it_ends(make: MakeTracker) -> None:
    async with make() as tracker:
        out = io.StringIO()
        status: list[str] = []

        async def watch() -> None:
            status.append(await tail(tracker, "watched", out))

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks, \
                    tracker.start_run("watched") as run:
                run.log_metrics({"loss": 1.0}, step=0)
                await run.flush()
                tasks.start_soon(watch)
                for step in range(1, 31):
                    run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 30}, step=step)
                    await run.flush()
                await anyio.wait_all_tasks_blocked()
                assert status == []  # still following while the run is running
        assert status == ["succeeded"]
        text = out.getvalue()
        assert "acc" in text
        assert "0.0322581" in text  # the last loss, 1/31
        assert "ended: succeeded" in text


async def fail_run(tracker: engine.Tracker, run_id: str) -> None:
    async with tracker.start_run(run_id) as run:
        run.log_metrics({"loss": 0.5}, step=0)
        raise ZeroDivisionError("division by zero")


async def test_tail_of_a_run_that_already_ended_says_how(make: MakeTracker) -> None:
    async with make() as tracker:
        with pytest.raises(ZeroDivisionError):
            await fail_run(tracker, "done")
        out = io.StringIO()
        with anyio.fail_after(30):
            assert await tail(tracker, "done", out) == "failed"
        text = out.getvalue()
        assert "[failed]" in text
        assert "0.5" in text
        assert text.endswith("run done ended: failed (ZeroDivisionError: division by zero)\n")


def test_sparkline_shows_the_shape() -> None:
    assert sparkline([0.0, 1.0, 2.0, 3.0]) == "▁▃▆█"
    assert sparkline([float("nan"), 1.0]) == " ▁"
    assert sparkline([]) == ""


# The command -----------------------------------------------------------------------------

def test_the_command_shows_an_ended_run_and_gives_up_on_one_that_never_starts(
        file_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    with engine.sync.connect(file_url, durability="normal") as tracker, \
            tracker.start_run("r") as run:
        run.log_metrics({"loss": 0.25}, step=3)
    assert main(["--db", file_url, "tail", "r"]) == 0
    out, _ = capsys.readouterr()
    assert "default/r" in out
    assert "0.25" in out
    assert out.endswith("run r ended: succeeded\n")
    assert main(["--db", file_url, "tail", "nope", "--timeout", "0.3"]) != 0
    out, err = capsys.readouterr()
    assert "waiting for run nope" in out
    assert "nope" in err
    assert len(err.strip().splitlines()) == 1


async def test_the_command_follows_a_run_in_another_process(file_url: str) -> None:
    command = [sys.executable, "-m", "engine._cli.main", "--db", file_url, "tail", "live"]
    async with engine.connect(file_url, durability="normal") as tracker:
        async with tracker.start_run("live") as run:
            run.log_metrics({"loss": 1.0}, step=0)
            await run.flush()
            child = await anyio.open_process(command)
            assert child.stdout is not None
            lines = BufferedByteReceiveStream(child.stdout)
            with anyio.fail_after(30):
                title = await lines.receive_until(b"\n", 1000)
            assert b"default/live" in title
            assert b"[running]" in title
            for step in range(1, 4):
                run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        # The run ended while it was watched.
        rest = b""
        with anyio.fail_after(30):
            while True:
                try:
                    rest += await lines.receive(65536)
                except anyio.EndOfStream:
                    break
            assert await child.wait() == 0
        await child.aclose()
    text = rest.decode()
    assert "0.25" in text  # the last loss, 1/4
    assert "[succeeded]" in text
    assert text.endswith("run live ended: succeeded\n")
