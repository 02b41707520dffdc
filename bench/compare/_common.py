"""What every worker of the comparison shares: the workloads' data, timing and reporting.

Each worker script (``work_*.py``) runs one workload of one library in a fresh process and
prints a single ``RESULT {json}`` line. This module is imported by workers running in two
different virtual environments (the project's and the peers'), so it uses the standard
library only.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from importlib import metadata
from pathlib import Path
from typing import Any

# W1 and W2: one run, 10 metrics logged together at each of 20,000 steps.
METRICS: tuple[str, ...] = tuple(f"m{i}" for i in range(10))
STEPS = 20_000
POINTS = STEPS * len(METRICS)
READ_METRIC = "m3"  # the series W2 reads back
RUN_NAME = "w1-run"
PROJECT = "bench"
EXPERIMENT = "compare"
W1_CONFIG: dict[str, Any] = {"lr": 0.001, "optimizer": "adam", "batch_size": 64}

# W3: 1,000 runs, each with 5 configs and 3 metrics logged at 10 steps.
W3_RUNS = 1_000
W3_STEPS = 10
W3_METRICS: tuple[str, ...] = ("m0", "m1", "m2")
W3_LRS: tuple[float, ...] = (0.1, 0.03, 0.01, 0.003, 0.001)
W3_LR_BELOW = 0.05
W3_M0_ABOVE = 0.5
W3_TOP = 10
W3_GROUP = 50  # runs Kittiwake starts concurrently

Result = dict[str, Any]
Handler = Callable[[Path], Result]


def w1_rows() -> list[dict[str, float]]:
    """The 20,000 metric dicts of W1, built before any clock starts so that every library
    is handed exactly the same objects and no library pays for making them."""
    return [
        {name: (i + 1) / (step + 1) + (step % 97) * 1e-4 for i, name in enumerate(METRICS)}
        for step in range(STEPS)
    ]


def w3_name(k: int) -> str:
    """The name of W3 run ``k``."""
    return f"run-{k:04d}"


def w3_config(k: int) -> dict[str, Any]:
    """The five configs of W3 run ``k``."""
    return {
        "lr": W3_LRS[k % len(W3_LRS)],
        "optimizer": ("adam", "sgd")[(k // 5) % 2],
        "batch_size": (32, 64, 128, 256)[k % 4],
        "layers": 2 + k % 7,
        "dropout": (0.0, 0.1, 0.2)[k % 3],
    }


def w3_final_m0(k: int) -> float:
    """m0's last value in run ``k``: a permutation of distinct values 0.0005 … 0.9995, so
    there are no ties and nothing sits near the 0.5 threshold (float32 stores keep order)."""
    return ((k * 7919) % W3_RUNS + 0.5) / W3_RUNS


def w3_metrics(k: int, step: int) -> dict[str, float]:
    """The three metrics of W3 run ``k`` at ``step``; m0 rises to its final value."""
    m0 = w3_final_m0(k) - (W3_STEPS - 1 - step) * 0.01
    return {"m0": m0, "m1": 1.0 - m0, "m2": float(k % 13) + step * 0.5}


def w3_expected() -> list[str]:
    """The right answer of the W3 query: runs with lr < 0.05 and last m0 > 0.5, top 10 by
    last m0, highest first."""
    hits = [k for k in range(W3_RUNS)
            if w3_config(k)["lr"] < W3_LR_BELOW and w3_final_m0(k) > W3_M0_ABOVE]
    hits.sort(key=w3_final_m0, reverse=True)
    return [w3_name(k) for k in hits[:W3_TOP]]


def w3_check(names: list[str]) -> bool:
    """True when a library's W3 answer is the right one, in the right order."""
    return list(names) == w3_expected()


def series_check(steps: list[int] | Any, values: list[float] | Any) -> bool:
    """True when W2 read back all 20,000 points of ``READ_METRIC`` in step order."""
    steps = [int(s) for s in steps]
    index = METRICS.index(READ_METRIC)
    last = STEPS - 1
    expected_last = (index + 1) / STEPS + (last % 97) * 1e-4
    return (len(steps) == STEPS and steps == list(range(STEPS))
            and abs(float(values[-1]) - expected_last) < 1e-6)


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def server(command: Sequence[str], probe: str, *, cwd: Path,
           timeout: float = 120.0) -> Iterator[None]:
    """A tracking server (W5) run by ``command`` in a process of its own, from the moment
    ``probe`` (a URL) answers until the block ends; then stopped with SIGTERM."""
    process = subprocess.Popen(list(command), cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(probe, timeout=2):
                    break
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with {process.returncode}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not answer in {timeout:.0f} s") from None
                time.sleep(0.1)
        yield
    finally:
        # The whole session: a server that runs workers in processes of their own.
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class Clock:
    """A stopwatch: ``with Clock() as c: ...`` then ``c.seconds``."""

    def __init__(self) -> None:
        self.start = 0.0
        self.seconds = 0.0

    def __enter__(self) -> Clock:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def version_of(distribution: str) -> str:
    """The installed version of ``distribution`` (or ``"?"``)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def _max_rss_mb(who: int) -> float:
    # Linux reports ru_maxrss in KiB.
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


def max_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    return _max_rss_mb(resource.RUSAGE_SELF)


def disk_mb(path: Path) -> float:
    """What the files under ``path`` take on disk, in MiB."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue  # a library's temporary file that went away meanwhile
    return round(total / 2**20, 1)


def main(library: str, handlers: Mapping[str, Handler]) -> None:
    """Run the workload named by ``argv[1]`` on the data directory ``argv[2]`` and print
    its result as one ``RESULT`` line (errors become ``{"error": ...}``)."""
    workload, data_dir = sys.argv[1], Path(sys.argv[2])
    started = time.perf_counter()
    rss_start = _max_rss_mb(resource.RUSAGE_SELF)
    try:
        result = handlers[workload](data_dir)
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    result.setdefault("library", library)
    result["workload"] = workload
    result["process_seconds"] = round(time.perf_counter() - started, 3)
    result["python"] = sys.version.split()[0]
    result["rss_start_mb"] = rss_start
    result["peak_rss_mb"] = _max_rss_mb(resource.RUSAGE_SELF)
    # Helper processes that exited and were waited for (wandb-core after teardown).
    result["children_peak_rss_mb"] = _max_rss_mb(resource.RUSAGE_CHILDREN)
    result["pid"] = os.getpid()
    result["disk_mb"] = disk_mb(data_dir)
    sys.stdout.flush()
    print("RESULT " + json.dumps(result), flush=True)
