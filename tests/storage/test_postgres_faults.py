"""PostgreSQL going away and filling up under a live tracker: every flush says so with a
``StorageError`` while it lasts, logging goes on, and once the fault heals everything accepted
is written exactly once.

The server is cut off by a TCP proxy the test owns (every connection through it dropped, new
ones refused, for 30 seconds — what clients see of a restart or a network partition), so the
PostgreSQL other tests share keeps running. The full disk is a tablespace on a small tmpfs of
its own (mounting needs root, as the tests have in CI).
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.abc
import pytest

import engine
from engine.errors import StorageError
from tests.conftest import POSTGRES_URL, require_postgres
from tests.pg import admin, fresh_schema_url, with_params
from tests.ports import free_port

pytestmark = pytest.mark.postgres

QUIET = {"durability": "full", "heartbeat_interval": 60.0, "crash_timeout": 600.0}


class Proxy:
    """A TCP proxy to PostgreSQL that can cut every connection and stop listening (what a
    client sees of a restart: its connections reset, new ones refused), then listen again on
    the same port."""

    def __init__(self, tasks: anyio.abc.TaskGroup) -> None:
        target = urlsplit(POSTGRES_URL)
        self.target = (target.hostname or "127.0.0.1", target.port or 5432)
        self.tasks = tasks
        self.port = free_port()  # listened on again after a cut: no one else may take it
        self.streams: set[anyio.abc.SocketStream] = set()
        self.accepted = 0
        self.listening: anyio.CancelScope | None = None

    def url(self, url: str) -> str:
        parts = urlsplit(url)
        user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    async def listen(self) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1",
                                                   local_port=self.port)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        scope = anyio.CancelScope()
        self.listening = scope

        async def serve() -> None:
            try:
                with scope:
                    await listener.serve(self.handle)
            finally:
                with anyio.CancelScope(shield=True):
                    await listener.aclose()

        self.tasks.start_soon(serve)

    async def handle(self, client: anyio.abc.SocketStream) -> None:
        self.accepted += 1
        self.streams.add(client)
        opened = [client]
        try:
            server = await anyio.connect_tcp(*self.target)
            opened.append(server)
            self.streams.add(server)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self.pump, client, server)
                tasks.start_soon(self.pump, server, client)
        finally:
            with anyio.CancelScope(shield=True):
                for stream in opened:
                    self.streams.discard(stream)
                    await stream.aclose()

    @staticmethod
    async def pump(a: anyio.abc.SocketStream, b: anyio.abc.SocketStream) -> None:
        try:
            async for chunk in a:
                await b.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        finally:
            with anyio.CancelScope(shield=True):
                await b.aclose()

    async def sever(self) -> None:
        assert self.listening is not None
        self.listening.cancel()
        for stream in list(self.streams):
            await stream.aclose()
        await anyio.sleep(0.1)  # the listener and its handlers close


@asynccontextmanager
async def proxy() -> AsyncIterator[Proxy]:
    async with anyio.create_task_group() as tasks:
        running = Proxy(tasks)
        await running.listen()
        try:
            yield running
        finally:
            tasks.cancel_scope.cancel()


async def _log(run: engine.Run, steps: range) -> None:
    for step in steps:
        run.log_metrics({"loss": step * 0.5}, step=step)


async def _everything_once(tracker: engine.Tracker, step: int) -> None:
    state = await tracker.get_run("r")
    assert state.metrics["loss"].count == step
    series = await tracker.read_series("r", "loss")
    assert list(series.steps) == list(range(step))
    events = [e async for e in tracker.events()]
    assert len({e.id for e in events}) == len(events)
    assert [e.position for e in events] == list(range(1, len(events) + 1))
    assert await tracker.check() == []


@pytest.mark.slow
async def test_postgres_unreachable_for_30_seconds_mid_ingest_loses_nothing() -> None:
    require_postgres()
    url = fresh_schema_url(POSTGRES_URL)
    failures: list[StorageError] = []
    async with proxy() as cut_off, engine.connect(cut_off.url(url), **QUIET) as tracker:
        async with tracker.start_run("r", config={"lr": 0.1}) as run:
            await _log(run, range(1_000))
            await run.flush()
            await cut_off.sever()
            began = time.monotonic()
            step = 1_000
            while time.monotonic() - began < 30:
                await _log(run, range(step, step + 500))
                step += 500
                try:
                    await run.flush()
                except StorageError as exc:
                    failures.append(exc)
            await cut_off.listen()
            await _log(run, range(step, step + 500))
            step += 500
            await run.flush()  # the server is back: everything kept is written now
        assert (await tracker.get_run("r")).status == "succeeded"
        await _everything_once(tracker, step)
    assert failures, "no flush noticed that the server was gone"
    assert all("PostgreSQL" in str(f) for f in failures)
    assert cut_off.accepted > 1  # the tracker really came back through new connections
    async with engine.connect(url, **QUIET) as tracker:  # and it is all on the server
        await _everything_once(tracker, step)


def _mount(where: Path, size: str) -> None:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                           str(where)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        message = f"cannot mount a tmpfs at {where}: {done.stderr.strip() or done.returncode}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    subprocess.run(["chown", "postgres:postgres", str(where)], check=True)


@pytest.fixture
def tablespace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A tablespace on an 8 MiB file system of its own; dropped and unmounted afterwards."""
    require_postgres()
    where = Path("/tmp") / f"kw-ts-{uuid.uuid4().hex[:8]}"  # the server must reach it
    where.mkdir(mode=0o755)
    _mount(where, "8m")
    name = f"kw_ts_{uuid.uuid4().hex[:8]}"

    async def sql(statement: str) -> None:
        connection = await admin(POSTGRES_URL)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    try:
        anyio.run(sql, f"CREATE TABLESPACE {name} LOCATION '{where}'")
        yield name, where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        where.rmdir()


async def test_a_full_tablespace_keeps_every_point_and_writes_them_once_there_is_room(
        tablespace: tuple[str, Path]) -> None:
    name, where = tablespace
    url = with_params(fresh_schema_url(POSTGRES_URL), default_tablespace=name)
    failures: list[StorageError] = []
    try:
        async with engine.connect(url, **QUIET) as tracker:
            async with tracker.start_run("r", config={"lr": 0.1}) as run:
                step = 0
                while len(failures) < 3:
                    await _log(run, range(step, step + 20_000))
                    step += 20_000
                    try:
                        await run.flush()
                    except StorageError as exc:
                        failures.append(exc)
                    if step > 5_000_000:
                        raise AssertionError("the tablespace never filled up")
                await anyio.run_process(["mount", "-o", "remount,size=256m", str(where)])
                await _log(run, range(step, step + 1_000))
                step += 1_000
                await run.flush()
            assert (await tracker.get_run("r")).status == "succeeded"
            await _everything_once(tracker, step)
        assert all("space" in str(f) for f in failures), failures
    finally:
        connection = await admin(POSTGRES_URL)
        try:
            schema = url.split("search_path=", 1)[1].split("&", 1)[0]
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await connection.execute(f"DROP TABLESPACE IF EXISTS {name}")
        finally:
            await connection.close()
