"""``kittiwake worker`` attached to a server with ``--auth``: it claims through the server with
a write token, its jobs attach to their runs through the server with that token, aborts
stop their process groups, and a read token cannot claim."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import pytest

import engine
from engine import Status
from engine.errors import AuthError
from tests.ports import free_port
from tests.runtime.test_lifecycle import _wait_until
from tests.server.live import LiveServer
from tests.server.test_tokens import _token
from tests.worker.test_worker import _CLI, _STUBBORN, _alive, _ended, _exists, _script

pytestmark = [pytest.mark.remote, pytest.mark.timeout(120)]

PROJECT = "team/vision"
# A job here is two Python processes starting (the worker's and the job's) and several
# requests through the server: on a loaded machine that takes more than the usual wait.
WITHIN = 60.0

_ATTACHED = """
    import os, engine
    assert os.environ["KITTIWAKE_DB"].startswith("http://"), os.environ["KITTIWAKE_DB"]
    assert os.environ["KITTIWAKE_TOKEN"]
    run = engine.sync.init()  # no arguments: the job's run, through the server
    for step in range(5):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    run.log_text({"notes/line": "from the job"}, step=0)
    print("hello through the server")
    run.finish()
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(str(tmp_path / "served.db"), auth=True, durability="normal") as server:
        yield server


def _has_output(tracker: engine.Tracker, run_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool((await tracker.read_text(run_id, "logs/stdout")).values)

    return check


def _environment(token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("KITTIWAKE_DB", "KITTIWAKE_RUN_ID", "KITTIWAKE_TOKEN")}
    env["KITTIWAKE_TOKEN"] = token
    return env


def _worker(server: LiveServer, token: str, *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _CLI, "--db", server.url, "--project", PROJECT, "worker",
         "--heartbeat-interval", "0.5", *options],
        env=_environment(token), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_a_worker_with_a_write_token_runs_jobs_through_the_server(
        server: LiveServer, tmp_path: Path) -> None:
    db = server.db
    writer = await _token(db, PROJECT, "write")
    child_pid = tmp_path / "child.pid"
    worker = _worker(server, writer, "--name", "remote-1", "--grace", "0.5")
    try:
        async with engine.connect(server.url, project=PROJECT, token=writer) as tracker:
            attached = await tracker.enqueue(_script(_ATTACHED), config={"lr": 0.1})
            await _wait_until(_ended(tracker, attached), "the job to end", WITHIN)
            state = await tracker.get_run(attached)
            assert (state.status, state.status_reason) == (Status.SUCCEEDED, None)
            assert state.metrics["loss"].count == 5
            assert state.config == {"lr": 0.1}
            assert state.worker == "remote-1"
            assert (await tracker.read_text(attached, "notes/line")).values == ["from the job"]
            # The script ended its run itself; its output follows once the process exited.
            await _wait_until(_has_output(tracker, attached), "the job's output", WITHIN)
            assert (await tracker.read_text(attached, "logs/stdout")).values == \
                ["hello through the server"]
            found = await tracker.list_runs("worker = 'remote-1'")
            assert [s.run_id for s in found] == [attached]

            stubborn = await tracker.enqueue([*_script(_STUBBORN), str(child_pid)])
            await _wait_until(_exists(child_pid), "the stubborn job to start its child",
                              WITHIN)
            await anyio.sleep(0.1)  # the pid file is written whole
            grandchild = int(child_pid.read_text())
            await tracker.abort_run(stubborn, "enough")
            await _wait_until(_ended(tracker, stubborn), "the abort to end the job", WITHIN)
            stopped = await tracker.get_run(stubborn)
            assert (stopped.status, stopped.status_reason) == (Status.ABORTED, "enough")
            assert not _alive(grandchild)  # SIGTERM was ignored: SIGKILL took the group
        listed = await anyio.run_process(
            [sys.executable, "-c", _CLI, "--db", server.url, "--project", PROJECT, "queue",
             "--all"], env=_environment(writer), check=False)
        assert listed.returncode == 0, listed.stderr.decode()
        rows = [line.split() for line in listed.stdout.decode().splitlines()]
        assert ["default", attached, "succeeded", "1/1", "remote-1"] in [r[:5] for r in rows]
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:  # pragma: no cover - a failure above
            worker.kill()
            worker.communicate()
    assert worker.returncode == 0, err
    assert f"{attached}: succeeded" in out
    assert f"{stubborn}: aborted (enough)" in out
    assert writer not in out + err


async def test_a_read_token_cannot_claim(server: LiveServer) -> None:
    db = server.db
    reader = await _token(db, PROJECT, "read")
    writer = await _token(db, PROJECT, "write")
    async with engine.connect(server.url, project=PROJECT, token=writer) as tracker:
        job = await tracker.enqueue(["true"])
    async with engine.connect(server.url, project=PROJECT, token=reader) as tracker:
        with pytest.raises(AuthError):
            await tracker.claim_job(worker="reader")
    worker = _worker(server, reader)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 1
    assert err.startswith("kittiwake: error:"), err
    assert len(err.strip().splitlines()) == 1, err
    assert "write" in err
    async with engine.connect(server.url, project=PROJECT, token=writer) as tracker:
        state = await tracker.get_run(job)
        assert state.status is Status.QUEUED  # nobody took it
        assert state.worker is None


async def test_the_doorbell_rings_for_new_jobs_and_again_after_the_server_restarts(
        tmp_path: Path) -> None:
    from engine._client.events import ring_on_events

    db = str(tmp_path / "restarted.db")
    rings: list[int] = []

    def rung(count: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            return len(rings) >= count

        return check

    # A port of the test's own: the second server must be able to take it again.
    first = LiveServer(db, port=free_port(), durability="normal").start()
    second = None
    try:
        async with engine.connect(db, durability="normal") as local, \
                anyio.create_task_group() as tasks:
            tasks.start_soon(lambda: ring_on_events(first.url, "default", token=None,
                                                    types=["RunCreated"],
                                                    ring=lambda: rings.append(1)))
            await _wait_until(rung(1), "the ring on connecting", WITHIN)
            await local.enqueue(["true"])  # written beside the server, pushed by it
            await _wait_until(rung(2), "the ring for the job", WITHIN)
            first.stop()
            second = LiveServer(db, port=first.port, durability="normal").start()
            await _wait_until(rung(3), "the ring on connecting again", WITHIN)
            await local.enqueue(["true"])
            await _wait_until(rung(4), "the ring for the next job", WITHIN)
            tasks.cancel_scope.cancel()
    finally:
        first.stop()
        if second is not None:
            second.stop()
