"""kill -9 at random instants: nothing flushed is lost, and the projections stay consistent.

A child process logs to one run without pause and prints each step once ``flush`` returned
for it. The parent kills it at a random moment, reopens the database, and checks that every
reported step is there (with no gap and no duplicate), that the projections equal the fold of
the log and a rebuild, and then lets the next trial resume the same run.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import engine
from engine._core.fold import Fold
from tests.strategies import same_state, state_diff

CHILD = textwrap.dedent("""
    import asyncio, sys
    import engine

    async def main(path, durability):
        async with engine.connect(path, durability=durability) as tracker:
            async with tracker.start_run("victim", resume=True) as run:
                state = await tracker.get_run("victim")
                summary = state.metrics.get("m")
                step = 0 if summary is None else summary.last_step + 1
                while True:
                    for _ in range(50):
                        run.log_metrics({"m": float(step), "n": -float(step)}, step=step)
                        step += 1
                    await run.flush()
                    print(step - 1, flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
""")


def _kill_after_random_delay(path: str, durability: str, rng: random.Random) -> int:
    """Run the child until a random instant after its first flush; the last step it reported
    as flushed (-1 if none)."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, path, durability],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    try:
        first = child.stdout.readline()
        assert first, child.stderr.read() if child.stderr else "child died"
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        rest = child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
        child.stdout.close()
        if child.stderr is not None:
            child.stderr.close()
    reported = [int(line) for line in (first + rest).split()]
    return reported[-1] if reported else -1


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["full", "normal"])
async def test_nothing_flushed_is_lost_when_the_process_is_killed(tmp_path: Path,
                                                                  durability: str) -> None:
    path = str(tmp_path / "crash.db")
    rng = random.Random(durability)
    flushed = -1
    for _ in range(5):
        flushed = max(flushed, _kill_after_random_delay(path, durability, rng))
        async with engine.connect(path, durability=durability) as tracker:
            series = await tracker.read_series("victim", "m")
            assert list(series.steps) == list(range(len(series))), "a gap or a duplicate"
            assert len(series) > flushed, f"step {flushed} was flushed, then lost"
            assert list(series.values) == [float(s) for s in series.steps]
            fold = Fold()
            async for event in tracker.events():
                fold.apply(event)
            state = await tracker.get_run("victim")
            expected = fold.run_state(tracker.project, "victim")
            assert same_state(state, expected), state_diff(state, expected)
            assert series.same_as(fold.series(tracker.project, "victim", "m"))
            store = tracker._store
            assert store is not None
            assert await store.verify_rebuild() == []
