"""The job queue on the tracker: enqueue, claims that exactly one worker wins, hand-backs
while attempts remain, and cancelling a job that never started."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections import Counter
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine
from engine import Status
from engine.errors import RunExistsError, ValidationError
from tests.conftest import MakeTracker, in_thread
from tests.runtime.test_lifecycle import FakeClock, _wait_until, needs_shared_database


async def test_an_enqueued_job_waits_queued_and_is_found_by_status(make: MakeTracker) -> None:
    async with make() as tracker:
        first = await tracker.enqueue(["python", "train.py", "--lr", "0.1"], queue="gpu",
                                      experiment="e", config={"lr": 0.1}, tags=["sweep"],
                                      env={"SEED": "1"}, cwd="/tmp", max_attempts=3)
        second = await tracker.enqueue("python eval.py 'a b'", run_id="eval-1")
        async with tracker.start_run("plain"):
            state = await tracker.get_run(first)
            assert (state.status, state.experiment, state.config, state.tags) == \
                (Status.QUEUED, "e", {"lr": 0.1}, frozenset({"sweep"}))
            assert state.ended_at is None
            assert [s.run_id for s in await tracker.list_runs("status = 'queued'")] == \
                [first, "eval-1"]
            assert [s.run_id for s in await tracker.list_runs(
                "status = 'queued' and experiment = 'e'")] == [first]
            groups = await tracker.group_runs("status")
            assert [(g.key["status"], g.count) for g in groups] == [("queued", 2),
                                                                    ("running", 1)]
        job = await tracker.get_job(second)
        assert job is not None
        assert (job.queue, job.command, job.max_attempts, job.attempt, job.status) == \
            ("default", ("python", "eval.py", "a b"), 1, 0, Status.QUEUED)
        assert await tracker.get_job("plain") is None
        jobs = await tracker.list_jobs("gpu")
        assert [(j.run_id, j.env, j.cwd, j.max_attempts) for j in jobs] == \
            [(first, {"SEED": "1"}, "/tmp", 3)]
        with pytest.raises(RunExistsError):
            await tracker.enqueue(["true"], run_id="eval-1")


@pytest.mark.parametrize(("arguments", "key"), [
    ({"command": []}, "command"), ({"command": ""}, "command"), ({"command": [1]}, "command"),
    ({"command": ["a\x00"]}, "command"), ({"command": "python 'unclosed"}, "command"),
    ({"command": ["true"], "max_attempts": 0}, "max_attempts"),
    ({"command": ["true"], "max_attempts": True}, "max_attempts"),
    ({"command": ["true"], "env": {"A=B": "1"}}, "env"),
    ({"command": ["true"], "env": {"A": 1}}, "env"),
    ({"command": ["true"], "queue": ""}, "queue"),
    ({"command": ["true"], "run_id": "bad id"}, "run_id"),
])
async def test_a_bad_job_is_refused_naming_the_argument_and_nothing_is_written(
        arguments: dict[str, Any], key: str) -> None:
    # Refused before anything is written, so one backend says it for all.
    async with engine.connect(":memory:") as tracker:
        arguments = dict(arguments)
        command = arguments.pop("command")
        with pytest.raises(ValidationError) as caught:
            await tracker.enqueue(command, **arguments)
        assert caught.value.key == key
        assert [e async for e in tracker.events()] == []


async def test_claims_take_the_oldest_job_of_the_queues_once(make: MakeTracker) -> None:
    async with make() as tracker:
        a = await tracker.enqueue(["a"], queue="cpu")
        b = await tracker.enqueue(["b"], queue="gpu")
        c = await tracker.enqueue(["c"], queue="cpu")
        job = await tracker.claim_job("gpu", worker="w1")
        assert job is not None
        assert (job.run_id, job.worker, job.attempt, job.status) == (b, "w1", 1, Status.RUNNING)
        state = await tracker.get_run(b)
        assert state.status is Status.RUNNING
        assert await tracker.claim_job("gpu", worker="w2") is None
        claimed = [await tracker.claim_job(["gpu", "cpu"], worker="w2") for _ in range(3)]
        assert [j.run_id if j else None for j in claimed] == [a, c, None]
        running = await tracker.list_jobs(statuses=["running"])
        assert {(j.run_id, j.worker) for j in running} == {(a, "w2"), (b, "w1"), (c, "w2")}
        with pytest.raises(ValidationError):
            await tracker.claim_job([], worker="w")


async def test_a_job_ended_by_its_script_keeps_that_ending(make: MakeTracker) -> None:
    async with make() as tracker:
        rid = await tracker.enqueue(["x"])
        assert await tracker.claim_job() is not None
        async with tracker.start_run(rid, resume=True) as run:  # the script attaches
            run.log_metrics({"loss": 0.5}, step=0)
        assert await tracker.end_job(rid, "failed", "exit code 1") is False
        state = await tracker.get_run(rid)
        assert (state.status, state.status_reason) == (Status.SUCCEEDED, None)
        assert state.metrics["loss"].last == 0.5


async def test_aborting_a_queued_job_ends_it_and_no_worker_gets_it(make: MakeTracker) -> None:
    async with make() as tracker:
        rid = await tracker.enqueue(["sleep", "100"])
        await tracker.abort_run(rid, "not needed")
        state = await tracker.get_run(rid)
        assert (state.status, state.status_reason) == (Status.ABORTED, "not needed")
        assert state.ended_at is not None
        assert await tracker.claim_job() is None
        types = [e.type async for e in tracker.events()]
        assert types == ["RunCreated", "AbortRequested", "StatusChanged"]


async def test_a_worker_that_stops_hands_its_job_back_without_using_an_attempt(
        make: MakeTracker) -> None:
    async with make() as tracker:
        rid = await tracker.enqueue(["x"])  # one attempt
        assert await tracker.claim_job() is not None
        assert await tracker.end_job(rid, "queued", "worker w stopped") is True
        job = await tracker.get_job(rid)
        assert job is not None
        assert (job.status, job.attempt) == (Status.QUEUED, 0)
        again = await tracker.claim_job()
        assert again is not None
        assert again.attempt == 1


_CLAIM_AND_DIE = """
import os, sys
import anyio, engine

async def main():
    tracker = engine.connect(sys.argv[1], durability="normal", heartbeat_interval=0.01,
                             crash_timeout=60)
    await tracker.__aenter__()
    job = await tracker.claim_job()
    assert job is not None, "nothing to claim"
    await anyio.sleep(0.05)  # a few heartbeats
    os._exit(0)  # the worker's machine goes away

anyio.run(main)
"""


async def test_the_jobs_of_a_dead_worker_go_back_to_the_queue_then_crash(
        make: MakeTracker, backend: str, db_url: str) -> None:
    needs_shared_database(backend)
    clock = FakeClock()
    async with make(clock=clock, reap_interval=0.01) as reaper:
        rid = await reaper.enqueue(["train"], max_attempts=2)
        for attempt, ending in ((1, Status.QUEUED), (2, Status.CRASHED)):
            clock.now = time.time()
            died = await anyio.run_process([sys.executable, "-c", _CLAIM_AND_DIE, db_url],
                                           check=False, stderr=subprocess.STDOUT)
            assert died.returncode == 0, died.stdout.decode()
            job = await reaper.get_job(rid)
            assert job is not None
            assert (job.status, job.attempt) == (Status.RUNNING, attempt)
            # The claim was stamped with the real time, however long the child took to start:
            # the reaper's clock goes a crash timeout past now.
            clock.now = time.time() + 61

            async def recorded(count: int = 2 * attempt + 1) -> bool:  # requeued, or ended
                return len([e async for e in reaper.events()]) == count

            await _wait_until(recorded, f"the reaper to record the job {ending}")
            found = await reaper.get_job(rid)
            assert found is not None
            assert found.status is ending
        state = await reaper.get_run(rid)
        assert state.status_reason == "no heartbeat for 60 s"
        types = [e.type async for e in reaper.events()]
        assert types == ["RunCreated", "JobClaimed", "JobRequeued", "JobClaimed",
                         "StatusChanged"]


# Exactly once -------------------------------------------------------------------------------

_plan = st.tuples(
    st.lists(st.sampled_from("abc"), min_size=1, max_size=25),  # each job's queue
    st.lists(st.sets(st.sampled_from("abc"), min_size=1), min_size=2, max_size=8),  # workers
)


def _race(url: str, trackers: int, queues: list[str], workers: list[set[str]]) -> None:
    """Enqueue one job per queue entry, then let every worker (spread over ``trackers``
    trackers on the database) claim from its queues as fast as it can, all at once."""
    project = f"p{uuid.uuid4().hex[:8]}"

    async def main() -> None:
        opened = [engine.connect(url, project=project, durability="normal",
                                 heartbeat_interval=30, crash_timeout=600)
                  for _ in range(trackers)]
        async with opened[0] as first, opened[1] as second, opened[2] as third:
            pool = [first, second, third][:trackers]
            ids = [await first.enqueue(["true"], queue=q) for q in queues]
            wins: list[tuple[str, str]] = []
            go = anyio.Event()

            async def work(name: str, mine: set[str], tracker: engine.Tracker) -> None:
                await go.wait()
                while (job := await tracker.claim_job(sorted(mine), worker=name)) is not None:
                    wins.append((job.run_id, name))
                    assert job.queue in mine

            async with anyio.create_task_group() as tasks:
                for i, mine in enumerate(workers):
                    tasks.start_soon(work, f"w{i}", mine, pool[i % len(pool)])
                await anyio.wait_all_tasks_blocked()
                go.set()
            claimed = Counter(run_id for run_id, _ in wins)
            assert all(count == 1 for count in claimed.values()), claimed
            servable = {rid for rid, q in zip(ids, queues, strict=True)
                        if any(q in mine for mine in workers)}
            assert set(claimed) == servable
            events = [e async for e in first.events()]
            per_run = Counter(e.run_id for e in events if e.type == "JobClaimed")
            assert per_run == claimed
            owners = {e.run_id: e.data["worker"] for e in events if e.type == "JobClaimed"}
            assert owners == dict(wins)

    anyio.run(main)


@settings(max_examples=10)
@given(plan=_plan)
def test_racing_workers_claim_each_job_exactly_once_on_sqlite(
        tmp_path_factory: pytest.TempPathFactory, plan: tuple[list[str], list[set[str]]]) -> None:
    url = str(tmp_path_factory.mktemp("race") / "race.db")
    in_thread(lambda: _race(url, 3, *plan))


@pytest.mark.postgres
@settings(max_examples=6)
@given(plan=_plan)
def test_racing_workers_claim_each_job_exactly_once_on_postgres(
        plan: tuple[list[str], list[set[str]]]) -> None:
    from tests.conftest import POSTGRES_URL, require_postgres
    from tests.pg import fresh_schema_url

    require_postgres()
    in_thread(lambda: _race(fresh_schema_url(POSTGRES_URL), 3, *plan))


@pytest.mark.remote
@settings(max_examples=5)
@given(plan=_plan)
def test_racing_workers_claim_each_job_exactly_once_through_a_server(
        tmp_path_factory: pytest.TempPathFactory, plan: tuple[list[str], list[set[str]]]) -> None:
    # Three remote trackers, each with its own spool, race through one server: the claims
    # are appends with expected_version that the server passes to the store as they are.
    from tests.server.live import LiveServer

    directory = tmp_path_factory.mktemp("race")
    with LiveServer(str(directory / "served.db"), durability="normal") as server:
        in_thread(lambda: _race(server.url, 3, *plan))


def test_inside_a_job_connect_and_start_run_need_no_arguments(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(tmp_path / "jobs.db")
    with engine.sync.connect(path, project="team") as tracker:
        rid = tracker.enqueue(["train"], config={"lr": 0.1})
        assert tracker.claim_job(worker="w") is not None
    monkeypatch.setenv("KITTIWAKE_DB", path)
    monkeypatch.setenv("KITTIWAKE_PROJECT", "team")
    monkeypatch.setenv("KITTIWAKE_RUN_ID", rid)

    def script() -> None:
        with engine.sync.connect() as tracker:
            assert (tracker.url, tracker.project) == (path, "team")
            with tracker.start_run() as run:
                assert run.run_id == rid
                run.log_metrics({"loss": 0.5}, step=0)
            with tracker.start_run("elsewhere") as other:  # a named run is not the job's
                assert other.run_id == "elsewhere"
            state = tracker.get_run(rid)
            assert (state.status, state.config) == (Status.SUCCEEDED, {"lr": 0.1})
            assert state.metrics["loss"].last == 0.5

    in_thread(script)

    async def from_async() -> None:
        async with engine.connect() as tracker:
            assert (tracker.url, tracker.project) == (path, "team")

    in_thread(lambda: anyio.run(from_async))


async def test_reads_judge_a_lost_job_before_any_reaper_hands_it_back(
        make: MakeTracker, backend: str, db_url: str) -> None:
    needs_shared_database(backend)
    clock = FakeClock()
    async with make(clock=clock, reap_interval=1e6) as reader:  # reaps once, at its start
        again = await reader.enqueue(["a"], max_attempts=2, run_id="again")
        died = await anyio.run_process([sys.executable, "-c", _CLAIM_AND_DIE, db_url],
                                       check=False, stderr=subprocess.STDOUT)
        assert died.returncode == 0, died.stdout.decode()
        done = await reader.enqueue(["b"], run_id="done")
        died = await anyio.run_process([sys.executable, "-c", _CLAIM_AND_DIE, db_url],
                                       check=False, stderr=subprocess.STDOUT)
        assert died.returncode == 0, died.stdout.decode()
        assert [(j.run_id, j.status) for j in await reader.list_jobs()] == \
            [(again, Status.RUNNING), (done, Status.RUNNING)]
        clock.now = time.time() + 61
        assert [(j.run_id, j.status) for j in await reader.list_jobs()] == \
            [(again, Status.QUEUED)]
        lost = await reader.get_job(done)
        assert lost is not None
        assert lost.status is Status.CRASHED
        assert [s.run_id for s in await reader.list_runs("status = 'queued'")] == [again]
        assert (await reader.get_run(again)).status_reason == "no heartbeat for 60 s"
        types = [e.type async for e in reader.events()]
        assert "JobRequeued" not in types
        assert "StatusChanged" not in types
