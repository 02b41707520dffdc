"""A dead run reads ``crashed`` to every reader as soon as its heartbeat promise is broken,
whether or not a reaper has recorded it: the promise is recorded with the run, and every
read — ``get_run``, ``list_runs`` and the query language's ``status``, ``group_runs``,
``fetch_runs_table``, the command line — judges it."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import Status
from engine._core.heartbeat import judge
from engine._query.sql import POSTGRES, SQLITE, judged_status
from tests.conftest import POSTGRES_URL, MakeTracker, in_thread, require_postgres
from tests.pg import admin
from tests.runtime.test_lifecycle import FakeClock, _wait_until, needs_shared_database

# Logs steadily until killed; says "ready" once its first points are durable.
_LOGGER = """
import sys, time, engine
with engine.sync.connect(sys.argv[1], durability="normal", heartbeat_interval=0.05,
                         crash_timeout=1.0) as tracker:
    with tracker.start_run("victim") as run:
        for step in range(10**9):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
            if step == 0:
                run.flush()
                print("ready", flush=True)
            time.sleep(0.01)
"""

_CLI = "import sys; from engine._cli.main import main; sys.exit(main(sys.argv[1:]))"


def _kittiwake(db: str, *argv: str) -> Any:
    done = subprocess.run([sys.executable, "-c", _CLI, "--db", db, *argv], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "KITTIWAKE_DEBUG": "1"})
    assert done.returncode == 0, done.stderr
    if argv[:2] == ("runs", "list"):  # JSON lines, one run each
        return [json.loads(line) for line in done.stdout.splitlines()]
    return json.loads(done.stdout)


def test_a_killed_process_shows_crashed_to_a_fresh_command_line(backend: str,
                                                                db_url: str) -> None:
    needs_shared_database(backend)
    with subprocess.Popen([sys.executable, "-c", _LOGGER, db_url], stdout=subprocess.PIPE,
                          text=True) as logger:
        try:
            assert logger.stdout is not None
            assert logger.stdout.readline().strip() == "ready"
            os.kill(logger.pid, signal.SIGKILL)
            logger.wait(timeout=30)
            killed_at = time.time()
        finally:
            if logger.poll() is None:  # pragma: no cover - the assertion above failed
                logger.kill()
    time.sleep(max(0.0, killed_at + 1.5 - time.time()))  # past the promised 1 s timeout

    shown = _kittiwake(db_url, "runs", "show", "victim", "--format", "json")
    assert shown["status"] == "crashed"
    assert shown["status_reason"] == "no heartbeat for 1 s"
    running = _kittiwake(db_url, "runs", "list", "--where", "status = 'running'",
                         "--format", "json")
    assert running == []
    crashed = _kittiwake(db_url, "runs", "list", "--where", "status = 'crashed'",
                         "--format", "json")
    assert [r["run_id"] for r in crashed] == ["victim"]


_ABANDON = """
import os, sys
import anyio, engine

async def main():
    tracker = engine.connect(sys.argv[1], durability="normal", heartbeat_interval=0.01,
                             crash_timeout=60)
    await tracker.__aenter__()
    async with tracker.start_run("done"):
        pass
    run = await tracker.start_run("ghost", experiment="e").__aenter__()
    run.log_metrics({"m": 1.0}, step=0)
    await run.flush()
    os._exit(0)  # no terminal status, no more heartbeats

anyio.run(main)
"""


async def test_every_read_judges_the_promise_before_any_reaper_records_it(
        make: MakeTracker, backend: str, db_url: str) -> None:
    needs_shared_database(backend)
    died = await anyio.run_process([sys.executable, "-c", _ABANDON, db_url], check=False,
                                   stderr=subprocess.STDOUT)
    assert died.returncode == 0, died.stdout.decode()
    clock = FakeClock()
    # A reader whose reaper passes once, at its start (nothing is stale yet), then sleeps.
    async with make(clock=clock, reap_interval=1e6, crash_timeout=1e5,
                    heartbeat_interval=1) as reader:
        head = (await reader.get_run("ghost")).position
        assert (await reader.get_run("ghost")).status is Status.RUNNING
        clock.now += 59
        assert (await reader.get_run("ghost")).status is Status.RUNNING
        clock.now += 2  # past the ghost's own 60 s (not the reader's 100000 s)

        ghost = await reader.get_run("ghost")
        assert (ghost.status, ghost.status_reason) == (Status.CRASHED, "no heartbeat for 60 s")
        assert ghost.ended_at is None  # judged, not recorded: no event was written
        assert ghost.position == head
        assert [s.run_id for s in await reader.list_runs("status = 'crashed'")] == ["ghost"]
        assert [s.run_id for s in await reader.list_runs("status = 'running'")] == []
        assert [s.run_id for s in await reader.list_runs("status != 'succeeded'")] == ["ghost"]
        assert [s.run_id for s in await reader.list_runs("status in ('crashed', 'failed')")] == \
            ["ghost"]
        assert [s.status for s in await reader.list_runs(order_by="status")] == \
            [Status.CRASHED, Status.SUCCEEDED]
        assert [s.status for s in await reader.list_runs(
            "status contains 'crash'", order_by="-metrics.m", limit=1)] == [Status.CRASHED]
        groups = await reader.group_runs("status")
        assert [(g.key["status"], g.count) for g in groups] == [("crashed", 1),
                                                                ("succeeded", 1)]
        table = await reader.fetch_runs_table(columns=["run_id", "status"])
        assert table.to_jsonl().count('"crashed"') == 1

        # The past is judged at its own instant: at the ghost's last event it was running;
        # a read as of the head is a read of now.
        last = ghost.updated_at
        assert (await reader.get_run("ghost", as_of=last)).status is Status.RUNNING
        assert (await reader.get_run("ghost", as_of=head)).status is Status.CRASHED
        assert (await reader.get_run("ghost", as_of=datetime.fromtimestamp(
            clock.now, UTC))).status is Status.CRASHED
        assert [s.status for s in await reader.list_runs(as_of=last)] == \
            [Status.SUCCEEDED, Status.RUNNING]
        assert [s.status for s in await reader.list_runs(
            "status = 'crashed'", as_of=datetime.fromtimestamp(clock.now - 1, UTC))] == \
            [Status.CRASHED]
        assert [(g.key["status"], g.count) for g in await reader.group_runs(
            "status", as_of=last)] == [("running", 1), ("succeeded", 1)]
        types = [e.type async for e in reader.events()]
        assert "StatusChanged" not in types[types.index("RunCreated", 1):]


def _recorded(tracker: engine.Tracker, run_id: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return (await tracker.get_run(run_id)).ended_at is not None

    return check


async def test_the_reaper_records_what_reads_already_show(make: MakeTracker, backend: str,
                                                          db_url: str) -> None:
    needs_shared_database(backend)
    died = await anyio.run_process([sys.executable, "-c", _ABANDON, db_url], check=False,
                                   stderr=subprocess.STDOUT)
    assert died.returncode == 0, died.stdout.decode()
    clock = FakeClock()
    clock.now += 61
    async with make(clock=clock, reap_interval=0.01) as reaper:
        await _wait_until(_recorded(reaper, "ghost"), "the reaper to record the crash")
        ghost = await reaper.get_run("ghost")
        assert (ghost.status, ghost.status_reason) == (Status.CRASHED, "no heartbeat for 60 s")


async def test_a_resumed_run_makes_a_new_promise(make: MakeTracker) -> None:
    clock = FakeClock()
    async with make(clock=clock, crash_timeout=10, heartbeat_interval=1e-3) as first, \
            first.start_run("r"):
        pass
    async with make(clock=clock, crash_timeout=500, heartbeat_interval=100) as second, \
            second.start_run("r", resume=True):
        clock.now += 20  # past the first promise, within the second
        assert (await second.get_run("r")).status is Status.RUNNING
        clock.now += 500
        assert (await second.get_run("r")).status is Status.CRASHED


def test_a_run_logged_by_a_release_without_promises_keeps_its_status(tmp_path: Any) -> None:
    """Runs created before promises were recorded stay ``running`` until a reaper says
    otherwise, as they always did."""
    from engine._core import events as ev
    from engine._core.events import NewEvent
    from engine._storage.contract import AppendRequest

    path = str(tmp_path / "old.db")

    def body() -> None:
        async def main() -> None:
            async with engine.connect(path, reap_interval=1e6) as tracker:
                store = tracker._store
                assert store is not None
                await store.append([AppendRequest("default", "old", [NewEvent(
                    ev.RUN_CREATED, {"name": "n", "experiment": None, "tags": [],
                                     "config": {}, "fork": None})])], now=time.time() - 1e4)
                state = await tracker.get_run("old")
                assert state.status is Status.RUNNING
                assert [s.run_id for s in await tracker.list_runs("status = 'running'")] == \
                    ["old"]

        anyio.run(main)

    in_thread(body)


_status = st.sampled_from(["running", "succeeded", "failed", "crashed", "aborted"])
_time = st.floats(min_value=0, max_value=2e9, allow_nan=False)


Case = tuple[str, float | None, float, float | None, float, int | None, int | None]


@st.composite
def _case(draw: st.DrawFn) -> Case:
    """A run's recorded status, promise and signs of life, and an instant to judge at —
    often exactly where the promise breaks, or the float next to it."""
    status = draw(st.just("running") | _status)
    timeout = draw(st.floats(min_value=1e-3, max_value=1e6) | st.none())
    updated = draw(_time)
    beat = draw(st.none() | _time)
    edges = [e + (timeout or 0.0) for e in (updated, beat) if e is not None]
    edge = draw(st.sampled_from(edges))
    now = draw(st.sampled_from([edge, math.nextafter(edge, math.inf),
                                math.nextafter(edge, -math.inf)]) | _time)
    maximum = draw(st.none() | st.integers(1, 3))
    attempt = None if maximum is None else draw(st.integers(0, maximum))
    return status, timeout, updated, beat, now, attempt, maximum


@settings(max_examples=500)
@given(case=_case())
def test_the_sql_judgement_is_the_python_one(case: Case) -> None:
    status, timeout, updated, beat, now, attempt, maximum = case
    import sqlite3

    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE runs (project, run_id, status, crash_timeout REAL, "
               "updated_at REAL, attempt INTEGER, max_attempts INTEGER)")
    db.execute("CREATE TABLE heartbeats (project, run_id, beat_at REAL)")
    db.execute("INSERT INTO runs VALUES ('p', 'r', ?, ?, ?, ?, ?)",
               (status, timeout, updated, attempt, maximum))
    if beat is not None:
        db.execute("INSERT INTO heartbeats VALUES ('p', 'r', ?)", (beat,))
    (found,) = db.execute(f"SELECT {judged_status(SQLITE.mark(1))} FROM runs r",
                          (now,)).fetchone()
    assert found == judge(status, timeout, updated, beat, now, attempt, maximum)


@pytest.mark.postgres
@settings(max_examples=25)
@given(cases=st.lists(_case(), min_size=1, max_size=20))
def test_the_postgres_judgement_is_the_python_one(cases: list[Case]) -> None:
    require_postgres()

    async def judged() -> list[str]:
        connection = await admin(POSTGRES_URL)
        try:
            await connection.execute(
                "CREATE TEMP TABLE runs (i int, project text, run_id text, status text, "
                "crash_timeout double precision, updated_at double precision, "
                "attempt bigint, max_attempts bigint)")
            await connection.execute("CREATE TEMP TABLE heartbeats (project text, "
                                     "run_id text, beat_at double precision)")
            found = []
            for i, (status, timeout, updated, beat, now, attempt, maximum) in enumerate(cases):
                await connection.execute(
                    "INSERT INTO runs VALUES ($1, 'p', $2, $3, $4, $5, $6, $7)",
                    i, str(i), status, timeout, updated, attempt, maximum)
                if beat is not None:
                    await connection.execute("INSERT INTO heartbeats VALUES ('p', $1, $2)",
                                             str(i), beat)
                found.append(await connection.fetchval(
                    f"SELECT {judged_status(POSTGRES.number(POSTGRES.mark(1)))} FROM runs r "
                    f"WHERE r.i = {i}", now))
            return found
        finally:
            await connection.close()

    results: list[list[str]] = []
    in_thread(lambda: results.append(anyio.run(judged)))
    assert results[0] == [judge(*case) for case in cases]
