"""Rebuilds on PostgreSQL beside other processes: taking turns, and reads during the swap."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from engine._storage.contract import AppendRequest
from tests.conftest import POSTGRES_URL, require_postgres
from tests.pg import admin, fresh_schema_url, lock_waiters, opened, raw
from tests.store_contract import NOW, created, metrics

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> str:
    require_postgres()
    return fresh_schema_url(POSTGRES_URL)


async def test_projections_behind_the_log_are_rebuilt_on_open(pg_url: str) -> None:
    store = await opened(pg_url)
    await store.append([AppendRequest("p", "a", [created(), metrics("m", [0, 1], [1.0, 2.0])])],
                       now=NOW)
    # As if a release had added a projection.
    await raw(store, "DELETE FROM metrics")
    await raw(store, "UPDATE checkpoints SET position = 0 WHERE name = 'metrics'")
    await store.close()
    store = await opened(pg_url)
    try:
        state = await store.get_run("p", "a")
        assert state is not None
        assert state.metrics["m"].count == 2
        assert await store.verify_rebuild() == []
    finally:
        await store.close()


_REBUILD_LOCK = "hashtext('kittiwake rebuild ' || current_schema())"


async def test_two_rebuilds_at_once_take_turns(pg_url: str) -> None:
    """Two stores (two processes) ask for a rebuild while a third holds the rebuild lock:
    each waits its turn, and each builds the generation after the one the other swapped in
    (not both the one they saw before waiting, whose names the first swap took)."""
    one, two = await opened(pg_url), await opened(pg_url)
    holder = await admin(pg_url)
    try:
        await one.append([AppendRequest("p", "a", [created(), metrics("m", [0, 1], [1.0, 2.0])])],
                         now=NOW)
        await holder.execute(f"SELECT pg_advisory_lock({_REBUILD_LOCK})")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(one.rebuild)
            tasks.start_soon(two.rebuild)
            with anyio.fail_after(10):
                await lock_waiters(holder, _REBUILD_LOCK, 2)
            await holder.execute(f"SELECT pg_advisory_unlock({_REBUILD_LOCK})")
        assert await raw(one, "SELECT value FROM meta WHERE key = 'generation'") == [(2,)]
        for store in (one, two):
            state = await store.get_run("p", "a")
            assert state is not None
            assert state.metrics["m"].count == 2
        assert await two.verify_rebuild() == []
    finally:
        await holder.close()
        await one.close()
        await two.close()


async def _until(condition: Any) -> None:
    """Until ``await condition()`` is true (what another session or task does can only be
    looked at; the caller's timeout bounds the wait)."""
    while True:
        if await condition():
            return
        await anyio.sleep(0.01)


async def test_a_snapshot_read_waiting_for_a_swap_sees_what_the_swap_wrote(
        pg_url: str) -> None:
    """A rebuild's swap writes the events appended while it paged through the log, renames the
    tables and is held just before its commit; a snapshot read then waits for it. Once the
    swap commits, the read sees the swapped-in tables with those last rows."""
    from engine._storage.postgres.store import PostgresStore

    store, other = await opened(pg_url), await opened(pg_url)
    assert isinstance(store, PostgresStore)
    holder = await admin(pg_url)
    found: list[Any] = []

    async def read_late() -> None:
        found.append(await other.read_series("p", "late", "m", low=None, high=None,
                                             max_points=None))

    async def swap_waits() -> bool:  # on the row lock the holder took
        return bool(await holder.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"))

    async def read_waits() -> bool:
        return bool(await holder.fetchval(
            "SELECT count(*) FROM pg_locks WHERE relation = 'runs'::regclass AND NOT granted"))

    async def rebuild_waits() -> bool:
        return store.committer.lock.statistics().tasks_waiting > 0

    try:
        await store.append([AppendRequest("p", "a", [created(), metrics("m", [0], [1.0])])],
                           now=NOW)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tasks:
                await store.committer.lock.acquire()  # the swap waits for it after paging
                try:
                    tasks.start_soon(store.rebuild)
                    await _until(rebuild_waits)
                    await other.append([AppendRequest("p", "late", [
                        created("late"), metrics("m", [0, 1], [1.0, 2.0])])], now=NOW)
                    transaction = holder.transaction()
                    await transaction.start()
                    await holder.execute("SELECT * FROM meta FOR UPDATE")  # holds the swap
                finally:
                    store.committer.lock.release()
                await _until(swap_waits)
                tasks.start_soon(read_late)
                await _until(read_waits)
                await transaction.rollback()
        (series,) = found
        assert series is not None
        assert list(series.steps) == [0, 1]
        assert await store.verify_rebuild() == []
    finally:
        await holder.close()
        await store.close()
        await other.close()
