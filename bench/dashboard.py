"""The dashboard in a real browser: Chromium driven by Playwright, timed by the page itself.

    .venv/bin/python -m bench.dashboard [--points 1000000] [--runs 10000] [--repeat 5]
                                        [--huge 10000000]

Three targets:

- **first chart of a 1M-point metric**: from the start of navigation to the run page until
  the chart's canvas is drawn (uPlot's ``draw`` hook marks it), at most 500 ms;
- **runs table of 10,000 runs**: from the start of navigation until the table's first rows
  are drawn and usable, at most 1 s (the rest arrive in pages of 2,000 while the table is in
  use; the time until all 10,000 are in is shown too);
- **log → pixel**: from ``log_metrics`` in a training script (the remote tracker, through
  the server) until the open run page has drawn that point, at most 1 s.

With ``--huge N``, a series of N points (a spike every 99,991 steps) is measured too: its
first chart (navigation → drawn), how many points the chart was sent and whether every spike
is among them (the server's downsampling keeps each bucket's min and max), and a zoom (a
drag across a tenth of the chart → the finer range fetched and drawn).

The times are read from the page's ``performance`` marks (``kittiwake:chart-drawn``,
``kittiwake:runs``), so they are the browser's own clock, not the harness's. Each figure is
the median of ``--repeat`` fresh page loads, each in a new browser context (an empty
cache; the very first load is shown apart). The server is ``kittiwake ui`` on the SQLite
file, in a process of its own; Chromium is the system's
(``KITTIWAKE_CHROMIUM``, default ``/usr/bin/chromium``). Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import math
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


SPIKE = 99_991  # every this many steps a point 0.5 above the curve


def _value(step: int) -> float:
    return 1.0 / (1 + step / 1000) + (0.5 if step % SPIKE == 0 else 0.0)


async def _fill(path: str, runs: int, points: int, huge: int) -> None:
    async with engine.connect(path, durability="normal") as tracker:
        if runs:
            started = time.perf_counter()
            await populate(tracker, runs)
            print(f"  {runs:,} runs in {time.perf_counter() - started:.1f} s", flush=True)
        for name, count in (("big", points), ("huge", huge)):
            if count:
                await _series(tracker, name, count)


async def _series(tracker: engine.Tracker, name: str, points: int) -> None:
    """One run (its id and project both ``name``) of one metric of ``points`` points."""
    started = time.perf_counter()
    async with tracker.start_run(run_id=name, name=name, project=name) as run:
        for step in range(points):
            run.log_metrics({"loss": _value(step)}, step=step)
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


ZOOMED = """([after, below]) => new Promise((resolve) => {
  const given = performance.now() + 10000;  // a drag the chart took for a click: no zoom
  const look = () => {
    if (performance.now() > given) { resolve(null); return; }
    const found = performance.getEntriesByName("kittiwake:chart-drawn").find(
      (m) => m.startTime > after && m.detail.lastStep < below);
    if (found) resolve([found.startTime - after, found.detail.points,
                        found.detail.lastStep]); else requestAnimationFrame(look);
  };
  look();
})"""


WHOLE = """([after, last]) => new Promise((resolve) => {
  const look = () => {
    const found = performance.getEntriesByName("kittiwake:chart-drawn").find(
      (m) => m.startTime > after && m.detail.lastStep >= last);
    if (found) resolve(); else requestAnimationFrame(look);
  };
  look();
})"""


def _huge(browser: Any, url: str, points: int, repeat: int) -> dict[str, Any]:
    """The N-point chart: first drawn, what it was sent, and zooms into a tenth of it."""
    page_url = f"{url}/#/run?project=huge&id=huge"
    cold, first = _loads(browser, page_url, "kittiwake:chart-drawn", "points", 1, repeat)
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    zooms: list[float] = []
    zoom_points = 0
    try:
        page.goto(page_url)
        page.evaluate(MARK, ["kittiwake:chart-drawn", "points", 1])
        chart = page.locator("figure[data-metric='loss']")
        drawn = int(chart.get_attribute("data-points") or 0)
        box = page.locator("figure[data-metric='loss'] .u-over").bounding_box()
        assert box is not None
        width = int(page.evaluate("document.querySelector(\"figure[data-metric='loss'] "
                                  ".plot\").clientWidth"))
        for i in range(repeat):
            if i:  # back to the whole series, drawn again before the next drag
                before = float(page.evaluate("performance.now()"))
                page.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + 20)
                page.evaluate(WHOLE, [before, points - 1])
            left = box["x"] + box["width"] * (0.3 + 0.05 * i % 0.4)
            page.mouse.move(left, box["y"] + 40)
            page.mouse.down()
            page.mouse.move(left + box["width"] / 10, box["y"] + 40, steps=4)
            after = float(page.evaluate("performance.now()"))
            page.mouse.up()
            found = page.evaluate(ZOOMED, [after, points - 1])
            if found is None:
                print("  a drag did not zoom (left out)", flush=True)
                continue
            took, zoom_points, _ = found
            zooms.append(float(took))
    finally:
        context.close()
    # What the chart asked for, asked again: how big the answer is, and the spikes in it.
    import httpx

    with httpx.Client(base_url=url, timeout=60) as client:
        answer = client.get("/api/v1/projects/huge/series", params={
            "run_id": "huge", "metric": "loss", "max_points": width * 4})
    return {"cold": cold, "first": first, "drawn": drawn, "width": width,
            "bytes": len(answer.content), "zooms": zooms, "zoom_points": zoom_points}


async def _spikes(path: str, points: int, max_points: int) -> tuple[int, int]:
    """(spikes in the downsampled series the chart draws, spikes logged)."""
    async with engine.connect(path) as tracker:
        series = await tracker.read_series("huge", "loss", max_points=max_points,
                                           project="huge")
    kept = {int(s) for s, v in zip(series.steps, series.values, strict=True)
            if int(s) % SPIKE == 0 and v == _value(int(s))}
    return len(kept), len(range(0, points, SPIKE))


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
    parser.add_argument("--huge", type=int, default=0,
                        help="also chart a series of this many points (10000000)")
    parser.add_argument("--huge-only", action="store_true",
                        help="measure the --huge series alone")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(f"machine: {os.cpu_count()} cores, {_cpu()}, Python {platform.python_version()}, "
          f"Chromium at {CHROMIUM}")
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "dashboard.db")
        print(f"filling {path}...", flush=True)
        if args.huge_only:
            args.runs = args.points = 0
        anyio.run(_fill, path, args.runs, args.points, args.huge)
        common = None
        with Server(path) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox"])
            version = browser.version
            huge = _huge(browser, url, args.huge, args.repeat) if args.huge else None
            if not args.huge_only:
                cold, chart = _loads(browser, f"{url}/#/run?project=big&id=big",
                                     "kittiwake:chart-drawn", "points", 1, args.repeat)
                cold_t, table = _loads(browser, f"{url}/#/runs?project=default",
                                       "kittiwake:runs", "rows", 1, args.repeat)
                _, table_all = _loads(browser, f"{url}/#/runs?project=default",
                                      "kittiwake:runs-all", "rows", args.runs, args.repeat)
                live = _log_to_pixel(browser, url, max(10, args.repeat * 4), tmp)
                common = (cold, chart, cold_t, table, table_all, live)
            browser.close()
        # The playwright's event loop is closed: the engine can read the database.
        return _report(version, args, common, huge, path)


def _report(version: str, args: argparse.Namespace,
            common: tuple[float, list[float], float, list[float], list[float], list[float]]
            | None, huge: dict[str, Any] | None, path: str) -> int:
    print(f"Chromium {version}")
    lines: list[str] = []
    if common is not None:
        cold, chart, cold_t, table, table_all, live = common
        lines += [
            _line(f"first chart of a {args.points:,}-point metric, navigation → drawn",
                  "chart", chart, cold),
            _line(f"runs table of {args.runs:,} runs, navigation → first rows drawn", "table",
                  table, cold_t),
            f"  ... until all {args.runs:,} runs are in the table: median "
            f"{statistics.median(table_all):.0f} ms ({min(table_all):.0f}-"
            f"{max(table_all):.0f})",
            _line("log → pixel (remote tracker → server → live stream → chart)", "live",
                  live),
        ]
    if huge is not None:
        kept, spikes = anyio.run(_spikes, path, args.huge, huge["width"] * 4)
        zooms = huge["zooms"] or [math.nan]
        lines += [
            _line(f"first chart of a {args.huge:,}-point metric, navigation → drawn", "chart",
                  huge["first"], huge["cold"]),
            f"  ... the chart ({huge['width']} px wide) was sent {huge['drawn']:,} points "
            f"({huge['bytes'] / 1024:.0f} KiB), with {kept} of the {spikes} spikes",
            f"  zoom into a tenth (drag → finer range fetched and drawn, "
            f"{huge['zoom_points']:,} points): median {statistics.median(zooms):.0f} "
            f"ms ({min(zooms):.0f}-{max(zooms):.0f}, {len(huge['zooms'])} drags)",
        ]
    for line in lines:
        print(line)
    return 1 if any("MISSED" in line for line in lines) else 0


if __name__ == "__main__":
    raise SystemExit(main())
