"""``engine.init`` in async code: a run without a block, finished from any task or notebook
cell, and what an event loop shutting down does to runs and trackers left open."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

import engine
from engine import Status
from engine._runtime.output import SUPPORTED
from engine.errors import ValidationError
from tests.conftest import MakeTracker

PROMPTLY = 60


def script(code: str, *, cwd: Path, expect: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=PROMPTLY, env=os.environ)
    assert done.returncode == expect, done.stderr
    return done


async def state(db: Path, run_id: str) -> engine.RunState:
    async with engine.connect(str(db)) as tracker:
        return await tracker.get_run(run_id)


async def test_init_then_finish_from_another_task(file_url: str) -> None:
    run = await engine.init(file_url, run_id="cell", config={"lr": 0.1})
    run.log_metrics({"loss": 0.5}, step=0)

    async def later_cell() -> None:  # a notebook runs each cell in a task of its own
        run.log_metrics({"loss": 0.25}, step=1)
        await run.finish()

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(later_cell)
    async with engine.connect(file_url) as tracker:
        done = await tracker.get_run("cell")
    assert done.status is Status.SUCCEEDED
    assert done.metrics["loss"].count == 2


async def test_an_aborted_init_run_finishes_aborted(file_url: str, make: MakeTracker) -> None:
    run = await engine.init(file_url, run_id="a")
    async with engine.connect(file_url) as elsewhere:
        await elsewhere.abort_run("a", reason="stop")
    with anyio.fail_after(20):
        while not run.abort_requested:
            run.log_metrics({"m": 1.0})
            await anyio.sleep(0.01)
    await run.finish()
    async with engine.connect(file_url) as tracker:
        assert (await tracker.get_run("a")).status is Status.ABORTED


def test_a_run_never_finished_ends_with_the_loop(tmp_path: Path) -> None:
    script("""
        import asyncio, engine
        async def main():
            run = await engine.init("runs.db", run_id="left")
            for step in range(500):
                run.log_metrics({"loss": float(step)}, step=step)
        asyncio.run(main())
    """, cwd=tmp_path)
    left = anyio.run(state, tmp_path / "runs.db", "left")
    assert left.status is Status.SUCCEEDED
    assert left.metrics["loss"].count == 500


def test_a_loop_ending_on_an_exception_fails_the_run(tmp_path: Path) -> None:
    script("""
        import asyncio, engine
        async def main():
            run = await engine.init("runs.db", run_id="boom")
            run.log_metrics({"loss": 0.5}, step=0)
            raise RuntimeError("out of memory")
        asyncio.run(main())
    """, cwd=tmp_path, expect=1)
    failed = anyio.run(state, tmp_path / "runs.db", "boom")
    assert (failed.status, failed.status_reason) == (Status.FAILED,
                                                     "RuntimeError: out of memory")


def test_an_abandoned_tracker_keeps_its_points_and_does_not_hang(tmp_path: Path) -> None:
    script("""
        import asyncio, engine
        async def main():
            tracker = await engine.connect("h.db").__aenter__()
            run = await tracker.start_run("x").__aenter__()
            for step in range(100):
                run.log_metrics({"m": float(step)}, step=step)
        asyncio.run(main())
    """, cwd=tmp_path)
    x = anyio.run(state, tmp_path / "h.db", "x")
    assert x.metrics["m"].count == 100
    assert (x.status, x.status_reason) == (Status.CRASHED,
                                           "the process exited with the run open")


ON_DISK = ["sqlite-file", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.skipif(not SUPPORTED, reason="fd capture is POSIX only")
@pytest.mark.parametrize("backend", ON_DISK)
async def test_init_takes_start_runs_options(db_url: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A notebook starts its run with ``init`` in one cell, with the options a block would
    take, and finishes it cells later."""
    (tmp_path / "prep.py").write_text("def clean(rows): ...\n")
    monkeypatch.chdir(tmp_path)
    run = await engine.init(db_url, run_id="nb", notes="warmup 500 steps", tags="baseline",
                            capture_output=True, capture_env=True, capture_source=["*.py"],
                            system_metrics=True, system_metrics_interval=1,
                            durability="normal")

    async def later_cell() -> None:
        os.write(1, b"epoch 0 done\n")  # pytest's sys.stdout is not fd 1
        run.log_metrics({"loss": 0.5}, step=0)
        await anyio.sleep(1.3)  # one sample of the machine
        await run.finish()

    async with anyio.create_task_group() as cells:
        cells.start_soon(later_cell)
    async with engine.connect(db_url) as tracker:
        state = await tracker.get_run("nb")
        out = await tracker.read_text("nb", "logs/stdout")
        source = await tracker.read_file(state.files["source/prep.py"])
    assert state.status is Status.SUCCEEDED
    assert (state.notes, state.tags) == ("warmup 500 steps", frozenset({"baseline"}))
    assert out.values == ["epoch 0 done"]
    assert state.env["pid"] == os.getpid()
    assert source == b"def clean(rows): ...\n"
    assert "system/cpu/percent" in state.metrics
    assert state.metrics["loss"].last_step == 0


@pytest.mark.parametrize("backend", ON_DISK)
async def test_init_captures_neither_output_nor_the_machine_unless_asked(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KITTIWAKE_CAPTURE", "on")  # the defaults themselves, not the suite's
    run = await engine.init(db_url, run_id="plain", capture_source=False)
    os.write(1, b"not recorded\n")
    await run.finish()
    async with engine.connect(db_url) as tracker:
        state = await tracker.get_run("plain")
        assert len(await tracker.read_text("plain", "logs/stdout")) == 0
    assert "host/name" in state.env  # the environment is on by default
    assert not any(name.startswith("system/") for name in state.metrics)


@pytest.mark.parametrize(("options", "key"), [
    ({"notes": 3}, "notes"),
    ({"capture_output": "yes"}, "capture_output"),
    ({"capture_source": ["/etc/*"]}, "capture_source"),
    ({"system_metrics_interval": 0.1}, "system_metrics_interval"),
])
async def test_a_bad_run_option_to_init_names_it_and_writes_nothing(
        file_url: str, options: dict[str, object], key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        await engine.init(file_url, run_id="bad", **options)  # type: ignore[arg-type]
    assert caught.value.key == key
    async with engine.connect(file_url) as tracker:
        assert await tracker.list_runs() == []


# What a script opens and never closes, two ways: the tracker itself, and ``engine.init``.
OPENED = {
    "tracker": """
        async def main():
            tracker = await engine.connect(URL).__aenter__()
            run = await tracker.start_run(RUN).__aenter__()
            for step in range(100):
                run.log_metrics({"m": float(step)}, step=step)
    """,
    "init": """
        async def main():
            run = await engine.init(URL, run_id=RUN)
            for step in range(100):
                run.log_metrics({"m": float(step)}, step=step)
    """,
}


def left_open(url: str, run_id: str, opened: str, ending: str, *,
              cwd: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a script that leaves a tracker open when ``ending`` ends its event loop; how it
    exited, and in how many seconds."""
    code = (f"import asyncio, engine\nURL, RUN = {url!r}, {run_id!r}\n"
            f"{textwrap.dedent(opened)}\n{textwrap.dedent(ending)}")
    began = time.monotonic()
    done = script(code, cwd=cwd)
    return done, time.monotonic() - began


async def states(url: str, *run_ids: str) -> list[engine.RunState]:
    async with engine.connect(url) as tracker:
        return [await tracker.get_run(run_id) for run_id in run_ids]


@pytest.mark.parametrize("backend", ON_DISK)
@pytest.mark.parametrize("opened", sorted(OPENED))
def test_a_loop_run_by_hand_and_left_open_ends_as_asyncio_run_would(
        db_url: str, tmp_path: Path, opened: str) -> None:
    """``loop.run_until_complete(main())`` without ``asyncio.run``: the tracker's tasks are
    cancelled at exit as ``asyncio.run`` would have, so exit is prompt, every point is
    written, and the run ends as it does there."""
    left_open(db_url, "by-asyncio-run", OPENED[opened], "asyncio.run(main())", cwd=tmp_path)
    done, seconds = left_open(db_url, "by-hand", OPENED[opened],
                              "loop = asyncio.new_event_loop()\n"
                              "loop.run_until_complete(main())", cwd=tmp_path)
    assert seconds < PROMPTLY / 2
    assert "kittiwake" not in done.stderr
    by_asyncio_run, by_hand = anyio.run(states, db_url, "by-asyncio-run", "by-hand")
    assert by_hand.metrics["m"].count == 100
    assert (by_hand.status, by_hand.status_reason) == (by_asyncio_run.status,
                                                       by_asyncio_run.status_reason)
    expected = Status.SUCCEEDED if opened == "init" else Status.CRASHED
    assert by_hand.status is expected


@pytest.mark.parametrize("backend", ON_DISK)
@pytest.mark.parametrize("opened", sorted(OPENED))
def test_a_loop_closed_under_an_open_tracker_exits_promptly_and_says_what_was_lost(
        db_url: str, tmp_path: Path, opened: str) -> None:
    """Nothing runs on a closed loop, so nothing more is written: the exit is prompt all the
    same, and a warning says how much was not written and why."""
    done, seconds = left_open(db_url, "closed", OPENED[opened],
                              "loop = asyncio.new_event_loop()\n"
                              "loop.run_until_complete(main())\nloop.close()", cwd=tmp_path)
    assert seconds < PROMPTLY / 2
    assert ("was still open when its event loop was closed, so nothing more could be "
            "written through it: 100 buffered values") in done.stderr
    assert "from 100 logging calls of 'closed' were not written" in done.stderr
    (closed,) = anyio.run(states, db_url, "closed")
    assert closed.status is Status.RUNNING  # until a reaper marks it crashed
    assert "m" not in closed.metrics


@pytest.mark.parametrize(("code", "status", "reason"), [
    (3, Status.FAILED, "SystemExit: exit code 3"),
    (0, Status.SUCCEEDED, None),
])
def test_sys_exit_under_asyncio_run_ends_an_init_run_as_the_exit_code_says(
        tmp_path: Path, code: int, status: Status, reason: str | None) -> None:
    script(f"""
        import asyncio, sys, engine
        async def main():
            run = await engine.init("runs.db", run_id="r")
            run.log_metrics({{"loss": 0.5}}, step=0)
            sys.exit({code})
        asyncio.run(main())
    """, cwd=tmp_path, expect=code)
    ended = anyio.run(state, tmp_path / "runs.db", "r")
    assert (ended.status, ended.status_reason) == (status, reason)
    assert ended.metrics["loss"].count == 1
