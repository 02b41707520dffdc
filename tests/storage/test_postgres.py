"""The store contract on PostgreSQL, and what only PostgreSQL can show."""

from __future__ import annotations

import math
from array import array
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import asyncpg
import pytest

import engine
from engine._core import events as ev
from engine._core.events import NewEvent, default_upcasters
from engine._storage.contract import AppendRequest, Store
from engine._storage.postgres.schema import MIGRATIONS
from engine._storage.registry import open_store
from engine._storage.session import Session
from engine.errors import EngineError, StorageError
from tests.conftest import POSTGRES_URL, require_postgres
from tests.pg import admin, fresh_schema_url, opened, raw, with_params
from tests.store_contract import NOW, StoreContract, WriterContract, created, metrics

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url() -> str:
    require_postgres()
    return fresh_schema_url(POSTGRES_URL)


class _PostgresFaults:
    driver_errors = (asyncpg.PostgresError,)

    async def fault(self, store: Store, on: bool) -> None:
        """The writer's transactions read only: the server refuses the writes."""
        from engine._storage.postgres.store import PostgresStore

        assert isinstance(store, PostgresStore)
        async with store.committer.lock:
            await store.committer.connection.execute(
                f"SET default_transaction_read_only = {'on' if on else 'off'}")


class TestPostgres(_PostgresFaults, StoreContract):
    @pytest.fixture
    def url(self, pg_url: str) -> str:
        return pg_url

    async def raw(self, store: Store, sql: str) -> list[tuple[Any, ...]]:
        return await raw(store, sql)

    async def on_writer(self, store: Store, work: Callable[[Session], Awaitable[Any]]) -> Any:
        from engine._storage.postgres.session import PostgresSession
        from engine._storage.postgres.store import PostgresStore

        assert isinstance(store, PostgresStore)
        return await store.readers.run(lambda connection: work(PostgresSession(connection)))


class TestPostgresWriter(_PostgresFaults, WriterContract):
    @pytest.fixture
    def url(self, pg_url: str) -> str:
        return pg_url


@pytest.mark.parametrize(("durability", "setting"), [("full", "on"), ("normal", "off")])
async def test_durability_is_synchronous_commit(pg_url: str, durability: str,
                                                setting: str) -> None:
    store = await opened(pg_url, durability)
    try:
        assert await raw(store, "SHOW synchronous_commit") == [(setting,)]
    finally:
        await store.close()


async def test_the_schema_is_created_and_migrations_are_recorded(pg_url: str) -> None:
    store = await opened(pg_url)
    try:
        versions = await raw(store, "SELECT version FROM schema_migrations ORDER BY 1")
        assert versions == [(n,) for n in range(1, len(MIGRATIONS) + 1)]
        schema = pg_url.rsplit("search_path=", 1)[1]
        assert await raw(store, "SELECT current_schema()") == [(schema,)]
    finally:
        await store.close()
    again = await opened(pg_url)  # a second connect finds everything in place
    await again.close()


async def test_a_version_1_database_learns_to_index_long_config_texts(pg_url: str) -> None:
    """Databases made before config texts were indexed by a prefix take one over 2,704 bytes
    once reopened (they refused it at flush)."""
    schema = pg_url.rsplit("search_path=", 1)[1]
    connection = await admin(POSTGRES_URL)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        await connection.execute(f'SET search_path = "{schema}"')
        await connection.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                                 "applied_at timestamptz NOT NULL DEFAULT now())")
        for statement in MIGRATIONS[0]:
            await connection.execute(statement)
        await connection.execute("UPDATE meta SET value = 3 WHERE key = 'generation'")
        await connection.execute("ALTER INDEX run_configs_txt_g0 RENAME TO run_configs_txt_g3")
        await connection.execute("INSERT INTO schema_migrations (version) VALUES (1)")
    finally:
        await connection.close()
    async with engine.connect(pg_url) as tracker:
        async with tracker.start_run("r", config={"prompt": "\U00010348" * 3000}):
            pass
        assert (await tracker.get_run("r")).config["prompt"] == "\U00010348" * 3000
    store = await opened(pg_url)
    try:
        indexes = await raw(store, "SELECT indexdef FROM pg_indexes WHERE schemaname = "
                            "current_schema() AND indexname = 'run_configs_txt_g3'")
    finally:
        await store.close()
    assert indexes
    assert indexes[0][0].endswith('(path, "left"(txt, 256))')


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    store = await opened(pg_url)
    await raw(store, "INSERT INTO schema_migrations (version) VALUES (99)")
    await store.close()
    with pytest.raises(EngineError, match="newer than this release"):
        await opened(pg_url)


async def test_truncate_of_events_is_refused_too(pg_url: str) -> None:
    store = await opened(pg_url)
    try:
        await store.append([AppendRequest("p", "a", [created()])], now=NOW)
        with pytest.raises(EngineError, match="append-only: TRUNCATE"):
            await raw(store, "TRUNCATE events")
        assert await store.head() == 1
    finally:
        await store.close()


async def test_steps_and_values_round_trip_exactly(pg_url: str) -> None:
    """Steps live in ``numeric``: the largest int and awkward floats come back exactly, in
    summaries, series, fork points and lineage; -0.0 survives in summaries and NaN is NULL."""
    big = 2**63 - 1
    store = await opened(pg_url)
    try:
        steps = array("d", [0.1, 2.0**53 + 2, 1e300])
        await store.append([AppendRequest("p", "f", [
            created(), NewEvent(ev.METRICS_LOGGED, {"metrics": {"m": {
                "steps": steps, "values": array("d", [math.nan, 1.5, -0.0]),
                "timestamps": array("d", [NOW] * 3)}}})])], now=NOW)
        await store.append([AppendRequest("p", "i", [
            created(), metrics("m", [big - 1, big], [-0.0, math.nan])])], now=NOW)
        await store.append([AppendRequest("p", "child", [
            created(fork={"run_id": "f", "step": 0.1})])], now=NOW)
        floats = await store.get_run("p", "f")
        ints = await store.get_run("p", "i")
        assert floats is not None
        assert ints is not None
        assert floats.metrics["m"].last_step == 1e300
        assert math.copysign(1.0, floats.metrics["m"].last) == -1.0
        assert ints.metrics["m"].last_step == big
        assert type(ints.metrics["m"].last_step) is int
        assert math.copysign(1.0, ints.metrics["m"].min) == -1.0
        assert math.isnan(ints.metrics["m"].last)
        series = await store.read_series("p", "i", "m", low=None, high=None, max_points=None)
        assert series is not None
        assert list(series.steps) == [big - 1, big]
        window = await store.read_series("p", "f", "m", low=0.1, high=2.0**53 + 2,
                                         max_points=None)
        assert window is not None
        assert list(window.steps) == [0.1, 2.0**53 + 2]
        child = await store.get_run("p", "child")
        assert child is not None
        assert child.fork is not None
        assert child.fork.step == 0.1
        lineage = await store.lineage("p", "child")
        assert lineage is not None
        assert lineage.ancestors[0].step == 0.1
        # NaN is NULL: the last value of "i", and of the child (its one point is f's NaN).
        assert await raw(store, "SELECT count(*) FROM metrics WHERE last IS NULL") == [(2,)]
        assert await store.verify_rebuild() == []
    finally:
        await store.close()


async def test_the_url_names_the_schema_and_hides_the_password(pg_url: str) -> None:
    from engine._storage.postgres.connection import Target

    target = Target("postgresql://me:secret@db.example:5433/runs?search_path=team&sslmode=disable",
                    durability="full")
    assert target.schema == "team"
    assert "secret" not in target.shown
    assert target.shown == "postgresql://me@db.example:5433/runs?search_path=team&sslmode=disable"
    assert "search_path" not in target.dsn
    assert "sslmode=disable" in target.dsn
    assert target.settings == {"synchronous_commit": "on", "search_path": '"team"'}
    assert len(target.channel("x" * 100).encode()) <= 63


async def test_an_unreachable_server_is_one_clear_error() -> None:
    store = open_store("postgresql://nobody:pw@127.0.0.1:1/none", durability="full",
                       upcasters=default_upcasters())
    with pytest.raises(EngineError, match=r"cannot open the PostgreSQL database") as caught:
        await store.open()
    assert "pw" not in str(caught.value)
    assert isinstance(caught.value, StorageError)


async def test_two_stores_in_one_schema_share_the_log(pg_url: str) -> None:
    """Two stores (as two processes would) append in turns: positions stay dense, and each
    one's cached rows are refreshed when the other moved the head."""
    one, two = await opened(pg_url), await opened(with_params(pg_url,
                                                                application_name="kw-two"))
    try:
        await one.append([AppendRequest("p", "a", [created(), metrics("m", [0], [1.0])])],
                         now=NOW)
        await two.append([AppendRequest("p", "a", [metrics("m", [1], [2.0])])], now=NOW)
        (outcome,) = await one.append([AppendRequest("p", "a", [metrics("m", [2], [3.0])],
                                                     expected_version=3)], now=NOW)
        assert isinstance(outcome, list)
        assert [r.position for r in outcome] == [4]
        state = await two.get_run("p", "a")
        assert state is not None
        assert state.metrics["m"].count == 3
        connection = await admin(POSTGRES_URL)
        try:
            names = await connection.fetch(
                "SELECT application_name FROM pg_stat_activity WHERE application_name = "
                "'kw-two'")
        finally:
            await connection.close()
        assert names  # other URL parameters reach the server
    finally:
        await one.close()
        await two.close()


async def test_an_append_whose_connection_drops_is_sent_again_and_written_once(
        pg_url: str) -> None:
    """The writer's connection is terminated while its append waits inside the transaction
    (for the log's lock, held here): the append runs again on a new connection, once."""
    from engine._storage.postgres.store import PostgresStore

    store = await opened(pg_url)
    assert isinstance(store, PostgresStore)
    holder = await admin(pg_url)
    try:
        await store.append([AppendRequest("p", "a", [created()])], now=NOW)
        pid = store.committer.connection.get_server_pid()
        request = AppendRequest("p", "a", [metrics("m", [0, 1], [1.0, 2.0])])
        outcome: list[Any] = []
        async with anyio.create_task_group() as tasks:
            lock = holder.transaction()
            await lock.start()
            await holder.execute("LOCK TABLE events IN EXCLUSIVE MODE")
            tasks.start_soon(lambda: _append_into(store, request, outcome))
            with anyio.fail_after(10):
                while True:  # until the append waits for the lock, inside its transaction
                    waiting = await holder.fetchval(
                        "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", pid)
                    if waiting:
                        break
                    await anyio.sleep(0.01)
            assert await holder.fetchval("SELECT pg_terminate_backend($1)", pid)
            await lock.rollback()
        assert [r.position for r in outcome[0]] == [2]
        assert store.committer.connection.get_server_pid() != pid
        state = await store.get_run("p", "a")
        assert state is not None
        assert state.version == 2
        assert state.metrics["m"].count == 2
    finally:
        await holder.close()
        await store.close()


async def test_a_lost_reply_to_commit_still_starts_the_run(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server commits the run's creation, then the connection dies before the reply
    arrives: the append runs again on a new connection, finds its event written, and
    ``start_run`` gets the stored record — the run is created once and has its owner."""
    from asyncpg.transaction import Transaction

    import engine

    real = Transaction.commit
    lost: list[int] = []

    async def commit_then_lose_the_reply(self: Transaction) -> None:
        await real(self)
        if not lost:
            connection = self._connection  # type: ignore[attr-defined]
            lost.append(connection.get_server_pid())
            connection.terminate()
            raise ConnectionResetError("the connection dropped before the reply to COMMIT")

    async with engine.connect(pg_url, durability="normal") as tracker:
        monkeypatch.setattr(Transaction, "commit", commit_then_lose_the_reply)
        async with tracker.start_run("r") as run:
            assert lost  # the creation's reply was the one lost
            run.log_metrics({"m": 1.0}, step=0)
        state = await tracker.get_run("r")
        assert state.status == "succeeded"
        assert state.version == 3  # created once, one point, the final status
        types = [e.type async for e in tracker.events()]
        assert types == [ev.RUN_CREATED, ev.METRICS_LOGGED, ev.STATUS_CHANGED]


async def test_a_server_out_of_reach_keeps_the_batch_until_it_is_back(pg_url: str) -> None:
    """The writer's connection is terminated, and the server stays out of reach for longer
    than the store's own retries: flush raises ``StorageError`` (chained to the driver's
    error), the batch stays buffered, and once the server is back it is written once."""
    import engine
    from engine._storage.postgres.connection import Target
    from engine._storage.postgres.store import PostgresStore

    async with engine.connect(pg_url, durability="normal", heartbeat_interval=60,
                              crash_timeout=600) as tracker:
        store = tracker._store
        assert isinstance(store, PostgresStore)
        async with tracker.start_run("r") as run:
            run.log_metrics({"m": 0.0}, step=0)
            await run.flush()
            committer = store.committer
            reachable = committer.target
            committer.target = Target("postgresql://nobody@127.0.0.1:1/none",
                                      durability="normal")
            connection = await admin(POSTGRES_URL)
            try:
                await connection.fetchval("SELECT pg_terminate_backend($1)",
                                          committer.connection.get_server_pid())
            finally:
                await connection.close()
            run.log_metrics({"m": 1.0}, step=1)
            with pytest.raises(StorageError, match="lost the connection") as caught:
                await run.flush()
            assert isinstance(caught.value.__cause__, (OSError, asyncpg.PostgresError,
                                                       asyncpg.InterfaceError))
            committer.target = reachable
            run.log_metrics({"m": 2.0}, step=2)
            await run.flush()
        series = await tracker.read_series("r", "m")
        assert list(series.steps) == [0, 1, 2]
        assert (await tracker.get_run("r")).version == 5  # created, three batches, status


async def _append_into(store: Store, request: AppendRequest, outcome: list[Any]) -> None:
    outcome.extend(await store.append([request], now=NOW))


async def test_an_unfinished_rebuilds_tables_go_at_the_next_open_unless_one_runs(
        pg_url: str) -> None:
    """A rebuild that died left ``__new`` tables: the next open drops them — but not while a
    process holds the rebuild's advisory lock (its tables are in use)."""
    store = await opened(pg_url)
    await store.close()
    connection = await admin(pg_url)
    try:
        await connection.execute("CREATE TABLE runs__new (x int)")
        await connection.execute("SELECT pg_advisory_lock(hashtext('kittiwake rebuild ' || "
                                 "current_schema()))")
        store = await opened(pg_url)
        try:
            assert await raw(store, "SELECT tablename FROM pg_tables WHERE schemaname = "
                                    "current_schema() AND tablename LIKE '%\\_\\_new'") == \
                [("runs__new",)]
        finally:
            await store.close()
        await connection.execute("SELECT pg_advisory_unlock_all()")
        store = await opened(pg_url)
        try:
            assert await raw(store, "SELECT tablename FROM pg_tables WHERE schemaname = "
                                    "current_schema() AND tablename LIKE '%\\_\\_new'") == []
        finally:
            await store.close()
    finally:
        await connection.close()
