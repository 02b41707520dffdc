"""The remote tracker's own promises: typed errors from the server's answers, and a
``StorageError`` for a server that is down longer than the caller waits."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine
from engine._client import store as remote
from engine.errors import RunExistsError, StorageError, ValidationError
from tests.server.live import LiveServer

pytestmark = [pytest.mark.remote, pytest.mark.timeout(60)]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(str(tmp_path / "db.sqlite"), durability="normal") as server:
        yield server


async def test_the_servers_refusals_are_raised_as_the_same_types(server: LiveServer) -> None:
    async with engine.connect(server.url, project="team/x") as tracker:
        async with tracker.start_run("taken"):
            pass
        with pytest.raises(RunExistsError):
            async with tracker.start_run("taken"):
                pass
        with pytest.raises(engine.errors.QuerySyntaxError) as caught:
            await tracker.list_runs("name = ")
        assert caught.value.position == 7
        with pytest.raises(engine.errors.RunNotFoundError):
            await tracker.abort_run("missing")


@pytest.mark.parametrize("option", ["token", "spool"])
def test_a_servers_options_are_refused_for_a_database(option: str, tmp_path: Path) -> None:
    tracker = engine.connect(str(tmp_path / "x.db"), **{option: "value"})  # type: ignore[arg-type]

    async def open_it() -> None:
        async with tracker:
            pass

    import anyio

    with pytest.raises(ValidationError) as caught:
        anyio.run(open_it)
    assert caught.value.key == option


async def test_a_server_down_longer_than_the_caller_waits_is_a_storage_error(
        monkeypatch: pytest.MonkeyPatch, server: LiveServer) -> None:
    monkeypatch.setattr(remote, "WAIT", 1.0)
    async with engine.connect(server.url, durability="normal") as tracker:
        async with tracker.start_run("r") as run:
            run.log_metrics({"m": 1.0}, step=0)
            await run.flush()
            server.stop(abrupt=True)
            run.log_metrics({"m": 2.0}, step=1)
            with pytest.raises(StorageError):
                await run.flush()  # kept, and sent again once the server is back
            started = time.monotonic()
            with pytest.raises(StorageError):
                await tracker.list_runs()
            assert time.monotonic() - started < 5
            server.start()  # the same port and database
            await run.flush()
        state = await tracker.get_run("r")
        assert state.metrics["m"].count == 2
        assert state.status == "succeeded"


async def test_nothing_listening_is_a_storage_error_at_open(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "WAIT", 0.5)
    with pytest.raises(StorageError):
        async with engine.connect("http://127.0.0.1:9"):
            pass


async def test_a_group_past_the_body_target_goes_in_parts_and_all_of_it_arrives(
        server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "BODY_TARGET", 4_000)  # a few runs' batches per part
    sent: list[int] = []
    send = remote.RemoteStore.send

    async def counting(self: remote.RemoteStore, requests: object, *, now: float) -> object:
        sent.append(len(requests))  # type: ignore[arg-type]
        return await send(self, requests, now=now)  # type: ignore[arg-type]

    monkeypatch.setattr(remote.RemoteStore, "send", counting)
    async with engine.connect(server.url, durability="normal") as tracker:
        runs = [tracker.start_run(f"r{k}") for k in range(8)]
        handles = [await run.__aenter__() for run in runs]
        for handle in handles:
            for step in range(200):
                handle.log_metrics({"m": float(step)}, step=step)
        for run in reversed(runs):
            await run.__aexit__(None, None, None)
        for k in range(8):
            series = await tracker.read_series(f"r{k}", "m")
            assert list(series.steps) == list(range(200))
    # A group of several runs' batches was sent as its halves.
    assert any(a > 1 and b == a // 2 for a, b in itertools.pairwise(sent))
