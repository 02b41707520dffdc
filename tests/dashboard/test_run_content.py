"""The run page's tabs in the browser: env and notes in the overview, the logs viewer,
files with image previews and downloads, histograms over steps and confusion matrices;
each as a person sees it, and live."""

from __future__ import annotations

import platform
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import engine
from tests.dashboard.seed import PROJECT, recorded, tracker
from tests.server.live import LiveServer

pytestmark = pytest.mark.browser


def tab(server: LiveServer, name: str, run_id: str = "rich") -> str:
    return f"{server.url}/#/run?project={PROJECT}&id={run_id}&tab={name}"


class Script:
    """A training script on a thread of its own (the page's driver owns this one), doing
    to its open run what it is told, each step flushed before the next order."""

    def __init__(self, server: LiveServer, tmp_path: Path) -> None:
        self.orders: queue.Queue[Callable[[Any], None] | None] = queue.Queue()
        self.done: queue.Queue[object] = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(server, tmp_path))
        self.thread.start()
        assert self.done.get(timeout=30) == "started"

    def _run(self, server: LiveServer, tmp_path: Path) -> None:
        try:
            with tracker(server, tmp_path) as t, t.start_run(run_id="live", name="live") as run:
                run.flush()
                self.done.put("started")
                while (order := self.orders.get(timeout=60)) is not None:
                    order(run)
                    run.flush()
                    self.done.put("done")
            self.done.put("ended")
        except BaseException as exc:  # handed to the test
            self.done.put(exc)

    def do(self, order: Callable[[Any], None]) -> None:
        self.orders.put(order)
        assert self.done.get(timeout=30) == "done"

    def end(self) -> None:
        self.orders.put(None)
        assert self.done.get(timeout=30) == "ended"
        self.thread.join(30)


@pytest.fixture
def script(server: LiveServer, tmp_path: Path) -> Iterator[Script]:
    script = Script(server, tmp_path)
    yield script
    if script.thread.is_alive():
        script.end()


def test_the_overview_shows_env_and_notes_and_a_writer_edits_the_notes(
        page: Any, server: LiveServer, tmp_path: Path) -> None:
    recorded(server, tmp_path)
    page.goto(tab(server, "overview"))
    env = page.locator(".env table.kv")
    env.wait_for()
    rows = dict(zip(env.locator("th").all_inner_texts(), env.locator("td").all_inner_texts(),
                    strict=True))
    assert rows["python/version"] == platform.python_version()
    assert rows["host/name"] == platform.node()
    assert page.locator(".config table.kv").inner_text().split() == ["lr", "0.1"]
    notes = page.locator(".notes-text")
    assert notes.inner_text() == "first line\n<b>not bold</b>"  # text, never markup
    assert page.locator(".notes b").count() == 0
    page.get_by_role("button", name="Edit notes").click()
    page.get_by_label("Notes").fill("warmup 500 steps helped")
    page.get_by_role("button", name="Save notes").click()
    page.wait_for_selector(".notes-text:text-is('warmup 500 steps helped')")
    with httpx.Client(base_url=server.url) as client:
        run = client.get(f"/api/v1/projects/{PROJECT}/run", params={"run_id": "rich"}).json()
    assert run["run"]["notes"] == "warmup 500 steps helped"
    page.reload()  # the tab and the notes are what the server has
    page.wait_for_selector(".notes-text:text-is('warmup 500 steps helped')")


def test_tabs_live_in_the_address_and_move_with_the_arrow_keys(
        page: Any, server: LiveServer, tmp_path: Path) -> None:
    recorded(server, tmp_path)
    page.goto(tab(server, "histograms"))
    selected = page.get_by_role("tab", selected=True)
    assert selected.inner_text().split() == ["Histograms", "1"]  # one histogram key
    assert page.get_by_role("tab", name="Logs").inner_text().split() == ["Logs", "3"]
    selected.press("ArrowRight")
    assert page.get_by_role("tab", selected=True).inner_text().startswith("Confusion")
    assert "tab=matrices" in page.url
    page.reload()
    page.get_by_role("tabpanel").locator("table.matrix").wait_for()


def test_the_logs_viewer_shows_output_as_text_and_follows_new_lines(
        page: Any, server: LiveServer, script: Script) -> None:
    script.do(lambda run: [run.log_text({"logs/stdout": f"line {i}"}, step=i)
                           for i in range(3)])
    script.do(lambda run: run.log_text({"logs/stderr": "<img src=x onerror=alert(1)>"},
                                       step=0))
    page.goto(tab(server, "logs", "live"))
    lines = page.locator(".log .line .t")
    page.wait_for_function("document.querySelectorAll('.log .line').length === 3")
    assert lines.all_inner_texts() == ["line 0", "line 1", "line 2"]
    assert page.locator(".log .line .n").all_inner_texts() == ["0", "1", "2"]
    # Lines logged while the page is open are appended.
    script.do(lambda run: run.log_text({"logs/stdout": "line 3 <b>new</b>"}, step=3))
    page.wait_for_function("document.querySelectorAll('.log .line').length === 4")
    assert lines.all_inner_texts()[-1] == "line 3 <b>new</b>"
    page.get_by_label("Filter lines").fill("line 1")
    assert lines.all_inner_texts() == ["line 1"]
    page.get_by_label("Filter lines").fill("")
    page.get_by_label("Series").select_option("logs/stderr")
    page.wait_for_function("document.querySelector('.log .line .t')?.textContent"
                           " === '<img src=x onerror=alert(1)>'")
    assert page.locator(".log img").count() == 0
    assert "log=logs%2Fstderr" in page.url
    with page.expect_download() as info:
        page.get_by_role("button", name="Download").click()
    assert Path(info.value.path()).read_text() == "<img src=x onerror=alert(1)>\n"


def test_the_logs_viewer_keeps_its_place_when_scrolled_up(
        page: Any, server: LiveServer, script: Script) -> None:
    script.do(lambda run: [run.log_text({"logs/stdout": f"line {i}"}, step=i)
                           for i in range(300)])
    page.goto(tab(server, "logs", "live"))
    page.wait_for_function("document.querySelectorAll('.log .line').length === 300")
    at_end = "(() => { const b = document.querySelector('.log');" \
             " return b.scrollHeight - b.scrollTop - b.clientHeight < 4; })()"
    assert page.evaluate(at_end)  # it opens at the newest line
    page.evaluate("document.querySelector('.log').scrollTop = 0")
    page.wait_for_function("!document.getElementById('log-follow').checked")
    script.do(lambda run: run.log_text({"logs/stdout": "line 300"}, step=300))
    page.wait_for_function("document.querySelectorAll('.log .line').length === 301")
    assert page.evaluate("document.querySelector('.log').scrollTop") == 0
    page.get_by_label("Follow").check()
    assert page.evaluate(at_end)


def test_files_show_sizes_downloads_and_a_slider_through_an_image_series(
        page: Any, server: LiveServer, tmp_path: Path) -> None:
    recorded(server, tmp_path)
    page.goto(tab(server, "files"))
    table = page.locator(".files table.grid-table tbody")
    table.locator("tr").first.wait_for()
    rows = [r.split("\t") for r in table.locator("tr").all_inner_texts()]
    assert [(r[0], r[1]) for r in rows][:3] == [("eval/pred", "0"), ("eval/pred", "1"),
                                                ("eval/pred", "2")]
    weights = next(r for r in rows if r[0] == "model/weights")
    assert weights[4] == "2.9 KiB"  # 3000 bytes
    link = table.locator("tr[data-key='model/weights'] a")
    assert link.get_attribute("download") == "model_weights.bin"
    with page.expect_download() as info:
        link.click()
    assert Path(info.value.path()).read_bytes() == b"\x00" * 3000
    card = page.locator("figure.image-card[data-key='eval/pred']")
    image = card.locator("img")
    page.wait_for_function("document.querySelector(\"figure[data-key='eval/pred'] img\")"
                           "?.naturalWidth === 12")  # the PNG itself, decoded
    assert "step 2 · epoch 2" in card.locator("figcaption").inner_text()
    assert image.get_attribute("alt") == "epoch 2"
    card.get_by_label("Step of eval/pred").press("Home")
    assert "step 0 · epoch 0" in card.locator("figcaption").inner_text()
    page.reload()  # the step chosen is in the address
    card.locator("figcaption").filter(has_text="step 0 · epoch 0").wait_for()
    # Step 0's image: its first third red (the rest black), as logged.
    red = page.evaluate("""async () => {
      const img = document.querySelector("figure[data-key='eval/pred'] img");
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      const g = c.getContext('2d'); g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, 1).data;
      const out = [];
      for (let x = 0; x < c.width; x++) out.push(d[4 * x] > 200 ? 1 : 0);
      return out;
    }""")
    assert red == [1] * 4 + [0] * 8


def test_files_logged_or_uploaded_while_the_tab_is_open_appear(
        page: Any, server: LiveServer, script: Script) -> None:
    page.goto(tab(server, "files", "live"))
    page.get_by_text("No files logged.").wait_for()
    pixels = np.full((4, 6, 3), 200, dtype=np.uint8)
    script.do(lambda run: run.log_files({"eval/img": engine.Image(pixels, caption="first")},
                                        step=7))
    page.wait_for_function("document.querySelector(\"figure[data-key='eval/img'] img\")"
                           "?.naturalWidth === 6")
    caption = page.locator("figure[data-key='eval/img'] figcaption")
    assert "step 7 · first" in caption.inner_text()
    script.do(lambda run: run.upload({"model/weights": b"w" * 2048}))
    row = page.locator(".files tbody tr[data-key='model/weights']")
    row.wait_for()
    assert row.inner_text().split("\t")[4] == "2.0 KiB"
    assert page.get_by_role("tab", name="Files").inner_text().split() == ["Files", "2"]


def test_a_histogram_series_shows_each_steps_bins_and_follows_new_steps(
        page: Any, server: LiveServer, script: Script) -> None:
    def histograms(run: Any) -> None:
        for step in range(5):
            run.log_histograms({"grad/norm": engine.Histogram(
                [float(step), step + 0.5, step + 1.0], [10 * (step + 1), step])}, step=step)

    script.do(histograms)
    page.goto(tab(server, "histograms", "live"))
    card = page.locator("figure[data-key='grad/norm']")
    summary = card.locator(".hist-summary")
    summary.wait_for()
    assert summary.inner_text() == \
        "step 4 · 54 values in 2 bins from 4 to 5 · mean ≈ 4.28704"
    assert card.locator(".axis-steps").inner_text().split("\n") == ["step 0", "step 4"]
    card.get_by_label("Step of grad/norm").press("Home")
    assert summary.inner_text().startswith("step 0 · 10 values in 2 bins from 0 to 1")
    card.locator("summary").click()
    assert [r.split("\t") for r in card.locator("table.bins tbody tr").all_inner_texts()] \
        == [["0", "0.5", "10"], ["0.5", "1", "0"]]
    # The heatmap's rows: step 0's first bin (the row's largest) is drawn at full colour.
    assert page.evaluate("""() => {
      const c = document.querySelector("figure[data-key='grad/norm'] canvas.heatmap");
      const r = window.devicePixelRatio || 1;
      const px = c.getContext('2d').getImageData(5 * r, 5 * r, 1, 1).data;
      return [px[0], px[1], px[2]];
    }""") == [37, 99, 235]
    card.get_by_label("Step of grad/norm").press("End")
    script.do(lambda run: run.log_histograms(
        {"grad/norm": engine.Histogram([0.0, 10.0], [7])}, step=9))
    page.wait_for_function("document.querySelector(\"figure[data-key='grad/norm'] "
                           ".hist-summary\").textContent.startsWith('step 9 · 7 values')")
    assert card.locator(".axis-steps").inner_text().split("\n") == ["step 0", "step 9"]


def test_a_confusion_matrix_is_a_heatmap_with_a_step_chooser(
        page: Any, server: LiveServer, script: Script) -> None:
    def matrices(run: Any) -> None:
        for step, right in ((0, 30), (1, 40), (2, 45)):
            run.log_confusion_matrices({"eval/cm": engine.ConfusionMatrix(
                ["cat", "dog"], [[right, 50 - right], [5, 45]])}, step=step)

    script.do(matrices)
    page.goto(tab(server, "matrices", "live"))
    card = page.locator("figure[data-key='eval/cm']")
    table = card.locator("table.matrix")
    table.wait_for()

    def cells() -> list[list[str]]:
        return [r.split("\t") for r in table.locator("tbody tr").all_inner_texts()]

    assert table.locator("thead th").all_inner_texts()[1:] == ["cat", "dog"]
    assert cells() == [["cat", "45", "5"], ["dog", "5", "45"]]
    assert card.locator(".matrix-summary").inner_text() == \
        "step 2 · 100 items · accuracy 90%"
    card.get_by_label("Step of eval/cm").press("Home")
    assert cells() == [["cat", "30", "20"], ["dog", "5", "45"]]
    assert card.locator(".matrix-summary").inner_text() == \
        "step 0 · 100 items · accuracy 75%"
    page.reload()  # the step chosen is in the address: a link shows the same matrix
    card.locator(".matrix-summary").filter(has_text="step 0 · 100 items").wait_for()
    card.get_by_label("Share of each true label").check()
    assert cells() == [["cat", "60%", "40%"], ["dog", "10%", "90%"]]
    # Shaded by the share: the 90% cell is darker than the 10% one.
    shades = table.locator("tbody td").evaluate_all(
        "tds => tds.map(td => getComputedStyle(td).backgroundColor)")
    assert shades[3] != shades[2]
    assert shades[3] == "rgb(59, 115, 237)"  # the accent at 90%
    # A new step while the page is open: the chooser grows, the view stays on step 0.
    script.do(lambda run: run.log_confusion_matrices({"eval/cm": engine.ConfusionMatrix(
        ["cat", "dog"], [[50, 0], [0, 50]])}, step=3))
    page.wait_for_function("document.querySelector(\"figure[data-key='eval/cm'] "
                           "input[type=range]\").max === '3'")
    assert card.locator(".matrix-summary").inner_text().startswith("step 0")
    card.get_by_label("Step of eval/cm").press("End")
    assert card.locator(".matrix-summary").inner_text() == \
        "step 3 · 100 items · accuracy 100%"
