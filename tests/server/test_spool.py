"""The spool: every batch durable locally before it is sent, resent with the same event ids
until the server has answered for it; offline runs uploaded by ``kittiwake sync``."""

from __future__ import annotations

from array import array
from pathlib import Path

import pytest

import engine
from engine._cli.main import main
from engine._client.spool import Spool
from engine._core import events as ev
from engine._core.events import NewEvent
from engine._storage.contract import AppendRequest
from tests.conftest import in_thread
from tests.server.live import LiveServer

pytestmark = [pytest.mark.remote, pytest.mark.timeout(120)]


def _points(steps: list[int]) -> NewEvent:
    return NewEvent(ev.METRICS_LOGGED, {"metrics": {"m": {
        "steps": array("q", steps), "values": array("d", [float(s) for s in steps]),
        "timestamps": array("d", [1.0] * len(steps))}}})


async def test_a_batch_is_kept_once_and_comes_back_whole(tmp_path: Path) -> None:
    spool = Spool(str(tmp_path / "spool.sqlite"), token="secret")
    await spool.open()
    try:
        request = AppendRequest("p", "r", [_points([0, 1, 2])])
        first = await spool.keep("http://s", [request])
        again = await spool.keep("http://s", [request])  # the writer's retry
        assert first == again
        ((seq, back),) = await spool.pending("http://s")
        assert back.events[0].id == request.events[0].id
        assert list(back.events[0].data["metrics"]["m"]["steps"]) == [0, 1, 2]
        assert await spool.pending("http://other") == []
        spool.forget([seq])
        assert await spool.count("http://s") == 0
    finally:
        await spool.close()


async def test_rows_are_resent_only_under_the_token_that_spooled_them(tmp_path: Path) -> None:
    path = str(tmp_path / "spool.sqlite")
    mine, theirs = Spool(path, token="a"), Spool(path, token="b")
    await mine.open()
    await theirs.open()
    try:
        await mine.keep("http://s", [AppendRequest("p", "r", [_points([0])])])
        assert len(await mine.pending("http://s")) == 1
        assert await theirs.pending("http://s") == []
        assert len(await theirs.pending("http://s", everyone=True)) == 1
    finally:
        await mine.close()
        await theirs.close()


async def test_offline_runs_are_uploaded_by_sync_once_with_their_times(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spool = str(tmp_path / "spool.sqlite")
    with LiveServer(str(tmp_path / "server.db"), durability="normal") as server:
        url = server.url
        server.stop()  # offline never contacts it: nothing listens now
        tracker = engine.connect(url, project="team/a", spool=spool, offline=True)
        async with tracker:
            async with tracker.start_run("base", config={"lr": 0.1}) as run:
                for step in range(100):
                    run.log_metrics({"loss": 1 / (step + 1)}, step=step)
            async with tracker.start_run("child", fork=("base", 49)) as run:
                run.log_metrics({"loss": 0.0}, step=50)
            local = {r.run_id: r for r in await tracker.list_runs()}
        server.start()
        url = server.url
        codes: list[int] = []
        in_thread(lambda: codes.append(main(["--db", url, "sync", "--spool", spool])))
        first = capsys.readouterr().out
        assert "offline events (0 refused); 0 still spooled" in first
        assert "uploaded 0 " not in first
        # Again: nothing new goes up.
        in_thread(lambda: codes.append(main(["--db", url, "sync", "--spool", spool])))
        assert "uploaded 0 offline events" in capsys.readouterr().out
        assert codes == [0, 0]
        async with engine.connect(url, project="team/a", spool=spool) as remote:
            runs = {r.run_id: r for r in await remote.list_runs()}
            assert set(runs) == {"base", "child"}
            assert runs["base"].metrics["loss"].count == 100
            assert runs["base"].created_at == local["base"].created_at
            assert runs["child"].fork == local["child"].fork
            series = await remote.read_series("child", "loss")
            assert len(series) == 51  # the parent's 50 points, then its own
            assert runs["base"].status == "succeeded"


def test_sync_without_a_spool_is_one_line_and_exit_1(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--db", "http://127.0.0.1:9", "sync", "--spool", str(tmp_path / "none")])
    assert code == 1
    assert "no spool at" in capsys.readouterr().err
