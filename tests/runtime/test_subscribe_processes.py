"""Subscriptions and aborts across trackers and processes: the head poll, the one shared
read of other writers' events, and a writer (or an abort) in another process."""

from __future__ import annotations

import sys
import textwrap
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream

import engine
from engine._storage.contract import Store
from tests.conftest import MakeTracker
from tests.subscribing import (
    Drain,
    GatedStore,
    needs_shared_database,
    positions,
    subscription,
    write_run,
)


class HeldPoll:
    """The head doorbell in a test's hands: each ``wait_for_head`` waits for ``answer()``."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.polls = 0
        self.withins: set[float] = set()
        self.reads = 0
        self.polling = anyio.Event()
        self._answer = anyio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def wait_for_head(self, beyond: int, within: float) -> int:
        self.polls += 1
        self.withins.add(within)
        self.polling.set()
        await self._answer.wait()
        self._answer = anyio.Event()
        self.polling = anyio.Event()
        return await self._store.head()

    def answer(self) -> None:
        self._answer.set()

    async def read(self, after: int, **options: Any) -> Any:
        self.reads += 1
        return await self._store.read(after, **options)


async def test_other_writers_reach_subscribers_through_one_poll_and_one_read(
        make: MakeTracker, backend: str) -> None:
    needs_shared_database(backend)
    async with make(poll_interval=0.01) as here, make() as elsewhere:
        assert here._liveness is not None
        poll = HeldPoll(here._liveness.store)
        here._liveness.store = poll  # type: ignore[assignment]
        await anyio.wait_all_tasks_blocked()
        assert poll.polls == 0  # nobody cares about the head yet: no query at all
        own_reads = GatedStore(here._store)  # type: ignore[arg-type]
        subs = [subscription(here, own_reads, "live") for _ in range(3)]
        for sub in subs:
            await sub.wait_caught_up()
        drains = [Drain(sub) for sub in subs]
        async with anyio.create_task_group() as tasks:
            for drain in drains:
                tasks.start_soon(drain.run)
            with anyio.fail_after(30):
                await poll.polling.wait()
            await write_run(elsewhere, "remote", 3)
            log = await positions(here)
            await anyio.wait_all_tasks_blocked()
            # Until the poll answers, nothing of the other writer reaches the subscribers.
            assert [d.seen for d in drains] == [[], [], []]
            assert poll.polls == 1
            reads = own_reads.reads
            poll.answer()
            with anyio.fail_after(30):
                for drain in drains:
                    await drain.until(len(log))
                await poll.polling.wait()
            assert [d.seen for d in drains] == [log] * 3
            # One read of the new events, shared: no subscriber read the log itself.
            assert own_reads.reads == reads
            assert poll.reads >= 1
            assert poll.polls == 2  # one poll at a time, each answered before the next
            assert poll.withins == {0.01}
            for sub in subs:
                await sub.aclose()
            poll.answer()  # the loop sees nobody cares any more, and stops polling
            await anyio.wait_all_tasks_blocked()
            assert poll.polls == 2
            tasks.cancel_scope.cancel()


WRITER = textwrap.dedent("""
    import asyncio, sys
    import engine

    async def main(path):
        async with engine.connect(path, durability="normal") as tracker:
            async with tracker.start_run("remote") as run:
                for step in range(20):
                    run.log_metrics({"m": float(step)}, step=step)
                    await asyncio.sleep(0.005)

    asyncio.run(main(sys.argv[1]))
""")

ABORTABLE = textwrap.dedent("""
    import asyncio, sys
    import anyio, engine

    async def main(path):
        async with engine.connect(path, durability="normal") as tracker:
            async with tracker.start_run("victim") as run:
                run.log_metrics({"m": 1.0}, step=0)
                await run.flush()
                print("started", flush=True)
                await anyio.sleep(60)
            print("aborted" if run.abort_requested else "finished", flush=True)

    asyncio.run(main(sys.argv[1]))
""")


async def test_a_writer_in_another_process_is_seen_by_subscribers(file_url: str) -> None:
    async with engine.connect(file_url) as tracker:
        sub = tracker.subscribe(runs=["remote"], from_position="live")
        await sub.wait_caught_up()
        child = await anyio.open_process([sys.executable, "-c", WRITER, file_url])
        steps: list[int] = []
        with anyio.fail_after(30):
            async for event in sub:
                if event.type == "MetricsLogged":
                    steps.extend(event.data["metrics"]["m"]["steps"])
                if event.type == "StatusChanged":
                    break
        await child.wait()
        await child.aclose()
        assert steps == list(range(20))


async def test_abort_from_another_process_cancels_the_body(file_url: str) -> None:
    async with await anyio.open_process([sys.executable, "-c", ABORTABLE, file_url]) as child:
        assert child.stdout is not None
        lines = BufferedByteReceiveStream(child.stdout)
        with anyio.fail_after(30):
            assert await lines.receive_until(b"\n", 100) == b"started"
            async with engine.connect(file_url) as tracker:
                await tracker.abort_run("victim", reason="diverged")
            assert await lines.receive_until(b"\n", 100) == b"aborted"
            assert await child.wait() == 0
    async with engine.connect(file_url) as tracker:
        state = await tracker.get_run("victim")
        assert state.status == "aborted"
        assert state.status_reason == "diverged"
