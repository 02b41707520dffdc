"""Starting a run: a generated id costs no commit before logging starts, the tracker's own
reads still find the run at once, and a generated id that turns out to be taken never lets
the new run's data into the run that holds it."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

import engine
from engine import Status
from engine._core import events as ev
from engine._runtime import opening
from engine._storage.contract import AppendRequest
from engine.errors import ClosedError, RunExistsError
from tests.conftest import MakeTracker
from tests.runtime.test_lifecycle import needs_shared_database


async def test_a_generated_run_is_committed_with_what_it_logged(make: MakeTracker,
                                                                 backend: str) -> None:
    needs_shared_database(backend)
    async with make(flush_interval=5.0) as tracker, make() as elsewhere:
        before = [e async for e in elsewhere.events()]
        async with tracker.start_run(config={"lr": 0.1}) as run:
            run.log_metrics({"loss": 0.5}, step=0)
            # Nothing was committed to start it: another process does not see it yet...
            assert [e async for e in elsewhere.events()] == before
            # ...while this tracker's own reads do (they wait for its creation).
            state = await tracker.get_run(run.run_id)
            assert state.status is Status.RUNNING
            assert state.config == {"lr": 0.1}
        events = [e async for e in elsewhere.events()][len(before):]
        assert [e.type for e in events] == ["RunCreated", "MetricsLogged", "StatusChanged"]
        assert [e.position for e in events] == list(range(events[0].position,
                                                          events[0].position + 3))
        assert (await elsewhere.get_run(run.run_id)).status is Status.SUCCEEDED


async def test_a_run_with_a_given_id_exists_for_everyone_on_entry(make: MakeTracker,
                                                                  backend: str) -> None:
    needs_shared_database(backend)
    async with make(flush_interval=5.0) as tracker, make() as elsewhere, \
            tracker.start_run("named"):
        assert (await elsewhere.get_run("named")).status is Status.RUNNING


async def test_a_taken_generated_id_writes_nothing_into_the_run_that_holds_it(
        make: MakeTracker, monkeypatch: pytest.MonkeyPatch) -> None:
    async with make() as tracker:
        async with tracker.start_run("taken", config={"owner": "first"}) as first:
            first.log_metrics({"loss": 1.0}, step=0)
        before = await tracker.get_run("taken")
        monkeypatch.setattr(opening, "new_run_id", lambda: "taken")
        second = None
        with pytest.raises(RunExistsError, match="taken"):  # noqa: PT012 (the block is the act)
            async with tracker.start_run(config={"owner": "second"}) as second:
                second.log_metrics({"loss": 2.0}, step=5)
                second.add_tags("second")
                await second.flush()
        assert second is not None
        with pytest.raises((RunExistsError, ClosedError)):
            second.log_metrics({"loss": 3.0}, step=6)
        after = await tracker.get_run("taken")
        assert after == before  # the same version, config, tags, metrics and status
        assert (await tracker.read_series("taken", "loss")).steps.tolist() == [0]


async def test_many_generated_runs_one_after_another_all_land(make: MakeTracker) -> None:
    async with make() as tracker:
        ids = []
        for k in range(30):
            async with tracker.start_run(config={"k": k}) as run:
                run.log_metrics({"loss": float(k)}, step=0)
            ids.append(run.run_id)
        runs = await tracker.list_runs(order_by="config.k")
        assert [r.run_id for r in runs] == ids
        assert all(r.status is Status.SUCCEEDED and r.metrics["loss"].count == 1 for r in runs)


class _HeldCreation:
    """A store that holds back the commit of a RunCreated for ``run_id`` until released."""

    def __init__(self, inner: Any, run_id: str) -> None:
        self.inner, self.run_id = inner, run_id
        self.entered, self.release = anyio.Event(), anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append(self, requests: Sequence[AppendRequest], *, now: float) -> Any:
        if any(r.run_id == self.run_id and r.events and r.events[0].type == ev.RUN_CREATED
               for r in requests):
            self.entered.set()
            await self.release.wait()
        return await self.inner.append(requests, now=now)


async def test_what_a_refused_run_logged_while_its_creation_was_committing_is_refused_too(
        make: MakeTracker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Points logged while the creation of a generated id was on its way to the store, and
    the flush waiting for them, get the refusal once the id turns out taken: the flush
    does not wait until the tracker closes, and the points do not count as pending."""
    async with make(flush_interval=5.0) as tracker:
        async with tracker.start_run("taken"):
            pass
        writer = tracker._writer
        assert writer is not None
        held = _HeldCreation(writer.store, "taken")
        writer.store = held  # type: ignore[assignment]
        monkeypatch.setattr(opening, "new_run_id", lambda: "taken")
        outcomes: list[BaseException] = []
        both = anyio.Event()

        async def flush(run: Any) -> None:
            try:
                await run.flush()
            except (RunExistsError, ClosedError) as exc:
                outcomes.append(exc)
            if len(outcomes) == 2:
                both.set()

        with pytest.raises(RunExistsError):  # noqa: PT012 (the block is the act)
            async with tracker.start_run() as second, anyio.create_task_group() as tasks:
                second.log_metrics({"loss": 1.0}, step=0)
                tasks.start_soon(flush, second)
                with anyio.fail_after(30):
                    await held.entered.wait()
                second.log_metrics({"loss": 2.0}, step=1)  # while the creation commits
                tasks.start_soon(flush, second)
                await anyio.wait_all_tasks_blocked()
                held.release.set()
                with anyio.fail_after(30):
                    await both.wait()
        assert [type(e) for e in outcomes] == [RunExistsError, RunExistsError]
        async with tracker.start_run("after") as run:  # one more cycle of the writer
            run.log_metrics({"m": 1.0}, step=0)
            await run.flush()
        assert writer.pending == 0  # nothing of the refused run counts against the bound


_RESUMER = """
import asyncio, sys
import engine

async def main(url, me, runs):
    async with engine.connect(url, durability="normal") as tracker:
        for k in range(runs):
            async with tracker.start_run(f"shared-{k}", resume=True) as run:
                run.log_metrics({f"p{me}": float(k)}, step=0)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


async def test_processes_that_create_or_resume_one_run_at_once_all_get_it(
        db_url: str, backend: str) -> None:
    """Four training processes resume the same runs, none of which exists yet: every call
    gets the run (created once, resumed by the others), and each keeps what it logged."""
    needs_shared_database(backend)
    processes, runs = 4, 10
    with anyio.fail_after(120):
        children = [await anyio.open_process([sys.executable, "-c", _RESUMER, db_url,
                                              str(me), str(runs)])
                    for me in range(processes)]
        outcomes = []
        for child in children:
            async with child:
                assert child.stderr is not None
                errors = b"".join([chunk async for chunk in child.stderr])
                outcomes.append((await child.wait(), errors.decode()))
    assert outcomes == [(0, "")] * processes
    async with engine.connect(db_url) as tracker:
        for k in range(runs):
            state = await tracker.get_run(f"shared-{k}")
            assert set(state.metrics) == {f"p{me}" for me in range(processes)}
        created = [e.run_id async for e in tracker.events() if e.type == "RunCreated"]
        assert sorted(created) == sorted(f"shared-{k}" for k in range(runs))
