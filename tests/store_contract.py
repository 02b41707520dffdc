"""Promises every store keeps, written once; each backend's test module subclasses them.

A subclass provides the ``url`` fixture (a fresh, isolated database) and ``raw`` (run one SQL
statement on the store's own database, for what only the database itself can show).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

import engine
from engine._core import events as ev
from engine._core.events import NewEvent, Record, Upcasters, default_upcasters
from engine._core.fold import Fold
from engine._runtime.writer import Writer
from engine._storage.contract import AppendRequest, EventFilter, Store
from engine._storage.io import advance
from engine._storage.registry import open_store
from engine._storage.session import Session
from engine.errors import (
    ConcurrencyError,
    EngineError,
    RunExistsError,
    RunNotFoundError,
    StorageError,
    ValidationError,
)
from tests.strategies import same_state, state_diff

NOW = 1_700_000_000.0


def created(name: str = "r", **extra: Any) -> NewEvent:
    data = {"name": name, "experiment": None, "tags": [], "config": {}, "fork": None}
    data.update(extra)
    return NewEvent(ev.RUN_CREATED, data)


def metrics(name: str, steps: list[int], values: list[float]) -> NewEvent:
    return NewEvent(ev.METRICS_LOGGED, {"metrics": {name: {
        "steps": array("q", steps), "values": array("d", values),
        "timestamps": array("d", [NOW] * len(steps))}}})


class Faulty:
    """A real store whose appends fail ``times`` times, then heal: around each failing call
    the test turns a fault on in the database itself (``fault(store, on)``), so the error is
    the database's own, through the backend's translation of it."""

    def __init__(self, store: Store, fault: Callable[[Store, bool], Awaitable[None]],
                 times: int) -> None:
        self._store = store
        self._fault = fault
        self.times = times
        self.failures = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def append(self, requests: Any, *, now: float) -> Any:
        if self.failures >= self.times:
            return await self._store.append(requests, now=now)
        await self._fault(self._store, True)
        try:
            return await self._store.append(requests, now=now)
        finally:
            self.failures += 1
            await self._fault(self._store, False)


class _Stores:
    """Opening stores on the test's database, and appending one request."""

    driver_errors: tuple[type[BaseException], ...] = ()  # what the backend's driver raises

    async def fault(self, store: Store, on: bool) -> None:
        """Make every write of ``store`` fail with its database's own error (``on``), or
        heal it."""
        raise NotImplementedError

    @pytest.fixture
    def url(self) -> str:
        raise NotImplementedError("a backend's test class provides a fresh database URL")

    @asynccontextmanager
    async def opened(self, url: str, upcasters: Upcasters | None = None) -> AsyncIterator[Store]:
        store = open_store(url, durability="normal", upcasters=upcasters or default_upcasters())
        await store.open()
        try:
            yield store
        finally:
            await store.close()

    @staticmethod
    async def one(store: Store, request: AppendRequest) -> list[Record]:
        (outcome,) = await store.append([request], now=NOW)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class StoreContract(_Stores):
    """The storage contract of ``engine._storage.contract.Store``."""

    persistent = True  # whether a database outlives the store that opened it

    async def raw(self, store: Store, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def on_writer(self, store: Store, work: Callable[[Session], Awaitable[Any]]) -> Any:
        """``work(session)`` on a connection of the store that may write."""
        raise NotImplementedError

    # Positions and versions ----------------------------------------------------------------

    async def test_positions_start_at_one_and_versions_count_per_stream(self, url: str) -> None:
        async with self.opened(url) as store:
            assert await store.head() == 0
            a = await self.one(store, AppendRequest("p", "a", [created(),
                                                               metrics("m", [0], [1.0])]))
            b = await self.one(store, AppendRequest("p", "b", [created()]))
            c = await self.one(store, AppendRequest("p", "a", [metrics("m", [1], [2.0])]))
            assert [r.position for r in a + b + c] == [1, 2, 3, 4]
            assert [r.version for r in a + c] == [1, 2, 3]
            assert [r.version for r in b] == [1]
            assert await store.head() == 4

    async def test_group_commit_shares_one_transaction_and_keeps_order(self, url: str) -> None:
        async with self.opened(url) as store:
            requests = [AppendRequest("p", f"r{i}", [created(f"r{i}")]) for i in range(20)]
            outcomes = await store.append(requests, now=NOW)
            positions = [o[0].position for o in outcomes if isinstance(o, list)]
            assert positions == list(range(1, 21))

    async def test_expected_version_mismatch_raises_and_writes_nothing(self, url: str) -> None:
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "a", [created()]))
            with pytest.raises(ConcurrencyError, match="version 1"):
                await self.one(store, AppendRequest("p", "a", [metrics("m", [0], [1.0])],
                                                    expected_version=0))
            assert await store.head() == 1
            done = await self.one(store, AppendRequest("p", "a", [metrics("m", [0], [1.0])],
                                                       expected_version=1))
            assert done[0].version == 2

    async def test_a_resent_event_is_not_written_twice(self, url: str) -> None:
        """A retry after a commit whose reply was lost gets the records the first attempt
        stored (where its events are), not an empty answer; the log holds them once."""
        async with self.opened(url) as store:
            request = AppendRequest("p", "a", [created(), metrics("m", [0, 1], [1.0, 2.0])])
            first = await self.one(store, request)
            again, other = await store.append([AppendRequest("p", "a", list(request.events)),
                                               AppendRequest("p", "b", [created("b")])],
                                              now=NOW + 5)
            assert len(first) == 2
            assert isinstance(again, list)
            assert [_seen(r) for r in again] == [_seen(r) for r in first]
            assert [r.to_event().data for r in again] == [r.to_event().data for r in first]
            # In the form the first attempt's were (metric columns as arrays): commit hooks
            # take either without telling them apart.
            assert [_shapes(r.data) for r in again] == [_shapes(r.data) for r in first]
            assert isinstance(other, list)
            assert [r.position for r in other] == [3]
            assert await store.head() == 3
            state = await store.get_run("p", "a")
            assert state is not None
            assert state.metrics["m"].count == 2
            assert state.version == 2

    async def test_a_group_of_a_round_number_of_events_finds_the_run_it_appends_to(
            self, url: str) -> None:
        """A store that knows nothing yet (just opened) looks up the group's runs and event
        ids in batches of 500: a group of exactly that many events still finds its run."""
        if not self.persistent:
            pytest.skip("needs a database that outlives its store")
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "a", [created("a")]))
        async with self.opened(url) as store:
            records = await self.one(store, AppendRequest(
                "p", "a", [metrics("m", [step], [float(step)]) for step in range(500)]))
            assert [r.version for r in records] == list(range(2, 502))
            state = await store.get_run("p", "a")
            assert state is not None
            assert state.metrics["m"].count == 500

    async def test_the_same_event_twice_in_one_group_is_written_once(self, url: str) -> None:
        """A second copy of an event id in the same group (in one request or in another) is
        already written by the time it comes: it gets the first copy's record."""
        async with self.opened(url) as store:
            point = metrics("m", [0], [1.0])
            twice, again, after = await store.append([
                AppendRequest("p", "a", [created(), point, point]),
                AppendRequest("p", "a", [point]),
                AppendRequest("p", "a", [metrics("m", [1], [2.0])]),
            ], now=NOW)
            assert isinstance(twice, list)
            assert isinstance(again, list)
            assert isinstance(after, list)
            assert [(r.position, r.version) for r in twice] == [(1, 1), (2, 2)]
            assert [(r.position, r.id) for r in again] == [(2, point.id)]
            assert [(r.position, r.version) for r in after] == [(3, 3)]
            records, _ = await store.read(0, limit=10)
            assert [r.id for r in records].count(point.id) == 1
            state = await store.get_run("p", "a")
            assert state is not None
            assert state.metrics["m"].count == 2
            assert await store.verify_rebuild() == []

    async def test_a_refused_request_changes_nothing_and_others_commit(self, url: str) -> None:
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "dup", [created()]))
            outcomes = await store.append([
                AppendRequest("p", "x", [created("x"), metrics("m", [0], [1.0])]),
                AppendRequest("p", "dup", [created("again")]),
                AppendRequest("p", "ghost", [metrics("m", [0], [1.0])]),
                AppendRequest("p", "y", [created("y")]),
            ], now=NOW)
            assert isinstance(outcomes[1], RunExistsError)
            assert isinstance(outcomes[2], RunNotFoundError)
            assert [r.position for r in outcomes[0]] == [2, 3]  # type: ignore[union-attr]
            assert [r.position for r in outcomes[3]] == [4]  # type: ignore[union-attr]
            dup = await store.get_run("p", "dup")
            assert dup is not None
            assert dup.name == "r"
            assert dup.version == 1
            assert await store.get_run("p", "ghost") is None

    async def test_a_step_behind_the_projection_is_refused(self, url: str) -> None:
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "a", [created(), metrics("m", [5], [1.0])]))
            with pytest.raises(ValidationError, match=r"'m'.*step 5"):
                await self.one(store, AppendRequest("p", "a", [metrics("m", [5], [2.0])]))
            state = await store.get_run("p", "a")
            assert state is not None
            assert state.metrics["m"].count == 1

    async def test_a_failing_database_is_a_storage_error_and_writes_nothing(self,
                                                                              url: str) -> None:
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "a", [created()]))
            await self.fault(store, True)
            try:
                with pytest.raises(StorageError) as caught:
                    await store.append([AppendRequest("p", "a", [metrics("m", [0], [1.0])]),
                                        AppendRequest("p", "b", [created("b")])], now=NOW)
                assert isinstance(caught.value.__cause__, self.driver_errors)
                assert await store.head() == 1
            finally:
                await self.fault(store, False)
            done = await self.one(store, AppendRequest("p", "a", [metrics("m", [0], [1.0])]))
            assert [r.position for r in done] == [2]
            assert await store.get_run("p", "b") is None
            assert await store.verify_rebuild() == []

    async def test_a_value_the_database_cannot_take_is_refused_and_reads_go_on(
            self, url: str) -> None:
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "a", [created(), metrics("m", [0], [1.0])]))
            for attempt in range(2):  # on a connection the refusal may have left behind
                with pytest.raises(ValidationError):
                    await store.read(2**64, limit=10)
                with pytest.raises(ValidationError):
                    await store.lineage("p", "a\udc80")
                series = await store.read_series("p", "a", "m", low=None, high=None,
                                                 max_points=None)
                assert series is not None
                assert list(series.steps) == [0], attempt
                assert (await store.lineage("p", "a")) is not None

    # The log is append-only, in the database itself ----------------------------------------

    async def test_update_and_delete_of_events_are_refused_by_the_database(self, url: str) -> None:
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "a", [created()]))
            with pytest.raises(Exception, match="append-only"):
                await self.raw(store, "UPDATE events SET type = 'Tampered'")
            with pytest.raises(Exception, match="append-only"):
                await self.raw(store, "DELETE FROM events")
            (record,), _ = await store.read(0, limit=10)
            assert record.type == ev.RUN_CREATED

    async def test_checkpoints_advance_with_the_log(self, url: str) -> None:
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "a", [created(), metrics("m", [0], [1.0])]))
            rows = await self.raw(store, "SELECT name, position FROM checkpoints")
            assert {name for name, _ in rows} == {"runs", "metrics", "series", "lineage",
                                                  "experiments"}
            assert {position for _, position in rows} == {2}

    async def test_state_and_checkpoints_commit_or_roll_back_together(self, url: str) -> None:
        """A checkpoint not where the log's head is (one projection moved on without the
        others): the append that would move them refuses, and the projection rows it wrote
        before reaching the checkpoints roll back with them."""
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "a", [created(), metrics("m", [0], [1.0])]))
            await self.raw(store, "UPDATE checkpoints SET position = 99 WHERE name = 'lineage'")
            with pytest.raises(EngineError, match="not at position 2"):
                await store.append([
                    AppendRequest("p", "a", [metrics("m", [1], [2.0])]),
                    AppendRequest("p", "b", [created("b"), metrics("m", [0], [1.0])]),
                ], now=NOW)
            assert await store.head() == 2
            assert await store.get_run("p", "b") is None
            state = await store.get_run("p", "a")
            assert state is not None
            assert (state.version, state.metrics["m"].count) == (2, 1)
            assert await store.run_count("p") == 1
            assert await store.projects() == {"p": 1}  # nothing of the refused batch
            rows = await self.raw(store, "SELECT name, position FROM checkpoints")
            assert {name: position for name, position in rows if name != "lineage"} == {
                "runs": 2, "metrics": 2, "series": 2, "experiments": 2}
            await self.raw(store, "UPDATE checkpoints SET position = 2 WHERE name = 'lineage'")
            done = await self.one(store, AppendRequest("p", "b", [created("b")]))
            assert [r.position for r in done] == [3]
            assert await store.verify_rebuild() == []

    async def test_checkpoints_never_go_back(self, url: str) -> None:
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "a", [created(), metrics("m", [0], [1.0])]))
            with pytest.raises(EngineError, match="cannot go back from position 2 to 1"):
                await self.on_writer(store, lambda session: advance(session, "", 2, 1))
            rows = await self.raw(store, "SELECT name, position FROM checkpoints")
            assert {r for _, r in rows} == {2}

    # Reading the log -----------------------------------------------------------------------

    async def test_read_filters_pages_and_reports_what_it_covered(self, url: str) -> None:
        async with self.opened(url) as store:
            for i in range(5):
                await self.one(store, AppendRequest("p", f"r{i}", [created(f"r{i}")]))
            await self.one(store, AppendRequest("q", "other", [created()]))
            page, covered = await store.read(0, limit=2, where=EventFilter(project="p"))
            assert [r.position for r in page] == [1, 2]
            assert covered == 2
            page, covered = await store.read(2, limit=10, where=EventFilter(project="p"))
            assert [r.position for r in page] == [3, 4, 5]
            assert covered == 6  # the head: nothing matching was skipped
            page, _ = await store.read(0, limit=10, where=EventFilter(run_ids=frozenset({"r3"})))
            assert [r.run_id for r in page] == ["r3"]
            page, _ = await store.read(0, limit=10,
                                       where=EventFilter(types=frozenset({ev.RUN_DELETED})))
            assert page == []

    async def test_a_read_covers_no_position_it_did_not_return(self, url: str) -> None:
        """While another connection appends as fast as it can, every page a reader gets says
        it covered exactly the positions it returned (with no filter): a head read apart
        from the page would report positions committed after the page was taken, and a
        subscriber would skip them for good."""
        if not self.persistent:
            pytest.skip("needs a second connection to the same database")
        async with self.opened(url) as writer, self.opened(url) as reader:
            await self.one(writer, AppendRequest("p", "w", [created("w")]))
            stop = anyio.Event()
            steps = iter(range(1_000_000))

            async def append() -> None:
                while not stop.is_set():
                    await self.one(writer, AppendRequest("p", "w", [
                        metrics("m", [next(steps)], [1.0])]))

            after, pages = 0, 0
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(append)
                try:
                    with anyio.move_on_after(2.0):
                        while True:
                            records, covered = await reader.read(after, limit=1_000)
                            assert [r.position for r in records] == \
                                list(range(after + 1, after + 1 + len(records)))
                            # Unfiltered, every position up to what a page covers is in it.
                            assert covered == (records[-1].position if records else after)
                            after = max(after, covered)
                            pages += 1
                finally:
                    stop.set()
            assert pages > 10
            final, covered = await reader.read(0, limit=1_000_000)
            assert [r.position for r in final] == list(range(1, covered + 1))

    @pytest.mark.parametrize(("damage", "table"), [
        ("UPDATE runs SET name = 'forged'", "runs"),
        ("UPDATE metrics SET max = 99", "metrics"),
        ("DELETE FROM run_tags", "run_tags"),
        ("UPDATE series_chunks SET n = n + 1", "series_chunks"),
    ])
    async def test_verify_rebuild_names_each_table_that_differs(self, url: str, damage: str,
                                                               table: str) -> None:
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "a", [
                created("a", tags=["t"]), metrics("m", [0, 1], [1.0, 2.0])]))
            assert await store.verify_rebuild() == []
            await self.on_writer(store, lambda session: session.execute(damage))
            assert await store.verify_rebuild() == [table]
            await store.rebuild()  # the log is the truth: a rebuild mends the projection
            assert await store.verify_rebuild() == []

    async def test_events_are_upcast_on_read_never_rewritten(self, url: str) -> None:
        if not self.persistent:
            pytest.skip("needs a database that outlives its store")
        async with self.opened(url, Upcasters({"Note": 1, **_current()})) as store:
            await self.one(store, AppendRequest("p", "a", [created()]))
            await self.one(store, AppendRequest("p", "a", [NewEvent("Note", {"text": "hi"})]))
        lifted = Upcasters({"Note": 2, **_current()})
        lifted.register("Note", 1, lambda data: {"text": data["text"], "lang": "en"})
        async with self.opened(url, lifted) as store:
            page, _ = await store.read(0, limit=10, where=EventFilter(types=frozenset({"Note"})))
            assert page[0].data == {"text": "hi", "lang": "en"}
            rows = await self.raw(store, "SELECT schema_version FROM events WHERE type = 'Note'")
            assert rows == [(1,)]

    # Projections ---------------------------------------------------------------------------

    async def test_projections_equal_the_fold_and_a_rebuild(self, url: str) -> None:
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "a", [
                created(experiment="e", tags=["t"], config={"lr": 0.1}),
                metrics("loss", list(range(10_000)), [1.0 / (s + 1) for s in range(10_000)]),
                metrics("acc", [0, 5], [math.nan, -0.0])]))
            await self.one(store, AppendRequest("p", "b", [
                created("b", experiment="e", fork={"run_id": "a", "step": 4_500}),
                metrics("loss", [4_501], [9.0])]))
            await self.one(store, AppendRequest("p", "a", [
                NewEvent(ev.RUN_RESUMED, {"rewind_to": 3_000}), metrics("loss", [3_001], [7.0]),
                NewEvent(ev.RUN_DELETED, {})]))
            records, _ = await store.read(0, limit=100, arrays=True)
            fold = Fold().apply_all(records)
            for run_id in ("a", "b"):
                state = await store.get_run("p", run_id)
                assert state is not None
                expected = fold.run_state("p", run_id)
                assert same_state(state, expected), state_diff(state, expected)
                for metric in ("loss", "acc"):
                    series = await store.read_series("p", run_id, metric, low=None, high=None,
                                                     max_points=None)
                    assert series is not None
                    assert series.same_as(fold.series("p", run_id, metric))
            assert await store.get_experiment("p", "e") == fold.experiment("p", "e")
            assert await store.lineage("p", "b") == fold.lineage("p", "b")
            assert await store.verify_rebuild() == []
            before = await store.get_run("p", "b")
            await store.rebuild()
            after = await store.get_run("p", "b")
            assert before is not None
            assert after is not None
            assert same_state(before, after)

    async def test_reopening_keeps_everything(self, url: str) -> None:
        if not self.persistent:
            pytest.skip("an in-memory database does not outlive its connection")
        async with self.opened(url) as store:
            await self.one(store, AppendRequest("p", "a", [created(), metrics("m", [0], [1.0])]))
            before = await store.get_run("p", "a")
        async with self.opened(url) as store:
            after = await store.get_run("p", "a")
            assert before is not None
            assert after is not None
            assert same_state(before, after)
            assert await store.head() == 2


    # Tokens --------------------------------------------------------------------------------

    async def test_tokens_are_saved_listed_found_and_revoked_by_hash(self, url: str) -> None:
        from engine._storage.contract import TokenRow

        mine = TokenRow("tok_1", "p", "write", "a" * 64, NOW, NOW + 60, None)
        theirs = TokenRow("tok_2", "q", "read", "b" * 64, NOW + 1, None, None)
        async with self.opened(url) as store:
            await store.save_token(mine)
            await store.save_token(theirs)
            with pytest.raises(ValidationError):
                await store.save_token(TokenRow("tok_3", "p", "read", "a" * 64, NOW, None,
                                                None))
            assert await store.list_tokens("p") == [mine]
            assert await store.find_token("b" * 64) == theirs
            assert await store.find_token("c" * 64) is None
            revoked = await store.revoke_token("tok_1", NOW + 5)
            assert revoked is not None
            assert revoked.revoked_at == NOW + 5
            again = await store.revoke_token("tok_1", NOW + 9)  # stays revoked as it was
            assert again is not None
            assert again.revoked_at == NOW + 5
            assert await store.revoke_token("tok_9", NOW) is None
            assert [t.id for t in await store.list_tokens(None)] == ["tok_1", "tok_2"]


class WriterContract(_Stores):
    """The writer's group commit, on a real store (one another store can open too)."""

    async def test_concurrent_appends_from_many_runs_share_one_commit(self, url: str) -> None:
        store = open_store(url, durability="normal", upcasters=default_upcasters())
        await store.open()
        calls: list[int] = []
        real = store.append

        async def counting(requests: Any, *, now: float) -> Any:
            calls.append(len(requests))
            return await real(requests, now=now)

        store.append = counting  # type: ignore[method-assign]
        try:
            writer = Writer(store, clock=lambda: NOW, flush_interval=60, batch_points=10**6,
                            max_pending=10**6)
            committed = anyio.Event()
            writer.on_commit.append(lambda records: committed.set())
            async with anyio.create_task_group() as tasks:
                for i in range(30):
                    tasks.start_soon(writer.submit, AppendRequest("p", f"r{i}", [created()]))
                await anyio.wait_all_tasks_blocked()
                tasks.start_soon(writer.run)
                with anyio.fail_after(10):
                    await committed.wait()
                tasks.cancel_scope.cancel()
            assert await store.head() == 30
            assert calls == [30]
        finally:
            await store.close()


    async def test_a_failing_store_drops_nothing_and_flush_says_so_until_it_heals(
            self, url: str) -> None:
        """The store fails three appends with its database's own error: each flush meanwhile
        raises ``StorageError``, everything logged stays buffered (points, tags, the final
        status), and once the store heals it is all written — once."""
        async with engine.connect(url, durability="normal", heartbeat_interval=60,
                                  crash_timeout=600) as tracker:
            writer = tracker._writer
            assert writer is not None
            async with tracker.start_run("r") as run:
                run.log_metrics({"m": 0.0}, step=0)
                await run.flush()
                faulty = Faulty(writer.store, self.fault, times=3)
                writer.store = faulty  # type: ignore[assignment]
                failures: list[StorageError] = []
                step = 1
                for attempt in range(10):
                    for _ in range(50):
                        run.log_metrics({"m": float(step)}, step=step)
                        step += 1
                    run.add_tags(f"t{attempt}")
                    try:
                        await run.flush()
                    except StorageError as exc:
                        failures.append(exc)
                        continue
                    break
                assert len(failures) == faulty.failures == 3
                assert all(isinstance(e.__cause__, self.driver_errors) for e in failures)
            state = await tracker.get_run("r")
            assert state.status == "succeeded"
            assert state.tags == {"t0", "t1", "t2", "t3"}
            assert state.metrics["m"].count == step
            series = await tracker.read_series("r", "m")
            assert list(series.steps) == list(range(step))
            events = [e async for e in tracker.events()]
            assert len({e.id for e in events}) == len(events)
            assert [e.position for e in events] == list(range(1, len(events) + 1))
            store = tracker._store
            assert store is not None
            assert await store.verify_rebuild() == []

    async def test_a_retry_after_a_lost_reply_leaves_subscribers_no_gap(self, url: str) -> None:
        """A commit whose reply is lost is sent again with the next cycle and answered with
        the records it stored, beside new ones, while another process appended in between:
        subscribers are offered each unbroken range on its own, and skip nothing."""
        async with engine.connect(url, durability="normal", poll_interval=3600) as tracker:
            store = tracker._store
            assert store is not None
            real = store.append
            lose = [False]

            async def losing(requests: Any, *, now: float) -> Any:
                outcomes = await real(requests, now=now)
                if lose[0]:
                    lose[0] = False
                    raise StorageError("the reply to COMMIT was lost")
                return outcomes

            store.append = losing  # type: ignore[method-assign]
            subscription = tracker.subscribe(from_position="start")
            async with tracker.start_run("a") as run, self.opened(url) as other:
                lose[0] = True
                run.log_metrics({"m": 1.0}, step=0)
                with pytest.raises(StorageError):
                    await run.flush()
                await self.one(other, AppendRequest("default", "b", [created("b")]))
                run.log_metrics({"m": 2.0}, step=1)
                await run.flush()
            seen: list[int] = []
            with anyio.fail_after(20):
                async for event in subscription:
                    seen.append(event.position)
                    if event.type == ev.STATUS_CHANGED:
                        break
            assert seen == list(range(1, len(seen) + 1)), seen
            series = await tracker.read_series("a", "m")
            assert list(series.steps) == [0, 1]


def _seen(record: Record) -> tuple[Any, ...]:
    return (record.position, record.id, record.project, record.run_id, record.version,
            record.type, record.timestamp)


def _shapes(data: Any) -> Any:
    """The types in a payload, nested as it is."""
    if isinstance(data, dict):
        return {key: _shapes(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_shapes(value) for value in data]
    return type(data).__name__


def _current() -> dict[str, int]:
    return dict(ev.CURRENT_VERSIONS)
