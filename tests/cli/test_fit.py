"""Tables fit the terminal: whatever the grouping keys, metric names, values and the width
(``COLUMNS``), no line ``runs group``, ``runs list``, ``runs show``, ``diff``, ``files`` or
``queue`` prints is longer than the terminal is wide (40 at the least); long cells are cut
in the middle with an ellipsis, and ``--format json`` or ``csv`` still carries them whole."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

import engine
from engine._cli.display import ELLIPSIS, MIN_WIDTH, cut, table
from engine._cli.main import main

NOTE = "a long note that says a great deal about this run, " * 3
LONG_METRIC = "val/accuracy/top5/on/the/held-out/set/with/a/long/name"
LONG_EXPERIMENT = "an-experiment-whose-name-is-far-longer-than-anyone-would-like"
WIDTHS = [1, 20, 40, 41, 47, 55, 60, 72, 80, 100, 132, 200]
GROUPS = [
    ["status"],
    ["experiment,status"],
    ["experiment,status,config.optimizer"],
    ["config.note"],
    ["name"],
    ["experiment,config.note,status,name,config.lr"],
    ["status", "--metrics", "metrics.train/loss.min"],
    ["experiment,status", "--metrics",
     f"metrics.train/loss.min,metrics.{LONG_METRIC}.max,metrics.x.last"],
    ["config.optimizer", "--where", "status = 'succeeded'"],
    ["config.optimizer", "--where", "config.lr > 100"],  # no group at all
]
OTHERS = [
    ["runs", "list"],
    ["runs", "list", "--order-by", f"-metrics.{LONG_METRIC}.max", "--where",
     "config.lr > 0 and metrics.train/loss.min < 10"],
    ["runs", "list", "--columns", f"run_id,name,config.note,metrics.{LONG_METRIC}.max,"
                                  "metrics.train/loss,metrics.x,config.lr,config.optimizer"],
    ["runs", "show", "long-0"],
    ["diff", "long-0", "short-1"],
    ["files", "long-0"],
    ["queue"],
    ["tail", "long-0"],  # an ended run: its last view, once
]


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Runs with long and short names, experiments, config values and metric names; one
    failed; a file attribute with a long key; a queued job with a long command."""
    url = str(tmp_path_factory.mktemp("fit") / "kittiwake.db")
    with engine.sync.connect(url, durability="normal") as tracker:
        for k in range(6):
            long = k % 2 == 0
            with contextlib.suppress(RuntimeError), tracker.start_run(
                    f"{'long' if long else 'short'}-{k}",
                    name=f"a-generated-name-that-is-long-{k}" if long else f"n{k}",
                    experiment=LONG_EXPERIMENT if long else "gull",
                    config={"lr": 10.0 ** -k, "optimizer": ["adam", "sgd"][k % 2],
                            "note": NOTE if long else "short"}) as run:
                run.log_metrics({"train/loss": 1.0 / (k + 1), LONG_METRIC: -1234.5678 * k,
                                 "x": float("nan") if k == 3 else k}, step=0)
                if k == 0:
                    run.upload({"checkpoints/" + "deep/" * 8 + "model.pt": b"weights"})
                if k == 5:
                    raise RuntimeError("diverged: " + "the loss went up and up " * 4)
        tracker.enqueue(["python", "train.py", "--config", "/a/very/long/path/" * 6],
                        run_id="job-1")
    return url


def _lines(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, width: int,
           argv: list[str]) -> list[str]:
    monkeypatch.setenv("COLUMNS", str(width))
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out
    return out.splitlines()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("group", GROUPS, ids=lambda g: " ".join(g))
def test_runs_group_fits_the_terminal(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch, db: str,
                                      group: list[str], width: int) -> None:
    lines = _lines(capsys, monkeypatch, width, ["--db", db, "runs", "group", *group])
    fits = max(width, MIN_WIDTH)
    assert [line for line in lines if len(line) > fits] == []
    if width >= 200 and "config.note" not in group[0]:
        assert not any(ELLIPSIS in line for line in lines)  # nothing cut when there is room


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("argv", OTHERS, ids=lambda a: " ".join(a[:2]))
def test_other_tables_fit_the_terminal(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch, db: str,
                                       argv: list[str], width: int) -> None:
    lines = _lines(capsys, monkeypatch, width, ["--db", db, *argv])
    fits = max(width, MIN_WIDTH)
    assert [line for line in lines if len(line) > fits] == []


def test_a_narrow_runs_list_keeps_the_run_ids_whole(capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     db: str) -> None:
    lines = _lines(capsys, monkeypatch, 60, ["--db", db, "runs", "list"])
    assert {line.split()[0] for line in lines[2:-1]} == {
        "job-1", *(f"{['long', 'short'][k % 2]}-{k}" for k in range(6))}
    assert any(ELLIPSIS in line for line in lines)  # the names and experiments were cut


def test_a_narrow_group_table_names_its_metrics_and_json_has_them_whole(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    lines = _lines(capsys, monkeypatch, 60, ["--db", db, "runs", "group",
                                             "experiment,status"])
    assert f"experiment={LONG_EXPERIMENT}"[:20] in lines[0]
    assert any(line.strip().startswith("train/loss.last") for line in lines)
    out = "\n".join(_lines(capsys, monkeypatch, 60, ["--db", db, "runs", "group",
                                                     "experiment,config.note",
                                                     "--format", "json"]))
    groups = [json.loads(line) for line in out.splitlines()]
    assert {g["config.note"] for g in groups} == {NOTE, "short", None}  # None: the job
    assert {g["experiment"] for g in groups} == {LONG_EXPERIMENT, "gull", None}
    assert f"mean(metrics.{LONG_METRIC}.last)" in groups[0]


def test_a_pipe_takes_the_wide_table(capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)  # and stdout is no terminal
    assert main(["--db", db, "runs", "group", "config.note"]) == 0
    out = capsys.readouterr().out
    assert NOTE.rstrip() in out
    assert ELLIPSIS not in out


# The table itself, for any cells and width -------------------------------------------------

cells = st.one_of(st.none(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                  st.text(max_size=80), st.booleans())


@given(header=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=12),
       rows=st.lists(st.lists(cells, min_size=12, max_size=12), max_size=6),
       width=st.integers(0, 250), data=st.data())
def test_any_table_fits_any_width(header: list[str], rows: list[list[object]], width: int,
                                  data: st.DataObject) -> None:
    rows = [row[:len(header)] for row in rows]
    numeric = data.draw(st.sets(st.integers(0, len(header) - 1)))
    keep = data.draw(st.sets(st.integers(0, len(header) - 1)))
    drawn = table(header, rows, numeric=numeric, keep=keep, width=width)
    fits = max(width, MIN_WIDTH)
    assert [line for line in drawn.splitlines() if len(line) > fits] == []
    natural = table(header, rows, numeric=numeric)
    if max(map(len, natural.splitlines())) <= fits:
        assert drawn == natural  # what fits is left as it is


@given(text=st.text(max_size=60), width=st.integers(0, 70))
def test_a_cut_keeps_both_ends(text: str, width: int) -> None:
    short = cut(text, width)
    assert len(short) <= width
    if len(text) <= width:
        assert short == text
    elif width >= 2:
        head, _, tail = short.partition(ELLIPSIS)
        assert text.startswith(head)
        assert text.endswith(tail)
        assert len(head) >= len(tail) >= (width - 1) // 2


def test_the_minimum_width_is_kept_however_narrow_the_terminal(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    narrow = _lines(capsys, monkeypatch, 1, ["--db", db, "runs", "group", "status"])
    forty = _lines(capsys, monkeypatch, 40, ["--db", db, "runs", "group", "status"])
    assert narrow == forty
    assert max(map(len, forty)) <= 40
