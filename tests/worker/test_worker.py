"""``Worker`` and ``kittiwake worker``: jobs run in process groups of their own, attached to
their runs; exit codes, aborts (SIGTERM, then SIGKILL after the grace period), a worker told
to stop, and a worker that dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

import engine
from engine import Status
from engine._jobs.worker import Worker
from tests.conftest import MakeTracker
from tests.runtime.test_lifecycle import _wait_until, needs_shared_database


def _script(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def _ended(tracker: engine.Tracker, *run_ids: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        states = [await tracker.get_run(r) for r in run_ids]
        return all(s.status.terminal for s in states)

    return check


@asynccontextmanager
async def _working(tracker: engine.Tracker, url: str, **options: object) -> AsyncIterator[Worker]:
    worker = Worker(tracker, url, queues=["default"], **options)  # type: ignore[arg-type]
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(worker.run)
        try:
            yield worker
        finally:
            worker.stop()


@pytest.fixture
def shared(backend: str, db_url: str) -> str:
    needs_shared_database(backend)
    return db_url


_ATTACHED = """
    import os, sys, engine
    print("pid", os.getpid(), "group", os.getpgid(0))
    with engine.sync.connect() as tracker:
        with tracker.start_run() as run:
            for step in range(20):
                run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    print("progress 10%\\rprogress 100%")
    print("warning: done", file=sys.stderr)
"""

_FAILS_ITSELF = """
    import engine
    run = engine.sync.init()  # ended at exit: failed, with the uncaught exception
    run.log_metrics({"loss": 1.0}, step=0)
    raise ValueError("bad batch")
"""


async def test_jobs_attach_to_their_runs_and_their_exit_codes_end_them(
        make: MakeTracker, shared: str, tmp_path: Path) -> None:
    async with make() as tracker:
        attached = await tracker.enqueue(_script(_ATTACHED), config={"lr": 0.1},
                                         experiment="e")
        exits = await tracker.enqueue(_script("import sys; sys.exit(3)"))
        fails = await tracker.enqueue(_script(_FAILS_ITSELF))
        missing = await tracker.enqueue([str(tmp_path / "no-such-program")])
        signalled = await tracker.enqueue(_script(
            "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))
        async with _working(tracker, shared, slots=2):
            await _wait_until(_ended(tracker, attached, exits, fails, missing, signalled),
                              "every job to end")
        state = await tracker.get_run(attached)
        assert (state.status, state.status_reason) == (Status.SUCCEEDED, None)
        assert state.metrics["loss"].count == 20
        assert state.config == {"lr": 0.1}
        assert state.experiment == "e"
        assert (await tracker.get_run(exits)).status_reason == "exit code 3"
        assert (await tracker.get_run(exits)).status is Status.FAILED
        # The script's own ending stands: the worker does not overwrite it.
        failed = await tracker.get_run(fails)
        assert (failed.status, failed.status_reason) == (Status.FAILED, "ValueError: bad batch")
        assert failed.metrics["loss"].count == 1
        gone = await tracker.get_run(missing)
        assert gone.status is Status.FAILED
        assert gone.status_reason is not None
        assert "cannot start" in gone.status_reason
        assert (await tracker.get_run(signalled)).status_reason == "killed by SIGKILL"
        job = await tracker.get_job(attached)
        assert job is not None
        assert job.attempt == 1
        assert job.worker is not None
        out = await tracker.read_text(attached, "logs/stdout")
        pid, group = out.values[0].split()[1::2]
        assert pid == group  # the leader of a process group of its own
        assert out.values[1:] == ["progress 100%"]  # its final form, and nothing twice
        assert out.steps == [0, 1]
        assert (await tracker.read_text(attached, "logs/stderr")).values == ["warning: done"]
        traceback = (await tracker.read_text(fails, "logs/stderr")).values
        assert traceback[-1] == "ValueError: bad batch"


_STUBBORN = """
    import os, signal, subprocess, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "60"])
    with open(sys.argv[1], "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
"""

_POLITE = """
    import signal, sys, time
    def stop(*_):
        open(sys.argv[1], "w").write("SIGTERM")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    open(sys.argv[1] + ".ready", "w").close()
    time.sleep(60)
"""


def _exists(path: Path) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await anyio.Path(path).exists()

    return check


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not alive
        return stat.read().split(")")[-1].split()[0] != "Z"


async def test_an_abort_stops_the_job_group_with_sigterm_then_sigkill(
        make: MakeTracker, shared: str, tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    polite_mark = tmp_path / "polite"
    async with make() as tracker:
        stubborn = await tracker.enqueue([*_script(_STUBBORN), str(child_pid)])
        polite = await tracker.enqueue([*_script(_POLITE), str(polite_mark)])
        async with _working(tracker, shared, slots=2, grace=0.5):
            await _wait_until(_exists(child_pid), "the stubborn job to start its child")
            await _wait_until(_exists(Path(f"{polite_mark}.ready")), "the polite job")
            await anyio.sleep(0.1)  # the pid file is written whole
            grandchild = int(child_pid.read_text())
            await tracker.abort_run(stubborn, "diverged")
            await tracker.abort_run(polite, "not needed")
            await _wait_until(_ended(tracker, stubborn, polite), "both jobs to end")
        for rid, reason in ((stubborn, "diverged"), (polite, "not needed")):
            state = await tracker.get_run(rid)
            assert (state.status, state.status_reason) == (Status.ABORTED, reason)
        assert polite_mark.read_text() == "SIGTERM"  # asked first, and it obliged
        # SIGTERM was ignored, so SIGKILL ended it — and its whole group, the child too.
        assert not _alive(grandchild)


async def test_a_worker_told_to_stop_lets_short_jobs_finish_and_hands_back_the_rest(
        make: MakeTracker, shared: str, tmp_path: Path) -> None:
    async with make() as tracker:
        quick = await tracker.enqueue(_script("import time; time.sleep(1.0)"))
        slow = await tracker.enqueue(_script("import time; time.sleep(60)"))
        worker = Worker(tracker, shared, queues=["default"], slots=2, stop_timeout=3.0,
                        grace=0.2)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await _wait_until(_running(tracker, quick, slow), "both jobs to start")
            worker.stop()
        assert (await tracker.get_run(quick)).status is Status.SUCCEEDED
        job = await tracker.get_job(slow)
        assert job is not None
        assert (job.status, job.attempt) == (Status.QUEUED, 0)
        assert (await tracker.get_run(slow)).status_reason == f"worker {worker.name} stopped"

        aborting = Worker(tracker, shared, queues=["default"], stop_timeout=0.1, grace=0.2,
                          requeue=False)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(aborting.run)
            await _wait_until(_running(tracker, slow), "the job to start again")
            aborting.stop()
        assert (await tracker.get_run(slow)).status is Status.ABORTED


async def test_a_second_stop_cuts_the_wait_short(make: MakeTracker, shared: str) -> None:
    async with make() as tracker:
        slow = await tracker.enqueue(_script("import time; time.sleep(60)"))
        worker = Worker(tracker, shared, queues=["default"], stop_timeout=3600, grace=0.2)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            await _wait_until(_running(tracker, slow), "the job to start")
            worker.stop()
            await anyio.sleep(0.2)
            assert (await tracker.get_run(slow)).status is Status.RUNNING  # still let be
            worker.stop()
        job = await tracker.get_job(slow)
        assert job is not None
        assert job.status is Status.QUEUED


async def test_every_line_a_job_wrote_before_it_exited_is_kept(
        make: MakeTracker, shared: str) -> None:
    async with make() as tracker:
        chatty = await tracker.enqueue(_script(
            "import sys\nfor i in range(3000): print(f'line {i}')\n"
            "sys.stderr.write('no newline at the end')"))
        async with _working(tracker, shared):
            await _wait_until(_ended(tracker, chatty), "the job to end")
        out = await tracker.read_text(chatty, "logs/stdout")
        assert out.values == [f"line {i}" for i in range(3000)]
        assert out.steps == list(range(3000))
        assert (await tracker.read_text(chatty, "logs/stderr")).values == \
            ["no newline at the end"]


def _running(tracker: engine.Tracker, *run_ids: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        states = [await tracker.get_run(r) for r in run_ids]
        return all(s.status is Status.RUNNING for s in states)

    return check


_SECOND_TIME_LUCKY = """
    import os, sys, time
    if os.path.exists(sys.argv[1]):
        sys.exit(0)
    open(sys.argv[1], "w").close()
    time.sleep(60)
"""

_CLI = "import sys; from engine._cli.main import main; sys.exit(main(sys.argv[1:]))"


async def test_the_job_of_a_worker_that_dies_runs_again_on_another(
        make: MakeTracker, shared: str, tmp_path: Path) -> None:
    mark = tmp_path / "first-attempt"
    async with make(heartbeat_interval=0.1, crash_timeout=1.0, reap_interval=0.1) as tracker:
        rid = await tracker.enqueue([*_script(_SECOND_TIME_LUCKY), str(mark)], max_attempts=2)
        doomed = await anyio.open_process(
            [sys.executable, "-c", _CLI, "--db", shared, "worker", "--name", "doomed",
             "--heartbeat-interval", "0.1", "--crash-timeout", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        async with doomed:
            await _wait_until(_exists(mark), "the first attempt to start")
            job = await tracker.get_job(rid)
            assert job is not None
            assert job.worker == "doomed"
            doomed.kill()  # SIGKILL: the machine goes away, and with it ...
            await doomed.wait()
        for pid in _group_members(mark):  # ... the job's processes
            os.killpg(pid, signal.SIGKILL)
        async with _working(tracker, shared, name="heir"):
            await _wait_until(_ended(tracker, rid), "the job to run again")
        job = await tracker.get_job(rid)
        assert job is not None
        assert (job.status, job.attempt, job.worker) == (Status.SUCCEEDED, 2, "heir")
        types = [e.type async for e in tracker.events()]
        assert types.count("JobRequeued") == 1
        assert types.count("JobClaimed") == 2


def _group_members(mark: Path) -> list[int]:
    """The process groups of the first attempt's job (found by its argument)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if str(mark).encode() in cmdline.read():
                        found.append(os.getpgid(int(entry)))
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
    return sorted(set(found))


def _wait_for(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.05)


def test_the_command_line_enqueues_runs_lists_kills_and_shows_a_jobs_output(
        tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")

    def kittiwake(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _CLI, "--db", db, *argv],
                              capture_output=True, text=True, timeout=60)

    enqueued = kittiwake("enqueue", "--queue", "cpu", "--config", "lr=0.5", "--config",
                         "opt=adam", "--max-attempts", "2", "--", sys.executable, "-c",
                         "import engine\nrun = engine.sync.init()\n"
                         "run.log_metrics({'m': 1.0}, step=0)\nprint('hello from the job')\n"
                         "run.finish()")
    assert enqueued.returncode == 0, enqueued.stderr
    run_id = enqueued.stdout.strip()
    long = kittiwake("enqueue", "--queue", "cpu", "--run-id", "long", "--", sys.executable,
                     "-c", "import time; time.sleep(60)")
    assert long.returncode == 0, long.stderr
    listed = kittiwake("queue")
    assert run_id in listed.stdout
    assert "queued" in listed.stdout
    assert "0/2" in listed.stdout
    with subprocess.Popen([sys.executable, "-c", _CLI, "--db", db, "worker", "--queue", "cpu",
                           "--name", "box-1", "--slots", "2", "--grace", "1"],
                          stdout=subprocess.PIPE, text=True) as worker:
        try:
            with engine.sync.connect(db) as tracker:
                _wait_for(lambda: tracker.get_run(run_id).status.terminal, "the job to end")
                _wait_for(lambda: tracker.get_run("long").status is Status.RUNNING,
                          "the long job to start")
                state = tracker.get_run(run_id)
                running = kittiwake("queue").stdout.splitlines()
                assert any("long" in line and "running" in line and "box-1" in line
                           for line in running), running
                killed = kittiwake("runs", "kill", "long", "--reason", "enough")
                assert killed.returncode == 0, killed.stderr
                _wait_for(lambda: tracker.get_run("long").status.terminal, "the kill")
                stopped = tracker.get_run("long")
            worker.send_signal(signal.SIGTERM)
            out, _ = worker.communicate(timeout=30)
        finally:
            if worker.poll() is None:  # pragma: no cover - a failure above
                worker.kill()
    assert worker.returncode == 0
    assert f"{run_id}: succeeded" in out
    assert "stopped" in out
    assert state.status is Status.SUCCEEDED
    assert state.config == {"lr": 0.5, "opt": "adam"}
    assert state.metrics["m"].last == 1.0
    assert (stopped.status, stopped.status_reason) == (Status.ABORTED, "enough")
    assert "hello from the job" in kittiwake("logs", run_id).stdout
    assert "no queued or running jobs" in kittiwake("queue").stdout
    listed = kittiwake("runs", "list", "--where", "worker = 'box-1'").stdout.splitlines()
    assert listed[0].split()[:5] == ["run_id", "name", "experiment", "status", "worker"]
    rows = listed[2:-1]  # after the header's rule, before the count
    assert sorted(line.split()[0] for line in rows) == sorted([run_id, "long"])
    assert all("box-1" in line for line in rows)
    assert "(0 runs)" in kittiwake("runs", "list", "--where", "worker = 'box-2'").stdout
