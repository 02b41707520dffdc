"""What recording the machine costs a training process: system metrics and the environment.

    .venv/bin/python -m bench.system                # every measurement
    .venv/bin/python -m bench.system sampler        # one of: sampler, loop, environment

``sampler``: the CPU time of one ``SystemSampler.sample()`` (this process's user + system
time over 200 samples), and the share of a core it comes to at the default interval of 10 s
and at 1 s. ``loop``: the real sampling loop at 1 s for 6 s, the process's whole CPU time
over that span (thread hand-offs and wake-ups included), as a share of a core. Target: under
1% of a core at the default interval.

``environment``: ``environment()`` the first time in a process (git included; run from the
project's work tree, in 5 fresh processes, the median) and once known; and what
``environment_async`` costs the event loop — the longest time it held the loop, first call
(in 5 fresh processes whose anyio worker threads are already started, as a tracker's are:
the very first ``to_thread`` call of a process imports anyio's backend, 20-50 ms) and
known. The same measure over a worker thread that only sleeps gives the noise floor (GIL
hand-offs, other load on the machine). Target: at most 5 ms above that floor (medians).

Prints one JSON object per measurement, each with its target and whether it is met.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread

from engine._runtime.environment import environment, environment_async
from engine._runtime.system import DEFAULT_INTERVAL, Sample, SystemSampler

MAX_CORE_SHARE = 0.01
MAX_LOOP_MS = 5.0

FIRST_CALL = textwrap.dedent("""
    import asyncio, json, sys, time
    import anyio.to_thread
    from bench.system import _loop_held
    from engine._runtime.environment import environment, environment_async

    async def held(call):
        await anyio.to_thread.run_sync(lambda: None)  # a tracker has its anyio loaded
        return await _loop_held(call)

    async def idle():
        await anyio.to_thread.run_sync(time.sleep, 0.02)

    if sys.argv[1] == "call":
        began = time.perf_counter()
        env = environment()
        print(json.dumps({"ms": (time.perf_counter() - began) * 1e3,
                          "git": any(key.startswith("git/") for key in env)}))
    else:
        call = environment_async if sys.argv[1] == "held" else idle
        print(json.dumps({"held_ms": asyncio.run(held(call))}))
""")


def _target(result: dict[str, Any], target: str, met: bool) -> dict[str, Any]:
    return {**result, "target": target, "target_met": met}


def sampler(samples: int = 200) -> list[dict[str, Any]]:
    """CPU time per sample, and the share of a core at 10 s and 1 s."""
    with SystemSampler() as system:
        system.sample()  # first reads of /proc are colder than the rest
        began = time.process_time()
        for _ in range(samples):
            system.sample()
        per_sample = (time.process_time() - began) / samples
        names = len(system.sample().values)
    share = per_sample / DEFAULT_INTERVAL
    return [_target({"benchmark": "system_sampler", "cpu_ms_per_sample": per_sample * 1e3,
                     "values_per_sample": names,
                     "core_share_at_10s_pct": share * 100,
                     "core_share_at_1s_pct": per_sample * 100},
                    "< 1% of a core at the default 10 s interval", share < MAX_CORE_SHARE)]


def loop(seconds: float = 6.0) -> list[dict[str, Any]]:
    """The sampling loop at 1 s, its whole CPU cost over ``seconds``."""
    return asyncio.run(_loop(seconds))


async def _loop(seconds: float) -> list[dict[str, Any]]:
    emitted: list[Sample] = []
    first = asyncio.Event()

    def emit(sample: Sample) -> None:
        emitted.append(sample)
        first.set()

    with SystemSampler() as system:
        task = asyncio.create_task(system.run(emit, 1.0))
        await first.wait()  # from here on: the loop as it runs, its start-up left out
        began_cpu, began = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - began_cpu, time.perf_counter() - began
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    share = cpu / wall
    return [_target({"benchmark": "system_loop_1s", "seconds": round(wall, 2),
                     "samples": len(emitted) - 1, "cpu_ms": cpu * 1e3,
                     "core_share_pct": share * 100},
                    "< 1% of a core, even at 1 s", share < MAX_CORE_SHARE)]


async def _loop_held(call: Callable[[], Awaitable[object]]) -> float:
    """The longest the event loop went without turning while ``call`` ran, in ms."""
    ticks: list[float] = []
    done = asyncio.Event()

    async def tick() -> None:
        while not done.is_set():
            ticks.append(time.perf_counter())
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    began = time.perf_counter()
    await call()
    ended = time.perf_counter()
    done.set()
    await ticker
    marks = [began, *(t for t in ticks if began < t < ended), ended]
    return max(b - a for a, b in itertools.pairwise(marks)) * 1e3


def environment_cost(processes: int = 5) -> list[dict[str, Any]]:
    """``environment()`` first and known, and what the async variant holds the loop."""
    def first(mode: str) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-c", FIRST_CALL, mode], check=True,
                              capture_output=True, text=True)
        return dict(json.loads(done.stdout))

    firsts = [first("call") for _ in range(processes)]
    helds = [first("held")["held_ms"] for _ in range(processes)]
    floor = [first("floor")["held_ms"] for _ in range(processes)]
    return asyncio.run(_environment_cost(firsts, helds, floor))


async def _environment_cost(firsts: list[dict[str, Any]], helds: list[float],
                            floor: list[float], calls: int = 1000) -> list[dict[str, Any]]:
    await anyio.to_thread.run_sync(environment)
    began = time.perf_counter()
    for _ in range(calls):
        environment()
    known_ms = (time.perf_counter() - began) / calls * 1e3
    known_loop_ms = statistics.median([await _loop_held(environment_async) for _ in range(50)])
    result = {"benchmark": "environment",
              "in_git_work_tree": all(first["git"] for first in firsts),
              "first_call_ms": statistics.median(first["ms"] for first in firsts),
              "known_call_ms": known_ms,
              "async_first_call_loop_held_ms": statistics.median(helds),
              "async_first_call_loop_held_max_ms": max(helds),
              "async_known_call_loop_held_ms": known_loop_ms,
              "loop_held_noise_floor_ms": statistics.median(floor)}
    allowed = MAX_LOOP_MS + statistics.median(floor)
    met = statistics.median(helds) <= allowed and known_loop_ms <= allowed
    return [_target(result, f"environment_async holds the event loop <= {MAX_LOOP_MS:g} ms "
                    "above the noise floor", met)]


BENCHMARKS = {"sampler": sampler, "loop": loop, "environment": environment_cost}


def main(argv: list[str]) -> None:
    """Run the named measurements (all by default) and print their results."""
    for name in argv or list(BENCHMARKS):
        for result in BENCHMARKS[name]():
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
