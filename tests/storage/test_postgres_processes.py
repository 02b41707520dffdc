"""PostgreSQL as the shared store of many processes: one gap-free order, idempotent retries,
optimistic concurrency, opening (migrating, rebuilding) at once, and the doorbell another
process's append rings (live fan-out itself: ``test_postgres_live``).

Writers run in child processes (each with its own store and connections), so these are the
promises a team's machines rely on, not one process's locks.
"""

from __future__ import annotations

import json
import sys
import textwrap
from typing import Any

import anyio
import pytest

from engine._core import events as ev
from engine._core.events import NewEvent
from engine._storage.contract import AppendRequest
from tests.conftest import POSTGRES_URL, require_postgres
from tests.pg import admin, fresh_schema_url, lock_waiters, opened
from tests.store_contract import NOW, created

pytestmark = pytest.mark.postgres

# A child that appends through the store API: ``mode`` picks what it does.
CHILD = textwrap.dedent("""
    import json, sys
    from array import array
    import anyio
    from engine._core import events as ev
    from engine._core.events import NewEvent, default_upcasters
    from engine._storage.contract import AppendRequest
    from engine._storage.registry import open_store
    from engine.errors import ConcurrencyError

    async def main(url, mode, name, arg):
        store = open_store(url, durability="normal", upcasters=default_upcasters())
        await store.open()
        try:
            if mode == "many":  # its own run, one small transaction per event
                await store.append([AppendRequest("p", name, [NewEvent(
                    ev.RUN_CREATED, {"name": name, "tags": [], "config": {}})])], now=1.0)
                for step in range(int(arg)):
                    event = NewEvent(ev.METRICS_LOGGED, {"metrics": {"m": {
                        "steps": array("q", [step]), "values": array("d", [1.0]),
                        "timestamps": array("d", [1.0])}}})
                    (outcome,) = await store.append([AppendRequest("p", name, [event])],
                                                    now=1.0)
                    assert isinstance(outcome, list), outcome
            elif mode == "same":  # the same events as every other child, by id
                for item in json.loads(arg):
                    event = NewEvent(ev.METRICS_LOGGED, {"metrics": {"m": {
                        "steps": array("q", [item["step"]]), "values": array("d", [1.0]),
                        "timestamps": array("d", [1.0])}}}, bytes.fromhex(item["id"]))
                    (outcome,) = await store.append([AppendRequest("p", "shared", [event])],
                                                    now=1.0)
                    assert isinstance(outcome, list), outcome
            elif mode == "versions":  # read, then append only if nobody else did meanwhile
                won = []
                while len(won) < int(arg):
                    state = await store.get_run("p", "counter")
                    event = NewEvent(ev.TAGS_ADDED, {"tags": [f"{name}-{len(won)}"]})
                    (outcome,) = await store.append([AppendRequest(
                        "p", "counter", [event], expected_version=state.version)], now=1.0)
                    if isinstance(outcome, ConcurrencyError):
                        continue
                    assert isinstance(outcome, list), outcome
                    won.append(outcome[0].version)
                print(json.dumps(won))
            elif mode == "open":  # only open (migrating, rebuilding), then read one run
                state = await store.get_run("p", arg)
                print(json.dumps(None if state is None else state.metrics["m"].count))
        finally:
            await store.close()

    anyio.run(main, *sys.argv[1:])
""")

@pytest.fixture
def url() -> str:
    require_postgres()
    return fresh_schema_url(POSTGRES_URL)


async def _child(url: str, *args: str) -> str:
    done = await anyio.run_process([sys.executable, "-c", CHILD, url, *args], check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


async def test_a_reader_polling_past_its_last_position_never_skips_an_event(url: str) -> None:
    """Four processes append one small transaction after another while two readers poll
    ``position > last`` (one with plain SQL, one through the store): each reader's sequence
    is exactly the final log, which is 1..N without a hole."""
    store = await opened(url)  # creates the schema before the children race for it
    connection = await admin(url)
    writers_done = anyio.Event()
    by_sql: list[int] = []
    by_store: list[int] = []

    async def poll_sql() -> None:
        while True:
            finished = writers_done.is_set()
            rows = await connection.fetch(
                "SELECT position FROM events WHERE position > $1 ORDER BY position",
                by_sql[-1] if by_sql else 0)
            by_sql.extend(r[0] for r in rows)
            if finished and not rows:
                return
            await anyio.sleep(0.001)

    async def poll_store() -> None:
        while True:
            finished = writers_done.is_set()
            records, _ = await store.read(by_store[-1] if by_store else 0, limit=50)
            by_store.extend(r.position for r in records)
            if finished and not records:
                return

    async def writers() -> None:
        async with anyio.create_task_group() as tasks:
            for i in range(4):
                tasks.start_soon(_child, url, "many", f"w{i}", "150")
        writers_done.set()

    try:
        with anyio.fail_after(120):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(poll_sql)
                tasks.start_soon(poll_store)
                tasks.start_soon(writers)
        log = [r[0] for r in await connection.fetch("SELECT position FROM events ORDER BY 1")]
    finally:
        await connection.close()
        await store.close()
    assert log == list(range(1, 4 * 151 + 1))
    assert by_sql == log
    assert by_store == log


async def test_resent_events_are_written_once_whichever_process_sends_them(url: str) -> None:
    store = await opened(url)
    try:
        await store.append([AppendRequest("p", "shared", [created()])], now=NOW)
        events = [{"id": NewEvent("x", {}).id.hex(), "step": step} for step in range(60)]
        async with anyio.create_task_group() as tasks:
            for _ in range(4):
                tasks.start_soon(_child, url, "same", "-", json.dumps(events))
        records, _ = await store.read(0, limit=1000)
        assert [r.id.hex() for r in records[1:]] == [e["id"] for e in events]
        assert [r.version for r in records] == list(range(1, 62))
        state = await store.get_run("p", "shared")
        assert state is not None
        assert state.metrics["m"].count == 60
        assert await store.verify_rebuild() == []
    finally:
        await store.close()


async def test_expected_version_lets_exactly_one_process_win_each_version(url: str) -> None:
    store = await opened(url)
    try:
        await store.append([AppendRequest("p", "counter", [created()])], now=NOW)
        won: list[list[int]] = []

        async def contender(name: str) -> None:
            won.append(json.loads(await _child(url, "versions", name, "15")))

        async with anyio.create_task_group() as tasks:
            for i in range(4):
                tasks.start_soon(contender, f"c{i}")
        versions = sorted(v for got in won for v in got)
        assert versions == list(range(2, 62))  # every success its own version, none lost
        state = await store.get_run("p", "counter")
        assert state is not None
        assert state.version == 61
        assert len(state.tags) == 60
    finally:
        await store.close()


async def _open_at_once(url: str, lock: str, processes: int) -> list[Any]:
    """Start ``processes`` children that open the store, hold the advisory lock ``lock``
    (an SQL expression) until every one of them waits for it, then let them race."""
    holder = await admin(url)
    results: list[Any] = []

    async def child() -> None:
        results.append(json.loads(await _child(url, "open", "-", "a")))

    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute(f"SELECT pg_advisory_xact_lock({lock})")
        async with anyio.create_task_group() as tasks:
            for _ in range(processes):
                tasks.start_soon(child)
            with anyio.fail_after(60):
                await lock_waiters(holder, lock, processes)
            await transaction.commit()
    finally:
        await holder.close()
    return results


async def test_processes_opening_a_fresh_schema_at_once_migrate_it_once(url: str) -> None:
    schema = url.rsplit("search_path=", 1)[1]
    results = await _open_at_once(url, f"hashtext('kittiwake migrate {schema}')", 3)
    assert results == [None] * 3
    store = await opened(url)
    try:
        from engine._storage.postgres.schema import MIGRATIONS
        from engine._storage.postgres.store import PostgresStore

        assert isinstance(store, PostgresStore)
        rows = await store.readers.run(lambda c: c.fetch(
            "SELECT version FROM schema_migrations ORDER BY 1"))
        assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))
        await store.append([AppendRequest("p", "a", [created()])], now=NOW)
        assert await store.verify_rebuild() == []
    finally:
        await store.close()


async def test_processes_opening_with_projections_behind_rebuild_once(url: str) -> None:
    """Every process that opens finds a projection behind the log and asks for a rebuild; the
    first to get the rebuild lock rebuilds, the others find the work done."""
    from engine._storage.postgres.store import PostgresStore

    store = await opened(url)
    assert isinstance(store, PostgresStore)
    try:
        await store.append([AppendRequest("p", "a", [created(), NewEvent(
            ev.METRICS_LOGGED, {"metrics": {"m": {
                "steps": [0, 1], "values": [1.0, 2.0], "timestamps": [NOW, NOW]}}})])],
            now=NOW)

        async def behind(connection: Any) -> None:
            await connection.execute("DELETE FROM metrics")  # as if a release added it
            await connection.execute(
                "UPDATE checkpoints SET position = 0 WHERE name = 'metrics'")

        await store.readers.run(behind)
        results = await _open_at_once(
            url, "hashtext('kittiwake rebuild ' || current_schema())", 3)
        assert results == [2] * 3
        generation = await store.readers.run(lambda c: c.fetchval(
            "SELECT value FROM meta WHERE key = 'generation'"))
        assert generation == 1
        assert await store.verify_rebuild() == []
    finally:
        await store.close()


async def test_the_doorbell_rings_when_another_process_appends(url: str) -> None:
    """``wait_for_head`` returns on the NOTIFY of another process's commit, long before the
    minute it was allowed to wait."""
    store = await opened(url)
    try:
        head = await store.head()
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_child, url, "many", "w", "1")
            with anyio.fail_after(30):
                moved = await store.wait_for_head(head, 60)
        assert moved > head
    finally:
        await store.close()
