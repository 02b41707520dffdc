"""Rebuilds over many pages while writers keep appending: the swap loses and repeats nothing."""

from __future__ import annotations

import anyio

from engine._core.fold import Fold
from tests.conftest import MakeTracker
from tests.strategies import same_state, state_diff


async def test_a_rebuild_while_writers_append_equals_the_log(make: MakeTracker) -> None:
    async with make() as tracker:
        for r in range(3):
            async with tracker.start_run(f"r{r}", experiment="e") as run:
                for batch in range(20):  # 60 events of 20,000 points: many rebuild pages
                    for step in range(batch * 20_000, (batch + 1) * 20_000):
                        run.log_metrics({"loss": step * 0.5}, step=step)
                    await run.flush()
        stop = anyio.Event()

        async def keep_writing() -> None:
            async with tracker.start_run("live", fork=("r1", 123_456)) as run:
                step = 123_457
                while not stop.is_set():
                    run.log_metrics({"loss": float(step)}, step=step)
                    step += 1
                    if step % 500 == 0:
                        await run.flush()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(keep_writing)
            await tracker.rebuild_projections()
            await tracker.rebuild_projections()
            stop.set()
        store = tracker._store
        assert store is not None
        assert await store.verify_rebuild() == []
        fold = Fold()
        async for event in tracker.events():
            fold.apply(event)
        for run_id in ("r0", "r1", "r2", "live"):
            state = await tracker.get_run(run_id)
            expected = fold.run_state(tracker.project, run_id)
            assert same_state(state, expected), state_diff(state, expected)
            series = await tracker.read_series(run_id, "loss")
            assert series.same_as(fold.series(tracker.project, run_id, "loss"))
