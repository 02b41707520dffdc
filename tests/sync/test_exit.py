"""What notebook and script users meet first: ``engine.sync.init`` without a ``with`` block,
and a process that exits with trackers and runs still open — promptly, with everything it
accepted written, and its runs ended as the interpreter's exit says."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import engine
from engine import Status
from engine._runtime.output import SUPPORTED
from engine.errors import RunAbortedError
from tests.conftest import in_thread

PROMPTLY = 60  # seconds: a hang shows as a timeout, not a slow pass


def script(code: str, *, cwd: Path, env: dict[str, str] | None = None,
           expect: int = 0) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=PROMPTLY,
                          env={**os.environ, **(env or {})})
    assert done.returncode == expect, done.stderr
    return done


def state(db: Path, run_id: str) -> engine.RunState:
    with engine.sync.connect(str(db)) as tracker:
        return tracker.get_run(run_id)


def test_init_log_finish(tmp_path: Path) -> None:
    script("""
        import engine
        run = engine.sync.init("runs.db", run_id="nb", config={"lr": 0.1}, tags=("first",))
        for step in range(50):
            run.log_metrics({"loss": 1 / (step + 1)}, step=step)
        run.finish()
        run.finish()  # a second finish does nothing
    """, cwd=tmp_path)
    done = state(tmp_path / "runs.db", "nb")
    assert done.status is Status.SUCCEEDED
    assert done.config == {"lr": 0.1}
    assert done.metrics["loss"].count == 50


def test_a_notebook_session_records_what_a_blocking_run_captures(tmp_path: Path) -> None:
    """A notebook kernel runs each cell on its event loop: ``init`` in one cell, with the
    options ``start_run`` takes, output and logging in the next, ``finish`` in a last."""
    (tmp_path / "prep.py").write_text("def clean(rows): ...\n")
    script("""
        import asyncio, subprocess, sys
        import engine

        async def kernel():
            run = engine.sync.init("runs.db", run_id="nb", notes="warmup 500 steps",
                                   capture_source=["*.py"], system_metrics_interval=1)
            await asyncio.sleep(0)  # the next cell
            print("epoch 0: loss 0.5", flush=True)
            subprocess.run([sys.executable, "-c", "print('from a data loader')"], check=True)
            run.log_metrics({"loss": 0.5}, step=0)
            run.set_notes("warmup 500 steps helped")
            await asyncio.sleep(1.3)  # one sample of the machine
            run.finish()

        asyncio.run(kernel())
    """, cwd=tmp_path, env={"KITTIWAKE_CAPTURE": "on"})
    with engine.sync.connect(str(tmp_path / "runs.db")) as tracker:
        state = tracker.get_run("nb")
        assert state.status is Status.SUCCEEDED
        assert state.notes == "warmup 500 steps helped"
        assert tracker.read_text("nb", "logs/stdout").values == ["epoch 0: loss 0.5",
                                                                "from a data loader"]
        assert tracker.read_file(state.files["source/prep.py"]) == b"def clean(rows): ...\n"
        assert "host/name" in state.env
        assert "system/cpu/percent" in state.metrics


def test_a_run_never_finished_ends_succeeded_at_exit_with_every_point(tmp_path: Path) -> None:
    script("""
        import engine
        run = engine.sync.init("runs.db", run_id="left")
        for step in range(1000):
            run.log_metrics({"loss": float(step)}, step=step)
    """, cwd=tmp_path)
    left = state(tmp_path / "runs.db", "left")
    assert left.status is Status.SUCCEEDED
    assert left.metrics["loss"].count == 1000


def test_an_uncaught_exception_ends_the_run_failed_with_it(tmp_path: Path) -> None:
    done = script("""
        import engine
        run = engine.sync.init("runs.db", run_id="boom")
        run.log_metrics({"loss": 0.5}, step=0)
        raise ValueError("diverged at step 1")
    """, cwd=tmp_path, expect=1)
    assert "ValueError: diverged at step 1" in done.stderr  # the traceback still shows
    failed = state(tmp_path / "runs.db", "boom")
    assert (failed.status, failed.status_reason) == (Status.FAILED,
                                                     "ValueError: diverged at step 1")
    assert failed.metrics["loss"].count == 1


def test_a_keyboard_interrupt_ends_the_run_aborted(tmp_path: Path) -> None:
    script("""
        import engine
        run = engine.sync.init("runs.db", run_id="stopped")
        raise KeyboardInterrupt
    """, cwd=tmp_path, expect=-2)  # Python exits as killed by SIGINT
    assert state(tmp_path / "runs.db", "stopped").status is Status.ABORTED


def test_a_tracker_never_closed_does_not_hang_exit_and_keeps_its_points(tmp_path: Path) -> None:
    script("""
        import engine
        tracker = engine.sync.connect("h.db").__enter__()
        run = tracker.start_run("x").__enter__()
        for step in range(100):
            run.log_metrics({"m": float(step)}, step=step)
        engine.sync.connect("other.db").__enter__()  # dropped at once, never closed
    """, cwd=tmp_path)
    x = state(tmp_path / "h.db", "x")
    assert x.metrics["m"].count == 100
    assert x.status is Status.SUCCEEDED


def test_the_environment_names_the_database_project_and_run(tmp_path: Path) -> None:
    db = tmp_path / "job.db"
    with engine.sync.connect(str(db), project="team") as tracker, tracker.start_run("job-7"):
        pass
    script("""
        import engine
        run = engine.sync.init()
        run.log_metrics({"score": 0.9}, step=0)
        run.finish()
    """, cwd=tmp_path, env={"KITTIWAKE_DB": str(db), "KITTIWAKE_PROJECT": "team",
                            "KITTIWAKE_RUN_ID": "job-7"})
    with engine.sync.connect(str(db), project="team") as tracker:
        assert tracker.get_run("job-7").metrics["score"].last == 0.9


def test_finish_honours_an_abort_and_takes_a_status(file_url: str) -> None:
    def work() -> None:
        run = engine.sync.init(file_url, run_id="a")
        with engine.sync.connect(file_url) as elsewhere:
            elsewhere.abort_run("a", reason="preempted")
        with pytest.raises(RunAbortedError):  # noqa: PT012 (logging until the abort lands)
            for step in range(100_000):
                run.log_metrics({"m": 1.0}, step=step)
                run.flush()
        run.finish()
        failed = engine.sync.init(file_url, run_id="b")
        failed.finish("failed", "bad data")

    in_thread(work)
    with engine.sync.connect(file_url) as tracker:
        assert (tracker.get_run("a").status, tracker.get_run("a").status_reason) == \
            (Status.ABORTED, "preempted")
        assert tracker.get_run("b").status_reason == "bad data"
        assert tracker.get_run("b").status is Status.FAILED


needs_capture = pytest.mark.skipif(not SUPPORTED, reason="fd capture is POSIX only")


@needs_capture
def test_a_notebook_cell_run_again_starts_a_second_run_beside_the_first(tmp_path: Path) -> None:
    """Output is captured by default in blocking code, and the process's descriptors can be
    captured for one run at a time: the second run starts all the same, without the output,
    and a warning names both runs."""
    done = script("""
        import engine
        run = engine.sync.init("runs.db", run_id="first")
        print("first cell", flush=True)
        run = engine.sync.init("runs.db", run_id="again")  # the cell, run again
        print("second cell", flush=True)
        run.log_metrics({"loss": 0.5}, step=0)
    """, cwd=tmp_path, env={"KITTIWAKE_CAPTURE": "on"})
    warning = ("run 'again' does not record its output: this process's stdout and stderr are "
               "being captured for run 'first' already")
    assert warning in done.stderr
    assert "RuntimeError" not in done.stderr
    with engine.sync.connect(str(tmp_path / "runs.db")) as tracker:
        first, again = tracker.get_run("first"), tracker.get_run("again")
        assert (first.status, first.status_reason) == (Status.SUCCEEDED, None)
        assert (again.status, again.status_reason) == (Status.SUCCEEDED, None)
        assert again.metrics["loss"].count == 1
        assert tracker.read_text("first", "logs/stdout").values == ["first cell",
                                                                    "second cell"]
        assert warning in "\n".join(tracker.read_text("first", "logs/stderr").values)
        assert tracker.read_text("again", "logs/stdout").values == []


@needs_capture
def test_a_nested_blocking_run_starts_without_the_output(tmp_path: Path) -> None:
    done = script("""
        import engine
        with engine.sync.connect("runs.db") as tracker:
            with tracker.start_run("outer") as outer:
                print("outer starts", flush=True)
                with tracker.start_run("inner") as inner:
                    print("inner trains", flush=True)
                    inner.log_metrics({"loss": 0.5}, step=0)
                print("outer ends", flush=True)
    """, cwd=tmp_path, env={"KITTIWAKE_CAPTURE": "on"})
    assert "run 'inner' does not record its output" in done.stderr
    assert "for run 'outer' already" in done.stderr
    with engine.sync.connect(str(tmp_path / "runs.db")) as tracker:
        assert tracker.get_run("outer").status is Status.SUCCEEDED
        inner = tracker.get_run("inner")
        assert inner.status is Status.SUCCEEDED
        assert inner.metrics["loss"].count == 1
        assert tracker.read_text("outer", "logs/stdout").values == [
            "outer starts", "inner trains", "outer ends"]
        assert tracker.read_text("inner", "logs/stdout").values == []


@pytest.mark.parametrize(("code", "status", "reason"), [
    ("3", Status.FAILED, "SystemExit: exit code 3"),
    ("'no data'", Status.FAILED, "SystemExit: exit code 1: no data"),
    ("0", Status.SUCCEEDED, None),
    ("", Status.SUCCEEDED, None),
])
def test_sys_exit_in_a_runs_block_ends_it_as_the_exit_code_says(
        tmp_path: Path, code: str, status: Status, reason: str | None) -> None:
    """As W&B does: a non-zero exit code is a failure, zero a success."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import sys, engine
        with engine.sync.connect("runs.db") as tracker:
            with tracker.start_run("r") as run:
                run.log_metrics({{"loss": 0.5}}, step=0)
                sys.exit({code})
    """)], cwd=tmp_path, capture_output=True, text=True, timeout=PROMPTLY)
    assert done.returncode == (1 if code.startswith("'") else int(code or 0)), done.stderr
    ended = state(tmp_path / "runs.db", "r")
    assert (ended.status, ended.status_reason) == (status, reason)
    assert ended.metrics["loss"].count == 1


def test_sys_exit_at_top_level_is_not_seen_and_the_open_run_ends_succeeded(
        tmp_path: Path) -> None:
    """A ``sys.exit`` outside any block of the run reaches neither ``sys.excepthook`` nor
    anything else Python lets a library see (only a wrapper of ``sys.exit`` would, which
    Kittiwake does not install): the run of ``engine.sync.init`` still open ends
    ``succeeded``, with everything it logged; the exit code is the script's."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys, engine
        run = engine.sync.init("runs.db", run_id="r")
        run.log_metrics({"loss": 0.5}, step=0)
        sys.exit(3)
    """)], cwd=tmp_path, capture_output=True, text=True, timeout=PROMPTLY)
    assert done.returncode == 3, done.stderr
    ended = state(tmp_path / "runs.db", "r")
    assert (ended.status, ended.status_reason) == (Status.SUCCEEDED, None)
    assert ended.metrics["loss"].count == 1


def test_an_abort_of_an_init_run_ends_the_script_at_its_next_logging_call(
        tmp_path: Path) -> None:
    """Without a block to end, the abort is raised by the next logging call: uncaught, it
    ends the script (exit code 1, its traceback shown), and the run ends ``aborted`` with
    the abort's reason; caught, the script goes on and ``finish()`` ends it so."""
    done = script("""
        import engine
        run = engine.sync.init("runs.db", run_id="r")
        with engine.sync.connect("runs.db") as elsewhere:
            elsewhere.abort_run("r", reason="preempted")
        for step in range(100_000):
            run.log_metrics({"loss": 0.5}, step=step)
            run.flush()
        print("not reached")
    """, cwd=tmp_path, expect=1)
    assert "RunAbortedError" in done.stderr
    assert "not reached" not in done.stdout
    ended = state(tmp_path / "runs.db", "r")
    assert (ended.status, ended.status_reason) == (Status.ABORTED, "preempted")


def test_sys_exit_0_on_an_abort_still_ends_the_run_aborted(tmp_path: Path) -> None:
    """A script that exits cleanly when asked to stop (a SIGTERM handler, say) was aborted,
    not successful."""
    script("""
        import sys, time, engine
        with engine.sync.connect("runs.db") as tracker:
            with tracker.start_run("r") as run:
                tracker.abort_run("r", reason="preempted")
                while not run.abort_requested:
                    time.sleep(0.01)
                sys.exit(0)
    """, cwd=tmp_path)
    ended = state(tmp_path / "runs.db", "r")
    assert (ended.status, ended.status_reason) == (Status.ABORTED, "preempted")
