"""Long series and many runs: the chart gets points at its width and zooms by fetching the
finer range; the table draws only the rows in view."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.seed import PROJECT, tracker
from tests.server.live import LiveServer

pytestmark = pytest.mark.browser

CHART = "figure[data-metric='loss']"
TOP_QUARTER_BLUE = """(selector) => {
  const canvas = document.querySelector(selector);
  const rows = Math.floor(canvas.height / 4);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, rows).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - 37) < 30 && Math.abs(data[i + 1] - 99) < 30
        && Math.abs(data[i + 2] - 235) < 30) n++;
  }
  return n;
}"""


def test_a_long_series_comes_at_the_charts_width_and_zoom_fetches_the_finer_range(
        page: Any, server: LiveServer, tmp_path: Path) -> None:
    with tracker(server, tmp_path) as t, t.start_run(run_id="long") as run:
        for step in range(100_000):
            # One spike: the downsampled chart must still show it.
            run.log_metrics({"loss": 100.0 if step == 77_777 else 1.0}, step=step)
    page.goto(f"{server.url}/#/run?project={PROJECT}&id=long")
    page.wait_for_function(f"document.querySelector(\"{CHART}\")?.dataset.points > 0")
    shown = int(page.evaluate(f"document.querySelector(\"{CHART}\").dataset.points"))
    width = page.evaluate(f"document.querySelector(\"{CHART} .plot\").clientWidth")
    assert shown <= 4 * width < 100_000  # a bucket per pixel, four points each
    # The spike is drawn: each bucket keeps its min and max, so the line reaches the top
    # quarter of the plot (the flat part lies along the bottom).
    assert page.evaluate(TOP_QUARTER_BLUE, f"{CHART} canvas") > 5
    over = page.locator(f"{CHART} .u-over")
    box = over.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.70, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.72, y, steps=5)
    page.mouse.up()
    note = page.locator(f"{CHART} .zoom-note")
    note.filter(has_text="double-click to reset").wait_for()
    page.wait_for_function(f"document.querySelector(\"{CHART}\").dataset.lastStep < 99999")
    low, high = (int(s.replace(",", "")) for s in
                 note.inner_text().split("steps ")[1].split(" ·")[0].split("\N{EN DASH}"))
    assert 60_000 < low < high < 80_000
    fine = int(page.evaluate(f"document.querySelector(\"{CHART}\").dataset.points"))
    assert fine == min(high - low + 1, 4 * width)  # every point of a short range
    over.dblclick()
    page.wait_for_function(f"document.querySelector(\"{CHART}\").dataset.lastStep === '99999'")
    assert note.inner_text() == ""


def test_the_table_draws_only_the_rows_in_view(page: Any, server: LiveServer,
                                               tmp_path: Path) -> None:
    with tracker(server, tmp_path) as t:
        for i in range(400):
            with t.start_run(run_id=f"r{i:03d}", config={"i": i}) as run:
                run.log_metrics({"m": float(i)}, step=0)
    page.goto(f"{server.url}/#/runs?project={PROJECT}&sort=config.i")
    page.wait_for_selector("text=400 runs")
    rows = page.locator("table.runs tbody tr[data-run-id]")
    assert 10 < rows.count() < 100
    assert rows.first.get_attribute("data-run-id") == "r000"
    table = page.get_by_role("grid")
    table.focus()
    table.press("End")
    page.wait_for_selector("table.runs tr[data-run-id='r399'].active")
    assert rows.count() < 100
    assert page.get_by_role("grid").get_attribute("aria-rowcount") == "401"
    table.press("Home")
    page.wait_for_selector("table.runs tr[data-run-id='r000'].active")
