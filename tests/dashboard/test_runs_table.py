"""The runs table as a person uses it: sort by a column, filter with a query (and see where
a bad one went wrong), choose columns, move with the keyboard, select runs to compare."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import Console
from tests.dashboard.seed import PROJECT, sweep, tracker
from tests.server.live import LiveServer

pytestmark = pytest.mark.browser

RUNS = f"#/runs?project={PROJECT}"


def names(page: Any) -> list[str]:
    return page.locator("table.runs tbody tr[data-run-id] td.name a").all_inner_texts()


def wait_for_order(page: Any, run_ids: list[str]) -> None:
    page.wait_for_function("ids => JSON.stringify([...document.querySelectorAll("
                           "'table.runs tr[data-run-id]')].map(r => r.dataset.runId)) === "
                           "JSON.stringify(ids)", arg=run_ids)


def open_table(page: Any, server: LiveServer, fragment: str = RUNS) -> None:
    page.goto(server.url + "/" + fragment)
    page.wait_for_selector("table.runs tbody tr[data-run-id]")


def test_the_table_lists_runs_and_sorts_by_a_clicked_column(
        page: Any, server: LiveServer, tmp_path: Path) -> None:
    sweep(server, tmp_path)
    open_table(page, server)
    assert sorted(names(page)) == ["forked", "sweep-0", "sweep-1", "sweep-2"]
    assert names(page)[0] == "forked"  # newest first by default
    header = page.get_by_role("columnheader", name="metrics train/loss")
    header.get_by_role("button").click()
    wait_for_order(page, ["fork", "run-0", "run-1", "run-2"])  # loss 0.1, 0.2, 0.5, 0.9
    assert header.get_attribute("aria-sort") == "ascending"
    header.get_by_role("button").click()
    wait_for_order(page, ["run-2", "run-1", "run-0", "fork"])
    assert "sort=-metrics.train%2Floss" in page.url or "sort=-metrics.train/loss" in page.url


def test_a_query_filters_and_survives_a_reload(page: Any, server: LiveServer,
                                               tmp_path: Path) -> None:
    sweep(server, tmp_path)
    open_table(page, server)
    box = page.get_by_label("Filter")
    box.fill("config.lr >= 0.01 and tags contains 'lr'")
    box.press("Enter")
    page.wait_for_function("document.querySelectorAll('table.runs tr[data-run-id]').length"
                           " === 2")
    assert sorted(names(page)) == ["forked", "sweep-1"]
    assert page.locator("text=2 runs").is_visible()
    page.reload()
    page.wait_for_selector("table.runs tbody tr[data-run-id]")
    assert page.get_by_label("Filter").input_value() == "config.lr >= 0.01 and tags contains 'lr'"
    assert sorted(names(page)) == ["forked", "sweep-1"]


def test_a_bad_query_shows_its_error_at_its_position(page: Any, server: LiveServer,
                                                     tmp_path: Path, console: Console) -> None:
    console.expected.append("400")  # the browser logs the refused request itself
    sweep(server, tmp_path)
    open_table(page, server)
    box = page.get_by_label("Filter")
    box.fill("config.lr >= and status = 'running'")
    box.press("Enter")
    error = page.locator("#query-error")
    error.locator("mark").wait_for()
    assert box.get_attribute("aria-invalid") == "true"
    assert error.locator("code.pointed").inner_text().startswith("config.lr >= ")
    assert error.locator("mark").inner_text() == "a"  # where `and` stands instead of a value
    assert "position 13" in error.inner_text()
    assert page.evaluate("document.getElementById('query').selectionStart") == 13
    box.fill("status = 'succeeded'")
    box.press("Enter")
    page.wait_for_function("!document.querySelector('#query-error mark')")
    assert box.get_attribute("aria-invalid") is None


def test_chips_narrow_the_query(page: Any, server: LiveServer, tmp_path: Path) -> None:
    sweep(server, tmp_path)
    open_table(page, server)
    page.locator("table.runs button.chip.tag", has_text="baseline").first.click()
    page.wait_for_function("document.querySelectorAll('table.runs tr[data-run-id]').length"
                           " === 1")
    assert names(page) == ["sweep-0"]
    assert page.get_by_label("Filter").input_value() == "tags contains 'baseline'"


def test_the_column_chooser_adds_a_config_column(page: Any, server: LiveServer,
                                                 tmp_path: Path) -> None:
    sweep(server, tmp_path)
    open_table(page, server)
    page.locator("details.chooser summary").click()
    page.locator(".chooser-panel").get_by_label("optimizer").check()
    header = page.get_by_role("columnheader", name="config optimizer")
    header.wait_for()
    cells = page.locator("table.runs tbody tr[data-run-id] td:last-child").all_inner_texts()
    assert sorted(cells) == ["adam", "adam", "adam", "sgd"]
    page.reload()
    page.get_by_role("columnheader", name="config optimizer").wait_for()


def test_keyboard_moves_selects_and_opens_and_selection_leads_to_compare(
        page: Any, server: LiveServer, tmp_path: Path) -> None:
    sweep(server, tmp_path)
    open_table(page, server)
    table = page.get_by_role("grid")
    table.focus()
    table.press("ArrowDown")
    table.press(" ")
    table.press("ArrowDown")
    table.press(" ")
    selected = page.locator("table.runs tr[aria-selected=true]").all()
    assert [r.get_attribute("data-run-id") for r in selected] == ["run-2", "run-1"]
    compare = page.get_by_role("link", name="Compare 2 runs")
    assert "runs=run-2%2Crun-1" in (compare.get_attribute("href") or "") or \
        "runs=run-2,run-1" in (compare.get_attribute("href") or "")
    table.press("Enter")
    page.wait_for_selector("h1:has-text('sweep-1')")
    page.go_back()
    page.wait_for_selector("table.runs tr[aria-selected=true]")
    assert len(page.locator("table.runs tr[aria-selected=true]").all()) == 2


def test_group_by_shows_counts_and_a_group_opens_its_runs(page: Any, server: LiveServer,
                                                          tmp_path: Path) -> None:
    sweep(server, tmp_path)
    open_table(page, server)
    page.get_by_label("Group by").select_option("config.optimizer")
    grouped = page.get_by_role("table", name="Runs grouped by config.optimizer")
    grouped.wait_for()
    rows = grouped.locator("tbody tr")
    assert [r.split("\t")[:2] for r in rows.all_inner_texts()] == [["adam", "3"], ["sgd", "1"]]
    # train/loss over adam's three runs (0.2, 0.5, 0.9): mean (min - max)
    assert "0.533333 (0.2 \N{EN DASH} 0.9)" in grouped.inner_text()
    page.reload()
    grouped.wait_for()  # the grouping is in the address
    grouped.get_by_role("button", name="sgd").click()
    page.wait_for_function("document.querySelectorAll('table.runs tr[data-run-id]').length"
                           " === 1")
    assert names(page) == ["forked"]
    assert page.get_by_label("Filter").input_value() == "config.optimizer = 'sgd'"
    assert not grouped.is_visible()


def _inside(inner: dict[str, float] | None, outer: dict[str, float] | None) -> bool:
    assert inner is not None
    assert outer is not None
    return (inner["x"] >= outer["x"] - 0.5 and inner["y"] >= outer["y"] - 0.5
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 0.5
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + 0.5)


def test_every_tag_of_a_run_is_seen_in_its_row(page: Any, server: LiveServer,
                                                tmp_path: Path) -> None:
    """Tags sit on one line in the row's fixed height (the table scrolls by rows of one
    height): two or three are all shown whole, in a table as wide as a laptop's screen with
    its default columns; a list too long for the column ends in "+N", which names every tag
    on hover."""
    page.set_viewport_size({"width": 1280, "height": 800})
    metrics = {"train/loss": 0.5, "train/acc": 0.8, "val/loss": 0.6, "val/accuracy": 0.75}
    with tracker(server, tmp_path) as t:
        for run_id, tags in (("one", ("baseline",)), ("two", ("baseline", "sweep")),
                             ("three", ("adam", "diverged", "sweep"))):
            with t.start_run(run_id=run_id, name=f"run-{run_id}", experiment="resnet-sweep",
                             tags=tags) as run:
                run.log_metrics(metrics, step=0)
    open_table(page, server)
    page.wait_for_function("document.querySelectorAll('table.runs tr[data-run-id]').length"
                           " === 3")
    for run_id, tags in (("one", ["baseline"]), ("two", ["baseline", "sweep"]),
                         ("three", ["adam", "diverged", "sweep"])):
        row = page.locator(f"table.runs tr[data-run-id={run_id}]")
        cell = row.locator("td.tag-cell")
        chips = cell.locator(".chip.tag")
        assert chips.all_inner_texts() == tags
        assert cell.locator(".chip.more").count() == 0
        for chip in chips.all():
            assert chip.is_visible()
            box = chip.bounding_box()
            assert _inside(box, row.bounding_box()), (run_id, chip.inner_text(), box)
            assert _inside(box, cell.bounding_box()), (run_id, chip.inner_text(), box)

    many = tuple(f"ablation-{i:02}" for i in range(12))
    with tracker(server, tmp_path) as t, \
            t.start_run(run_id="many", name="run-many", tags=many) as run:
        run.log_metrics(metrics, step=0)
    page.reload()
    row = page.locator("table.runs tr[data-run-id=many]")
    cell = row.locator("td.tag-cell")
    more = cell.locator(".chip.more")
    more.wait_for()
    row_box, cell_box = row.bounding_box(), cell.bounding_box()
    one = page.locator("table.runs tr[data-run-id=one]").bounding_box()
    assert row_box is not None
    assert one is not None
    assert row_box["height"] == one["height"]  # as high as every row
    shown = [chip for chip in cell.locator(".chip.tag").all() if chip.is_visible()]
    assert 1 <= len(shown) < len(many)
    assert [c.inner_text() for c in shown] == list(many[:len(shown)])
    for chip in [*shown, more]:
        box = chip.bounding_box()
        assert _inside(box, row_box), (chip.inner_text(), box)
        assert _inside(box, cell_box), (chip.inner_text(), box)
    assert more.inner_text() == f"+{len(many) - len(shown)}"
    assert more.get_attribute("title") == ", ".join(many)  # hovering names them all
