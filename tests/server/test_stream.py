"""The live stream: the project's log as server-sent events, resumable by position."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import engine
from tests.ports import free_port
from tests.server.live import LiveServer
from tests.server.sse import events, frames

pytestmark = [pytest.mark.remote, pytest.mark.timeout(90)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(str(tmp_path / "db.sqlite"), durability="normal", keepalive=0.3,
                    stream_buffer=50) as server:
        yield server


async def _log(url: str, run_id: str, steps: range, project: str = "team/a",
               metrics: tuple[str, ...] = ("loss",)) -> None:
    tracker = engine.connect(url, project=project, durability="normal")
    async with tracker, tracker.start_run(run_id, resume=True) as run:
        for step in steps:
            run.log_metrics({m: float(step) for m in metrics}, step=step)
            await run.flush()


def _stream(client: httpx.AsyncClient, project: str = "team/a", **params: object) -> object:
    return client.stream("GET", f"/api/v1/projects/{project}/events", params=params)


async def test_each_event_carries_its_position_as_id_and_its_payload(
        server: LiveServer) -> None:
    await _log(server.url, "r1", range(3))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, \
            client.stream("GET", "/api/v1/projects/team/a/events") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        got = await events(response, 5)  # created, three batches of points, succeeded
    payloads = [f.payload for f in got]
    assert [int(f.id or 0) for f in got] == [p["position"] for p in payloads]
    assert [p["position"] for p in payloads] == list(range(1, 6))
    assert payloads[0]["type"] == "RunCreated"
    metric = [p for p in payloads if p["type"] == "MetricsLogged"]
    assert [p["data"]["metrics"]["loss"]["values"] for p in metric] == [[0.0], [1.0], [2.0]]
    assert all(f.event == p["type"] for f, p in zip(got, payloads, strict=True))


async def test_last_event_id_resumes_without_a_gap_or_a_duplicate_while_writers_append(
        server: LiveServer) -> None:
    seen: list[int] = []
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_log, server.url, "w", range(60))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            last: str | None = None
            while len(seen) < 62:  # created, 60 points, succeeded
                headers = {} if last is None else {"Last-Event-ID": last}
                async with client.stream("GET", "/api/v1/projects/team/a/events",
                                         headers=headers) as response:
                    # A few events, then drop the connection.
                    for frame in await events(response, min(7, 62 - len(seen))):
                        seen.append(int(frame.id or 0))
                        last = frame.id
                    if len(seen) >= 62:
                        break
    assert seen[:62] == list(range(1, 63))


async def test_filters_are_those_of_subscribe(server: LiveServer) -> None:
    await _log(server.url, "a", range(2), metrics=("loss", "acc"))
    await _log(server.url, "b", range(2))
    await _log(server.url, "c", range(2), project="team/other")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        async with _stream(client, runs=["a"], metrics=["acc"]) as response:
            got = [f.payload for f in await events(response, 2)]
        assert {p["run_id"] for p in got} == {"a"}
        assert [list(p["data"]["metrics"]) for p in got] == [["acc"], ["acc"]]
        async with _stream(client, types=["RunCreated"]) as response:
            got = [f.payload for f in await events(response, 2)]
        assert [(p["run_id"], p["project"]) for p in got] == [("a", "team/a"),
                                                              ("b", "team/a")]


async def test_from_live_skips_history_and_an_idle_stream_gets_keep_alives(
        server: LiveServer) -> None:
    await _log(server.url, "old", range(2))
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, \
            _stream(client, **{"from": "live"}) as response:
        comments: list[str] = []
        stream = frames(response)
        async for frame in stream:
            comments += frame.comments
            if "keep-alive" in comments:
                break
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_log, server.url, "new", range(1))
            got = [f.payload for f in await events(stream, 1)]
    assert got[0]["run_id"] == "new"


async def test_a_slow_client_still_gets_every_event_in_order(server: LiveServer) -> None:
    """The stream's buffer is 50 points: a client that reads slowly makes the server fall
    back to the log rather than hold more, and it still sees everything."""
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_log, server.url, "fast", range(300))
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, \
                _stream(client) as response:
            seen = []
            async for frame in frames(response):
                if frame.id is None:
                    continue
                seen.append(int(frame.id))
                if len(seen) % 50 == 0:
                    await anyio.sleep(0.3)
                if len(seen) == 302:
                    break
    assert seen == list(range(1, 303))


async def test_many_streams_cost_the_server_one_read_of_what_another_process_logs(
        tmp_path: Path) -> None:
    """Twenty clients follow the stream while a process that is not the server logs into
    the same database: the server reads each of its commits once, for all of them."""
    db = str(tmp_path / "db.sqlite")
    with LiveServer(db, durability="normal") as server:
        store: Any = server.store
        reads: list[int] = []
        real = store.read

        async def counted(after: int, **options: Any) -> Any:
            reads.append(after)
            return await real(after, **options)

        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, \
                contextlib.AsyncExitStack() as streams:
            opened = [frames(await streams.enter_async_context(
                _stream(client, **{"from": "live"}))) for _ in range(20)]
            for stream in opened:
                assert (await anext(stream)).retry == 1000
            await anyio.sleep(0.5)  # each stream's first look at the log is behind us
            store.read = counted
            async with engine.connect(db, project="team/a", durability="normal") as other, \
                    other.start_run("elsewhere") as run:
                for step in range(10):
                    run.log_metrics({"loss": float(step)}, step=step)
                    await run.flush()
            for stream in opened:  # created, ten flushes, succeeded
                got = [f.payload["position"] for f in await events(stream, 12)]
                assert got == list(range(1, 13))
        commits = 12
        assert 1 <= len(reads) <= commits  # not twenty times that


@pytest.mark.parametrize("start", ["soon", "-1", "1e3"])
async def test_a_bad_start_is_a_422_naming_it(server: LiveServer, start: str) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        answer = await client.get("/api/v1/projects/team/a/events", params={"from": start})
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "from"


def test_shutting_down_ends_live_streams_with_a_retry_hint(tmp_path: Path) -> None:
    server = LiveServer(str(tmp_path / "db.sqlite"), keepalive=60).start()
    frames_seen: list[object] = []

    async def follow() -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, \
                _stream(client) as response:
            async for frame in frames(response):
                frames_seen.append(frame)

    import threading

    thread = threading.Thread(target=lambda: anyio.run(follow))
    thread.start()
    time.sleep(0.5)
    started = time.monotonic()
    server.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - started < 5  # the stream did not hold the shutdown
    last = frames_seen[-1]
    assert getattr(last, "retry", None) == 1000


def test_serve_on_sigterm_ends_streams_with_a_retry_hint_and_exits(tmp_path: Path) -> None:
    """The real command: SIGTERM while a client follows the stream."""
    import signal
    import subprocess
    import sys

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "engine._cli.main", "--db", str(tmp_path / "db.sqlite"),
         "serve", "--port", str(port)], stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url + "/api/v1/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        got: list[object] = []
        with httpx.Client(base_url=url, timeout=30) as client, \
                client.stream("GET", "/api/v1/projects/p/events") as response:
            lines = response.iter_lines()
            assert next(lines) == "retry: 1000"
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            got.extend(lines)
        assert "retry: 1000" in got
        # uvicorn shuts down gracefully, then re-raises the signal it caught: the process
        # ends as SIGTERM's default would have it, as its supervisor expects.
        assert process.wait(10) in (0, -signal.SIGTERM)
        assert time.monotonic() - started < 5
    finally:
        process.kill()
        process.wait()
        assert process.stderr is not None
        process.stderr.close()


def test_shutting_down_answers_a_request_in_flight_instead_of_dropping_it(
        tmp_path: Path) -> None:
    """A remote tracker's long-poll for the head is held open by the server; a shutdown
    answers it at once (200, the head as it is) rather than cutting it or waiting it out."""
    import threading

    server = LiveServer(str(tmp_path / "db.sqlite"), long_poll=60).start()
    answers: list[tuple[int, float]] = []

    def poll() -> None:
        started = time.monotonic()
        answer = httpx.get(server.url + "/api/v1/head", params={"beyond": 5, "wait": 60},
                           timeout=30)
        answers.append((answer.status_code, time.monotonic() - started))

    thread = threading.Thread(target=poll)
    thread.start()
    time.sleep(0.5)
    server.stop()
    thread.join(10)
    assert answers
    status, took = answers[0]
    assert status == 200
    assert took < 5


def test_serve_with_workers_serves_from_each_process(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "engine._cli.main", "--db", str(tmp_path / "db.sqlite"),
         "serve", "--port", str(port), "--workers", "2"], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/api/v1/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        workers = psutil_children(process.pid)
        assert len(workers) >= 2

        async def log() -> list[str]:
            tracker = engine.connect(url, project="p", spool=str(tmp_path / "spool.sqlite"))
            async with tracker:
                for i in range(4):  # several connections: the workers share them out
                    async with tracker.start_run(f"r{i}") as run:
                        run.log_metrics({"m": 1.0}, step=0)
                return sorted(r.run_id for r in await tracker.list_runs())

        assert anyio.run(log) == ["r0", "r1", "r2", "r3"]
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) in (0, -signal.SIGTERM)
    finally:
        process.kill()
        process.wait()


def psutil_children(pid: int) -> list[object]:
    import psutil

    return list(psutil.Process(pid).children(recursive=True))
