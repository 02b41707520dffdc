"""Runs as flat tables: CSV, JSON lines and pandas, one column per field, config path and
metric aggregate."""

from __future__ import annotations

import csv
import io
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import engine
from engine import RunsTable
from engine.errors import QuerySyntaxError

NAN = math.nan


@pytest.fixture
def runs_db(tmp_path: Path) -> str:
    path = str(tmp_path / "runs.db")
    with engine.sync.connect(path) as tracker:
        with tracker.start_run("a", name="first, \"quoted\"", experiment="e",
                               tags=["x", "y,z"],
                               config={"optimizer": {"name": "adam", "lr": 0.001},
                                       "layers": ["conv", "relu"], "flag": True,
                                       "when": datetime(2024, 1, 1, tzinfo=UTC)}) as run:
            run.log_metrics({"train/loss": 0.5, "acc": 0.1}, step=0)
            run.log_metrics({"train/loss": 0.25}, step=1)
        with tracker.start_run("b", config={"optimizer": {"name": "sgd"}, "seed": 7}) as run:
            run.log_metrics({"train/loss": NAN}, step=0)
    return path


async def table_of(path: str, *args: object, **options: object) -> RunsTable:
    async with engine.connect(path) as tracker:
        return await tracker.fetch_runs_table(*args, **options)  # type: ignore[arg-type]


async def test_default_columns_flatten_configs_and_metric_aggregates(runs_db: str) -> None:
    table = await table_of(runs_db)
    assert table.columns[:11] == (
        "run_id", "name", "experiment", "status", "status_reason", "tags", "fork_run_id",
        "fork_step", "created_at", "updated_at", "ended_at")
    assert table.columns[11:] == (
        "config.flag", "config.layers", "config.optimizer/lr", "config.optimizer/name",
        "config.seed", "config.when",
        "metrics.acc.last", "metrics.acc.min", "metrics.acc.max", "metrics.acc.count",
        "metrics.acc.last_step",
        "metrics.train/loss.last", "metrics.train/loss.min", "metrics.train/loss.max",
        "metrics.train/loss.count", "metrics.train/loss.last_step")
    a, b = table.records()
    assert a["tags"] == ["x", "y,z"]
    assert a["config.optimizer/lr"] == 0.001
    assert a["metrics.train/loss.min"] == 0.25
    assert a["metrics.train/loss.count"] == 2
    assert isinstance(a["created_at"], datetime)
    assert b["config.flag"] is None
    assert b["metrics.acc.last"] is None
    assert math.isnan(b["metrics.train/loss.last"])
    assert len(table) == 2


async def test_chosen_columns_where_order_and_limit(runs_db: str) -> None:
    table = await table_of(runs_db, "config.optimizer/name = 'sgd' or tags contains 'x'",
                           order_by="-metrics.train/loss.min", limit=5,
                           columns="run_id, config.seed, metrics.train/loss, status_reason")
    assert table.columns == ("run_id", "config.seed", "metrics.train/loss.last",
                             "status_reason")
    assert table.rows == (("a", None, 0.25, None), ("b", 7, table.rows[1][2], None))
    with pytest.raises(QuerySyntaxError):
        await table_of(runs_db, columns="run_id, nonsense")


async def test_csv(runs_db: str) -> None:
    table = await table_of(runs_db)
    out = io.StringIO()
    text = table.to_csv(out)
    assert out.getvalue() == text
    rows = list(csv.DictReader(io.StringIO(text)))
    a, b = rows
    assert list(a) == list(table.columns)
    assert a["name"] == 'first, "quoted"'
    assert json.loads(a["tags"]) == ["x", "y,z"]
    assert json.loads(a["config.layers"]) == ["conv", "relu"]
    assert a["config.flag"] == "true"
    assert a["config.when"] == "2024-01-01T00:00:00+00:00"
    assert float(a["config.optimizer/lr"]) == 0.001
    assert datetime.fromisoformat(a["created_at"]).tzinfo is not None
    assert a["status_reason"] == ""
    assert b["metrics.train/loss.last"] == "nan"
    assert b["metrics.acc.last"] == ""


async def test_json_lines(runs_db: str) -> None:
    table = await table_of(runs_db)
    lines = table.to_jsonl().splitlines()
    a, b = (json.loads(line) for line in lines)
    assert list(a) == list(table.columns)
    assert a["tags"] == ["x", "y,z"]
    assert a["config.flag"] is True
    assert a["metrics.train/loss.count"] == 2
    assert b["metrics.train/loss.last"] == "nan"
    assert b["metrics.acc.min"] is None
    out = io.StringIO()
    assert table.to_jsonl(out) == out.getvalue()


async def test_pandas(runs_db: str) -> None:
    pandas = pytest.importorskip("pandas")
    frame = (await table_of(runs_db)).to_pandas()
    assert list(frame.columns) == list((await table_of(runs_db)).columns)
    assert str(frame["created_at"].dtype).startswith("datetime64")
    assert str(frame["created_at"].dt.tz) == "UTC"
    assert frame["ended_at"].notna().all()
    assert frame["metrics.train/loss.min"].dtype == "float64"
    assert frame["metrics.acc.last"].dtype == "float64"
    assert pandas.isna(frame.loc[1, "metrics.acc.last"])
    assert frame["metrics.train/loss.count"].tolist() == [2, 1]
    assert frame.loc[0, "tags"] == ["x", "y,z"]
    assert frame.loc[1, "config.seed"] == 7
    best = frame.sort_values("metrics.train/loss.min").iloc[0]
    assert best["run_id"] == "a"


async def test_pandas_datetime_configs_are_utc_datetime64_columns(tmp_path: Path) -> None:
    pandas = pytest.importorskip("pandas")
    path = str(tmp_path / "times.db")
    when = datetime(2024, 1, 1, 12, 30, 0, 250000, tzinfo=UTC)
    async with engine.connect(path) as tracker:
        for run_id, config in [("aware", {"when": when, "mixed": when}),
                               ("naive", {"when": when.replace(tzinfo=None), "mixed": "soon"}),
                               ("none", {})]:
            async with tracker.start_run(run_id, config=config):
                pass
        frame = (await tracker.fetch_runs_table(columns="run_id, config.when, config.mixed")
                 ).to_pandas()
    assert str(frame["config.when"].dtype).startswith("datetime64")
    assert str(frame["config.when"].dt.tz) == "UTC"
    assert frame["config.when"].tolist()[:2] == [pandas.Timestamp(when)] * 2  # naive is UTC
    assert pandas.isna(frame.loc[2, "config.when"])
    assert frame["config.mixed"].dtype == object  # a datetime and text: left as they are
    assert frame.loc[0, "config.mixed"] == when


async def test_pandas_is_optional(runs_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    table = await table_of(runs_db)
    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'kittiwake\[pandas\]'"):
        table.to_pandas()
    assert "pandas" not in engine._query.export.__dict__


def test_tables_of_runs_at_hand(runs_db: str) -> None:
    with engine.sync.connect(runs_db) as tracker:
        runs = tracker.list_runs(order_by="run_id")
    table = RunsTable.from_runs(runs, aggregates=("last",))
    assert [c for c in table.columns if c.startswith("metrics.")] == [
        "metrics.acc.last", "metrics.train/loss.last"]
    with pytest.raises(ValueError, match="unknown aggregate"):
        RunsTable.from_runs(runs, aggregates=("median",))
    empty = RunsTable.from_runs([])
    assert empty.rows == ()
    assert empty.to_csv().splitlines() == [",".join(empty.columns)]
    assert empty.to_jsonl() == ""
