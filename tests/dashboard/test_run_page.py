"""The run page, the compare page and the experiment page in the browser."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

import engine.sync
from tests.dashboard.seed import PROJECT, sweep, tracker
from tests.server.live import LiveServer

pytestmark = pytest.mark.browser

BLUE = (37, 99, 235)  # the first line's colour

# How many pixels of the chart's canvas are (nearly) the given colour.
COUNT_COLOUR = """([selector, r, g, b]) => {
  const canvas = document.querySelector(selector);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let n = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.abs(data[i] - r) < 30 && Math.abs(data[i + 1] - g) < 30
        && Math.abs(data[i + 2] - b) < 30 && data[i + 3] > 200) n++;
  }
  return n;
}"""


def run_page(server: LiveServer, run_id: str) -> str:
    return f"{server.url}/#/run?project={PROJECT}&id={run_id}"


def test_a_run_page_shows_its_overview_and_draws_a_chart_per_metric(
        page: Any, server: LiveServer, tmp_path: Path) -> None:
    sweep(server, tmp_path)
    page.goto(run_page(server, "run-1"))
    page.wait_for_selector("h1:has-text('sweep-1')")
    assert page.locator("h1 .chip").inner_text() == "succeeded"
    overview = page.locator("dl.overview")
    assert overview.get_by_role("link", name="sweep").get_attribute("href") == \
        "#/experiment?project=team%2Fvision&name=sweep"
    assert overview.get_by_role("link", name="fork").is_visible()  # its fork, at step 20
    assert "at step 20" in overview.inner_text()
    assert page.locator(".config table.kv").inner_text().split() == \
        ["batch", "64", "lr", "0.01", "optimizer", "adam"]
    groups = page.locator(".chart-group h3").all_inner_texts()
    assert [g.lower() for g in groups] == ["eval", "train"]
    chart = page.locator("figure.chart[data-metric='train/loss']")
    chart.locator("canvas").wait_for()
    page.wait_for_function("document.querySelector(\"figure[data-metric='train/loss']\")"
                           ".dataset.points === '50'")
    drawn = page.evaluate(COUNT_COLOUR, ["figure[data-metric='train/loss'] canvas", *BLUE])
    assert drawn > 50  # the line itself: axes and grid are grey
    assert page.get_by_role("button", name="Abort…").count() == 0  # it has ended


def test_a_fork_links_back_and_shows_its_inherited_points(
        page: Any, server: LiveServer, tmp_path: Path) -> None:
    sweep(server, tmp_path)
    page.goto(run_page(server, "fork"))
    page.wait_for_selector("h1:has-text('forked')")
    page.wait_for_function("document.querySelector(\"figure[data-metric='train/loss']\")"
                           "?.dataset.points === '22'")  # steps 0..20 of run-1, then 21
    page.locator("dl.overview").get_by_role("link", name="run-1").click()
    page.wait_for_selector("h1:has-text('sweep-1')")


def test_smoothing_and_log_scale_stay_in_the_address(page: Any, server: LiveServer,
                                                     tmp_path: Path) -> None:
    sweep(server, tmp_path)
    page.goto(run_page(server, "run-0"))
    page.locator("figure[data-metric='train/loss'] canvas").wait_for()
    page.get_by_label("Log scale").check()
    page.locator("#smoothing").fill("0.6")
    assert "log=1" in page.url
    assert "smooth=0.6" in page.url
    page.reload()
    page.locator("figure[data-metric='train/loss'] canvas").wait_for()
    assert page.get_by_label("Log scale").is_checked()
    assert page.locator("figure[data-metric='train/loss'] .u-legend").inner_text().count(
        "smoothed") == 1


def test_csv_download_holds_every_point(page: Any, server: LiveServer,
                                        tmp_path: Path) -> None:
    sweep(server, tmp_path)
    page.goto(run_page(server, "run-0"))
    chart = page.locator("figure[data-metric='train/loss']")
    chart.locator("canvas").wait_for()
    with page.expect_download() as info:
        chart.get_by_role("button", name="CSV").click()
    lines = Path(info.value.path()).read_text().splitlines()
    assert lines[0] == "run,step,value,timestamp"
    assert len(lines) == 51
    assert lines[1].startswith("sweep-0,0,1,")


def test_compare_overlays_runs_and_marks_config_differences(
        page: Any, server: LiveServer, tmp_path: Path) -> None:
    sweep(server, tmp_path)
    page.goto(f"{server.url}/#/compare?project={PROJECT}&runs=run-0,run-1,fork")
    page.wait_for_selector("table.compare")
    rows = page.locator("table.compare tbody tr")
    assert rows.count() == 3
    differing = page.locator("table.compare tr.differs th").all_inner_texts()
    assert [t.replace("≠", "").strip() for t in differing] == ["lr", "optimizer"]
    assert page.locator("table.compare tbody tr:not(.differs) th").inner_text() == "batch"
    page.get_by_label("Only differences").check()
    assert rows.count() == 2
    assert "diff=1" in page.url
    page.wait_for_function("document.querySelector(\"figure[data-metric='train/loss']\")"
                           "?.dataset.points === '122'")  # 50 + 50 + 22
    legend = page.locator("figure[data-metric='train/loss'] .u-legend").inner_text()
    assert all(name in legend for name in ("sweep-0", "sweep-1", "forked"))


def test_the_experiment_page_shows_its_head_and_history(page: Any, server: LiveServer,
                                                        tmp_path: Path) -> None:
    sweep(server, tmp_path)
    page.goto(f"{server.url}/#/experiment?project={PROJECT}&name=sweep")
    page.wait_for_selector("text=History (3 runs, oldest first)")
    history = page.locator("table.grid-table tbody tr td:nth-child(2) a").all_inner_texts()
    assert history == ["sweep-0", "sweep-1", "sweep-2"]
    assert "sweep-2" in page.locator("section[aria-labelledby=head-h]").inner_text()


def test_user_text_is_shown_as_text_never_as_markup(page: Any, server: LiveServer,
                                                    tmp_path: Path) -> None:
    evil = "<img src=x onerror=\"window.pwned=1\">"
    with tracker(server, tmp_path) as t, t.start_run(
            run_id="evil", name=evil, tags=(evil,), experiment=evil,
            config={evil: evil}) as run:
        run.log_metrics({evil: 1.0}, step=0)
    for fragment in (f"#/runs?project={PROJECT}", f"#/run?project={PROJECT}&id=evil",
                     f"#/compare?project={PROJECT}&runs=evil"):
        page.goto(f"{server.url}/{fragment}")
        page.wait_for_function("text => document.querySelector('main').innerText"
                               ".split(text).length > 2", arg=evil)  # shown, twice at least
        assert page.locator("main img").count() == 0
        assert page.evaluate("window.pwned") is None


def test_the_abort_button_stops_a_running_run(page: Any, server: LiveServer,
                                              tmp_path: Path) -> None:
    started = threading.Event()
    outcome: list[str] = []

    def train() -> None:
        with engine.sync.connect(server.url, project=PROJECT, durability="normal",
                                 spool=str(tmp_path / "train.db")) as t, \
                t.start_run(run_id="long", name="long") as run:
            run.log_metrics({"loss": 1.0}, step=0)
            run.flush()
            started.set()
            deadline = time.monotonic() + 30
            step = 0
            while not run.abort_requested and time.monotonic() < deadline:
                step += 1  # still training: the page refreshes while the reason is typed
                run.log_metrics({"loss": 1.0 / step}, step=step)
                time.sleep(0.05)
            outcome.append(run.abort_reason or "")

    thread = threading.Thread(target=train)
    thread.start()
    try:
        assert started.wait(30)
        page.goto(run_page(server, "long"))
        page.get_by_role("button", name="Abort…").click()
        page.get_by_label("Reason").press_sequentially("diverged", delay=60)
        page.get_by_role("button", name="Abort run").click()
        page.wait_for_selector("h1 .chip:has-text('aborted')", timeout=15_000)
    finally:
        thread.join(30)
    assert outcome == ["diverged"]
    assert page.get_by_role("button", name="Abort…").count() == 0


def test_nan_and_infinity_are_gaps_in_the_chart_and_exact_in_the_csv(
        page: Any, server: LiveServer, tmp_path: Path) -> None:
    values = [1.0, float("nan"), 3.0, float("inf"), 5.0, float("-inf"), 7.0]
    with tracker(server, tmp_path) as t, t.start_run(run_id="odd") as run:
        for step, value in enumerate(values):
            run.log_metrics({"loss": value}, step=step)
    page.goto(run_page(server, "odd"))
    chart = page.locator("figure[data-metric='loss']")
    page.wait_for_function("document.querySelector(\"figure[data-metric='loss']\")"
                           "?.dataset.points === '7'")
    assert page.evaluate(COUNT_COLOUR, ["figure[data-metric='loss'] canvas", *BLUE]) > 0
    with page.expect_download() as info:
        chart.get_by_role("button", name="CSV").click()
    got = [line.split(",")[2] for line in Path(info.value.path()).read_text().splitlines()[1:]]
    assert got == ["1", "nan", "3", "inf", "5", "-inf", "7"]


def test_the_x_axis_by_time_and_the_png_download(page: Any, server: LiveServer,
                                                 tmp_path: Path) -> None:
    sweep(server, tmp_path)
    page.goto(run_page(server, "run-0"))
    chart = page.locator("figure[data-metric='train/loss']")
    chart.locator("canvas").wait_for()
    page.get_by_label("X axis").select_option("relative")
    assert "x=relative" in page.url
    assert chart.locator(".u-legend").inner_text().startswith("seconds")
    with page.expect_download() as info:
        chart.get_by_role("button", name="PNG").click()
    assert info.value.suggested_filename == "train_loss.png"
    assert Path(info.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_tags_are_added_and_removed_from_the_run_page(page: Any, server: LiveServer,
                                                      tmp_path: Path) -> None:
    sweep(server, tmp_path)
    page.goto(run_page(server, "run-0"))
    tags = page.locator("dl.overview + .tags")
    tags.locator(".chip", has_text="baseline").wait_for()
    page.get_by_label("Add a tag").fill("best <b>so far</b>")
    page.get_by_role("button", name="Add", exact=True).click()
    tags.locator(".chip", has_text="best <b>so far</b>").wait_for()
    page.get_by_role("button", name="Remove tag baseline").click()
    page.wait_for_function("!document.querySelector('.tags').innerText.includes('baseline')")
    page.reload()
    tags.locator(".chip", has_text="best <b>so far</b>").wait_for()
    assert tags.locator(".chip").all_inner_texts() == ["best <b>so far</b>"]


def test_wall_time_ticks_show_the_digits_their_spacing_needs(page: Any,
                                                            server: LiveServer) -> None:
    page.goto(f"{server.url}/")
    labels = page.evaluate("""async () => {
      const { wallTicks } = await import('/js/chart.js');
      const at = (h, m, s, ms) => new Date(2026, 11, 7, h, m, s, ms).getTime() / 1000;
      return {
        fast: wallTicks(null, [at(14, 5, 9, 150), at(14, 5, 9, 200), at(14, 5, 9, 250)],
                        0, 110, 0.05),
        millis: wallTicks(null, [at(14, 5, 9, 1), at(14, 5, 9, 3)], 0, 110, 0.002),
        seconds: wallTicks(null, [at(14, 5, 9, 0), at(14, 5, 19, 0)], 0, 90, 10),
        hours: wallTicks(null, [at(22, 0, 0, 0), at(0, 0, 0, 0) + 86400], 0, 90, 7200),
      };
    }""")
    assert labels == {
        "fast": ["14:05:09.15", "14:05:09.20", "14:05:09.25"],  # a run shorter than a second
        "millis": ["14:05:09.001", "14:05:09.003"],
        "seconds": ["14:05:09", "14:05:19"],
        "hours": ["12-07 22:00", "12-08 00:00"],  # the date where it changes
    }
