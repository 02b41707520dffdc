"""The dashboard in a real browser: Chromium driven by Playwright, timed by the page itself.

    .venv/bin/python -m bench.dashboard [--points 1000000] [--runs 10000] [--repeat 5]

Three targets:

- **first chart of a 1M-point metric**: from the start of navigation to the run page until
  the chart's canvas is drawn (uPlot's ``draw`` hook marks it), at most 500 ms;
- **runs table of 10,000 runs**: from the start of navigation until the table's first rows
  are drawn and usable, at most 1 s (the rest arrive in pages of 2,000 while the table is in
  use; the time until all 10,000 are in is shown too);
- **log → pixel**: from ``log_metrics`` in a training script (the remote tracker, through
  the server) until the open run page has drawn that point, at most 1 s.

The times are read from the page's ``performance`` marks (``kittiwake:chart-drawn``,
``kittiwake:runs``), so they are the browser's own clock, not the harness's. Each figure is
the median of ``--repeat`` fresh page loads, each in a new browser context (an empty
cache; the very first load is shown apart). The server is ``kittiwake ui`` on the SQLite
file, in a process of its own; Chromium is the system's
(``KITTIWAKE_CHROMIUM``, default ``/usr/bin/chromium``). Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

import engine
import engine.sync

from .query import _cpu, populate

CHROMIUM = os.environ.get("KITTIWAKE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
TARGETS_MS = {"chart": 500.0, "table": 1000.0, "live": 1000.0}


class Server:
    """``kittiwake ui`` serving ``db`` on a free loopback port, in a process of its own (as a
    user runs it: the browser's driver in this process does not share its interpreter)."""

    def __init__(self, db: str) -> None:
        self.db = db
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        kittiwake = str(Path(sys.executable).with_name("kittiwake"))
        self.process = subprocess.Popen([kittiwake, "ui", self.db, "--no-browser"],
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not found:
            raise RuntimeError(f"kittiwake ui did not start: {line!r}")
        return found.group(0)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(30)


async def _fill(path: str, runs: int, points: int) -> None:
    async with engine.connect(path, durability="normal") as tracker:
        started = time.perf_counter()
        await populate(tracker, runs)
        print(f"  {runs:,} runs in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        async with tracker.start_run(run_id="big", name="big", project="big") as run:
            for step in range(points):
                value = 1.0 / (1 + step / 1000) + (0.5 if step % 99_991 == 0 else 0.0)
                run.log_metrics({"loss": value}, step=step)
                if step % 100_000 == 99_999:
                    await run.flush()
        print(f"  {points:,} points in {time.perf_counter() - started:.1f} s", flush=True)


MARK = """([name, key, value]) => new Promise((resolve) => {
  const look = () => {
    const found = performance.getEntriesByName(name).find(
      (m) => key === null || (m.detail && m.detail[key] >= value));
    if (found) resolve(found.startTime); else requestAnimationFrame(look);
  };
  look();
})"""


def _page_load(browser: Any, url: str, mark: str, key: str | None, value: float) -> float:
    """Milliseconds from navigation start to the first ``mark`` (whose detail[key] >= value)."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        page.goto(url)
        return float(page.evaluate(MARK, [mark, key, value]))
    finally:
        context.close()


def _loads(browser: Any, url: str, mark: str, key: str | None, value: float,
           repeat: int) -> tuple[float, list[float]]:
    cold = _page_load(browser, url, mark, key, value)
    return cold, [_page_load(browser, url, mark, key, value) for _ in range(repeat)]


def _log_to_pixel(browser: Any, url: str, repeat: int, tmp: str) -> list[float]:
    """Log a point, then wait for the open page to draw it; the delay each time, in ms."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    delays: list[float] = []
    with engine.sync.connect(url, project="live", durability="normal",
                             spool=os.path.join(tmp, "spool.db")) as tracker, \
            tracker.start_run(run_id="live", name="live") as run:
        run.log_metrics({"loss": 1.0}, step=0)
        run.flush()
        page.goto(f"{url}/#/run?project=live&id=live")
        page.evaluate(MARK, ["kittiwake:chart-drawn", "lastStep", 0])
        origin = float(page.evaluate("performance.timeOrigin"))
        for step in range(1, repeat + 1):
            time.sleep(0.2)
            logged = time.time() * 1000
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
            drawn = float(page.evaluate(MARK, ["kittiwake:chart-drawn", "lastStep", step]))
            delays.append(origin + drawn - logged)
    context.close()
    return delays


def _line(label: str, target: str, times: list[float], cold: float | None = None) -> str:
    median = statistics.median(times)
    spread = f"{min(times):.0f}-{max(times):.0f}"
    extra = f", cold {cold:.0f} ms" if cold is not None else ""
    verdict = "met" if median <= TARGETS_MS[target] else "MISSED"
    return (f"{label}: median {median:.0f} ms ({len(times)} runs: {spread}{extra}); "
            f"target <= {TARGETS_MS[target]:.0f} ms: {verdict}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(f"machine: {os.cpu_count()} cores, {_cpu()}, Python {platform.python_version()}, "
          f"Chromium at {CHROMIUM}")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "dashboard.db")
        print(f"filling {path}...", flush=True)
        anyio.run(_fill, path, args.runs, args.points)
        with Server(path) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox"])
            version = browser.version
            cold, chart = _loads(browser, f"{url}/#/run?project=big&id=big",
                                 "kittiwake:chart-drawn", "points", 1, args.repeat)
            cold_t, table = _loads(browser, f"{url}/#/runs?project=default", "kittiwake:runs",
                                   "rows", 1, args.repeat)
            _, table_all = _loads(browser, f"{url}/#/runs?project=default",
                                  "kittiwake:runs-all", "rows", args.runs, args.repeat)
            live = _log_to_pixel(browser, url, max(10, args.repeat * 4), tmp)
            browser.close()
    print(f"Chromium {version}")
    lines = [
        _line(f"first chart of a {args.points:,}-point metric, navigation → drawn", "chart",
              chart, cold),
        _line(f"runs table of {args.runs:,} runs, navigation → first rows drawn", "table",
              table, cold_t),
        f"  ... until all {args.runs:,} runs are in the table: median "
        f"{statistics.median(table_all):.0f} ms ({min(table_all):.0f}-{max(table_all):.0f})",
        _line("log → pixel (remote tracker → server → live stream → chart)", "live", live),
    ]
    for line in lines:
        print(line)
    return 1 if any("MISSED" in line for line in lines) else 0


if __name__ == "__main__":
    raise SystemExit(main())
