"""Nothing the spool accepted is lost, nothing is written twice: the training process killed
at random instants, the server killed mid-ingest and restarted, the connection cut in the
middle of a request."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import httpx
import pytest

import engine
from engine._client.spool import Spool
from engine._client.sync import sync
from engine.errors import StorageError
from tests.ports import free_port
from tests.server.live import LiveServer

pytestmark = [pytest.mark.remote, pytest.mark.slow, pytest.mark.timeout(180)]

TRAIN = """
import sys, anyio, engine
url, spool, run_id = sys.argv[1:4]
async def main():
    tracker = engine.connect(url, project="p", spool=spool, durability="normal",
                             batch_points=400)
    async with tracker, tracker.start_run(run_id) as run:
        step = 0
        while True:
            for _ in range(97):
                run.log_metrics({"a": float(step), "b": -float(step)}, step=step)
                step += 1
            await run.flush()
            print(step - 1, flush=True)
anyio.run(main)
"""


async def _steps(url: str, run_id: str, metric: str = "a") -> list[int]:
    async with engine.connect(url, project="p", durability="normal") as tracker:
        series = await tracker.read_series(run_id, metric)
    return [] if series is None else list(series.steps)


async def _spooled_max(path: str, server: str, run_id: str) -> int:
    spool = Spool(path)
    await spool.open()
    try:
        top = -1
        for _, request in await spool.pending(server, everyone=True, limit=1_000_000):
            for event in request.events:
                if request.run_id == run_id and event.type == "MetricsLogged":
                    top = max(top, *event.data["metrics"]["a"]["steps"])
        return top
    finally:
        await spool.close()


def _killed(command: list[str], after: float) -> list[int]:
    """Run the training script, SIGKILL it ``after`` seconds into its logging; the steps it
    said were flushed."""
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True)
    assert child.stdout is not None
    first = child.stdout.readline()  # it runs: then kill it at a random instant
    assert first.strip().isdigit()
    time.sleep(after)
    child.send_signal(signal.SIGKILL)
    flushed = [int(line) for line in [first, *child.stdout.read().split()]]
    child.wait()
    child.stdout.close()
    return flushed


async def test_a_training_process_killed_at_random_instants_loses_nothing_spooled(
        tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    spool = str(tmp_path / "spool.sqlite")
    rng = random.Random(16)
    with LiveServer(str(tmp_path / "server.db"), durability="normal") as server:
        for round_ in range(3):
            run_id = f"r{round_}"
            flushed = await anyio.to_thread.run_sync(
                _killed, [sys.executable, str(script), server.url, spool, run_id],
                rng.uniform(0.05, 1.0))
            spooled = await _spooled_max(spool, server.url, run_id)
            report = await sync(server.url, spool=spool)
            assert report.pending == 0
            steps = await _steps(server.url, run_id)
            top = max(flushed[-1], spooled)
            # Every point flushed or spooled is there, once, in order; nothing else is.
            assert steps[: top + 1] == list(range(top + 1))
            assert steps == list(range(len(steps)))
            assert await _steps(server.url, run_id, "b") == steps


def _serve(db: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "engine._cli.main", "--db", db, "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1)
            return process
        except httpx.TransportError:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)


async def _train(url: str, spool: str, steps: int, run_id: str = "r",
                 until: anyio.Event | None = None) -> tuple[int, int]:
    """Log at least ``steps`` steps, and on until ``until`` is set, flushing every 100 and
    waiting out a server that is away; returns how many flushes found it away and how many
    steps were logged."""
    away = step = 0
    tracker = engine.connect(url, project="p", spool=spool, durability="normal")
    async with tracker, tracker.start_run(run_id) as run:
        while step < steps or (until is not None and not until.is_set()):
            run.log_metrics({"a": float(step), "b": -float(step)}, step=step)
            step += 1
            if step % 100 == 0:
                while True:
                    try:
                        await run.flush()
                        break
                    except StorageError:
                        away += 1
                        await anyio.sleep(0.05)
    return away, step


async def test_the_server_killed_mid_ingest_and_restarted_gets_everything_once(
        tmp_path: Path) -> None:
    db, port = str(tmp_path / "server.db"), free_port()
    url = f"http://127.0.0.1:{port}"
    servers = [_serve(db, port)]
    # The run logs on until both restarts are behind it, however fast the machine is: a
    # run that finished before the first kill would prove nothing.
    restarted = anyio.Event()

    async def kill_and_restart() -> None:
        for _ in range(2):
            await anyio.sleep(0.4)
            servers[-1].send_signal(signal.SIGKILL)
            servers[-1].wait()
            await anyio.sleep(0.5)
            servers.append(await anyio.to_thread.run_sync(_serve, db, port))
        await anyio.sleep(0.2)
        restarted.set()

    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(kill_and_restart)
            away, logged = await _train(url, str(tmp_path / "spool.sqlite"), 6_000,
                                        until=restarted)
        assert away > 0  # the server was away while the run logged
        assert await _steps(url, "r") == list(range(logged))
        assert await _steps(url, "r", "b") == list(range(logged))
    finally:
        for process in servers:
            process.kill()
            process.wait()


class CuttingProxy:
    """A TCP proxy that drops every ``every``-th answer to an append: the server has
    committed, and the client never learns it (the outcome it must not duplicate)."""

    def __init__(self, upstream: int, every: int = 3) -> None:
        self.upstream = upstream
        self.every = every
        self.answers = 0
        self.cuts = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()

    def __enter__(self) -> CuttingProxy:
        threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True).start()
        assert self._started.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        async with server:
            await self._stop.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        appending = [False]

        async def upward() -> None:
            while chunk := await reader.read(65536):
                if b"POST /api/v1/append" in chunk:
                    appending[0] = True
                up_writer.write(chunk)
                await up_writer.drain()
            up_writer.close()

        async def downward() -> None:
            while chunk := await up_reader.read(65536):
                if appending[0]:
                    appending[0] = False
                    self.answers += 1
                    if self.answers % self.every == 0:
                        self.cuts += 1
                        writer.transport.abort()  # the answer never arrives
                        up_writer.close()
                        return
                writer.write(chunk)
                await writer.drain()
            writer.close()

        try:
            await asyncio.gather(upward(), downward())
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
            up_writer.close()


async def test_a_connection_cut_mid_request_neither_loses_nor_duplicates(
        tmp_path: Path) -> None:
    with LiveServer(str(tmp_path / "server.db"), durability="normal") as server, \
            CuttingProxy(server.port) as proxy:
        await _train(f"http://127.0.0.1:{proxy.port}", str(tmp_path / "spool.sqlite"),
                     3_000)
        assert proxy.cuts >= 5
        assert await _steps(server.url, "r") == list(range(3_000))
        async with engine.connect(server.url, project="p") as tracker:
            state = await tracker.get_run("r")
        assert state.status == "succeeded"
        assert state.metrics["b"].count == 3_000
