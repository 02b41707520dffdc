"""Live fan-out on PostgreSQL: LISTEN/NOTIFY wakes subscribers in other processes, and the
connections it needs come back when the server drops them.

The subscribing trackers here never poll (``NO_POLLING``): only the doorbell can wake them, so
a lost notification or a LISTEN connection that is not opened again hangs the test until its
timeout.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from typing import Any

import anyio
import pytest

import engine
from engine._core import events as ev
from tests.conftest import POSTGRES_URL, require_postgres
from tests.pg import admin, fresh_schema_url, opened, with_params

pytestmark = pytest.mark.postgres

# A child that logs through the tracker API, as a training script would.
TRAINER = textwrap.dedent("""
    import sys
    import anyio, engine

    async def main(url, points):
        async with engine.connect(url, durability="normal") as tracker:
            async with tracker.start_run("remote", experiment="x") as run:
                for step in range(int(points)):
                    run.log_metrics({"m": float(step)}, step=step)
                    await anyio.sleep(0.002)

    anyio.run(main, *sys.argv[1:])
""")


@pytest.fixture
def url() -> str:
    require_postgres()
    return fresh_schema_url(POSTGRES_URL)


# A poll interval no test outlives: only the doorbell can wake a tracker that has it.
NO_POLLING = 3600.0


async def test_a_subscriber_sees_every_event_of_a_writer_in_another_process(url: str) -> None:
    """The subscribing tracker never polls: what wakes it is the NOTIFY of the other
    process's commits (were it lost, the test's timeout would end the wait)."""
    async with engine.connect(url, durability="normal", poll_interval=NO_POLLING) as tracker:
        seen: list[engine.Event] = []
        subscription = tracker.subscribe(from_position="start")
        await subscription.wait_caught_up()

        async def collect() -> None:
            async for event in subscription:
                seen.append(event)
                if event.type == ev.STATUS_CHANGED and event.data["status"] == "succeeded":
                    return

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(collect)
                await anyio.run_process([sys.executable, "-c", TRAINER, url, "300"],
                                        check=True)
        log = [event async for event in tracker.events()]
        assert [e.position for e in seen] == [e.position for e in log]
        assert [e.id for e in seen] == [e.id for e in log]
        points = [s for e in seen if e.type == ev.METRICS_LOGGED
                  for s in e.data["metrics"]["m"]["steps"]]
        assert points == list(range(300))


async def _terminate(application_name: str) -> int:
    connection = await admin(POSTGRES_URL)
    try:
        rows = await connection.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = $1", application_name)
    finally:
        await connection.close()
    return len(rows)


async def test_dropped_connections_come_back_and_nothing_is_skipped_or_repeated(
        url: str) -> None:
    """Every connection of a subscribing tracker and of a writing tracker is terminated, five
    times, while points are logged: both reconnect, nothing logged is lost, and the
    subscription resumes from its position without a gap or a duplicate."""
    tag = uuid.uuid4().hex[:8]
    reader_name, writer_name = f"kw-sub-{tag}", f"kw-write-{tag}"
    killed: list[int] = []
    async with engine.connect(with_params(url, application_name=reader_name),
                              durability="normal") as reader, \
            engine.connect(with_params(url, application_name=writer_name),
                           durability="normal") as writer:
        subscription = reader.subscribe(from_position="start")
        await subscription.wait_caught_up()
        seen: list[Any] = []

        async def collect() -> None:
            async for event in subscription:
                seen.append(event)
                if event.type == ev.STATUS_CHANGED and event.data["status"] == "succeeded":
                    return

        async def write() -> None:
            async with writer.start_run("w") as run:
                for step in range(3000):
                    run.log_metrics({"m": float(step)}, step=step)
                    if step % 100 == 99:
                        await run.flush()
                        await anyio.sleep(0.02)

        async def kill() -> None:
            for _ in range(5):
                await anyio.sleep(0.1)
                killed.append(await _terminate(reader_name) + await _terminate(writer_name))

        with anyio.fail_after(120):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(collect)
                tasks.start_soon(kill)
                await write()
        log = [event async for event in reader.events()]
        assert [e.position for e in seen] == [e.position for e in log]
        assert [e.id for e in seen] == [e.id for e in log]
        series = await reader.read_series("w", "m")
        assert list(series.steps) == list(range(3000))
    assert sum(killed) >= 10  # both trackers really lost their connections


async def test_the_listening_connection_comes_back_after_it_is_terminated(url: str) -> None:
    """The subscribing tracker never polls. Its LISTEN connection is terminated by the server
    between two runs of another tracker: it is opened again, and the second run's commits
    reach the subscriber through it — every event once, in order."""
    from engine._storage.postgres.store import PostgresStore

    async with engine.connect(url, durability="normal", poll_interval=NO_POLLING) as reader, \
            engine.connect(url, durability="normal") as writer:
        store = reader._store
        assert isinstance(store, PostgresStore)
        doorbell = store._doorbell
        assert doorbell is not None
        subscription = reader.subscribe(from_position="start")
        seen: list[Any] = []
        ended: list[anyio.Event] = [anyio.Event(), anyio.Event()]

        async def collect() -> None:
            async for event in subscription:
                seen.append(event)
                if event.type == ev.STATUS_CHANGED:
                    ended[int(event.run_id == "two")].set()
                    if event.run_id == "two":
                        return

        async def log(run_id: str) -> None:
            async with writer.start_run(run_id) as run:
                for step in range(50):
                    run.log_metrics({"m": float(step)}, step=step)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(collect)
                await log("one")
                await ended[0].wait()
                listening = doorbell._connection
                assert listening is not None
                pid = listening.get_server_pid()
                connection = await admin(POSTGRES_URL)
                try:
                    assert await connection.fetchval("SELECT pg_terminate_backend($1)", pid)
                finally:
                    await connection.close()
                while True:  # until the tracker listens again, on a new connection
                    again = doorbell._connection
                    if again is not None and not again.is_closed() \
                            and again.get_server_pid() != pid:
                        break
                    await anyio.sleep(0.01)
                await log("two")
        log_events = [event async for event in reader.events()]
        assert [e.position for e in seen] == [e.position for e in log_events]
        assert [e.id for e in seen] == [e.id for e in log_events]
        assert {e.run_id for e in seen} == {"one", "two"}


async def test_a_bell_armed_after_the_listener_died_is_already_rung(url: str) -> None:
    """The LISTEN connection may die after ``listening()`` said it listens and before the
    bell is armed, or before its loss is reported: such a bell comes already rung, so the
    waiter reads the head and listens again instead of waiting for a ring that cannot come."""
    from engine._storage.postgres.store import PostgresStore

    store = await opened(url)
    assert isinstance(store, PostgresStore)
    try:
        doorbell = store._doorbell
        assert doorbell is not None
        assert await doorbell.listening()
        assert not doorbell.armed().is_set()
        connection = doorbell._connection
        assert connection is not None
        connection.remove_termination_listener(doorbell._lost)  # its loss goes unreported
        connection.terminate()
        assert doorbell.armed().is_set()
        assert await doorbell.listening()  # and the next wait listens again
        assert doorbell._connection is not connection
        assert not doorbell.armed().is_set()
    finally:
        await store.close()
