"""``kittiwake runs list``, ``runs group`` and ``diff``, run in-process."""

from __future__ import annotations

import csv
import io
import json
import math
import random
from pathlib import Path

import pytest

import engine
from engine._cli.main import main
from tests.query.test_runs import deep_query


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KITTIWAKE_DB", "KITTIWAKE_PROJECT", "KITTIWAKE_DEBUG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def db(tmp_path: Path) -> str:
    """Four runs of two optimizers; one without metrics, one deleted."""
    path = str(tmp_path / "runs.db")
    with engine.sync.connect(path, durability="normal") as tracker:
        for i, (optimizer, lr) in enumerate([("adam", 0.001), ("sgd", 0.1), ("sgd", 0.01)]):
            with tracker.start_run(f"run-{i}", name=f"name {i}", experiment="exp",
                                   tags=["baseline"] if i == 0 else [],
                                   config={"optimizer": optimizer, "lr": lr,
                                           "odd key": i}) as run:
                for step in range(3):
                    run.log_metrics({"train/loss": 1.0 / (i + step + 1),
                                     "acc": 0.1 * i + step}, step=step)
        with tracker.start_run("empty", config={"optimizer": "adam", "lr": 0.001}):
            pass
        with tracker.start_run("gone"):
            pass
        tracker.delete_run("gone")
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(text: str) -> list[list[str]]:
    """The cells of an aligned table, split at the columns its dashed rule marks."""
    lines = text.splitlines()
    rule = lines[1]
    assert set(rule) <= {"-", " "}
    spans, at = [], 0
    for dashes in rule.split("  "):
        spans.append((at, at + len(dashes)))
        at += len(dashes) + 2
    return [[line[a:b].strip() for a, b in spans] for line in lines if line.strip()]


def test_list_shows_an_aligned_table(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--db", db, "runs", "list")
    assert code == 0
    assert err == ""
    rows = table_rows(out.split("\n(")[0])
    assert rows[0] == ["run_id", "name", "experiment", "status", "created_at"]
    assert [r[0] for r in rows[2:]] == ["run-0", "run-1", "run-2", "empty"]
    assert out.rstrip().endswith("(4 runs)")


def test_list_filters_sorts_and_limits(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--db", db, "runs", "list", "--where",
                       "metrics.train/loss.min < 0.3 or config.optimizer = 'adam'",
                       "--order-by=-metrics.acc", "--limit", "3")
    assert code == 0
    rows = table_rows(out.split("\n(")[0])
    # The columns the ordering and the query look at come after the usual ones.
    assert rows[0][5:] == ["metrics.acc.last", "metrics.train/loss.min", "config.optimizer"]
    assert [r[0] for r in rows[2:]] == ["run-2", "run-1", "run-0"]
    assert rows[2][5] == "2.2"
    code, out, _ = cli(capsys, "--db", db, "runs", "list", "-o", "metrics.acc desc", "-n", "1")
    assert [r[0] for r in table_rows(out.split("\n(")[0])[2:]] == ["run-2"]
    _, out, _ = cli(capsys, "--db", db, "runs", "list", "--offset", "3")
    assert [r[0] for r in table_rows(out.split("\n(")[0])[2:]] == ["empty"]


def test_list_chosen_columns(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--db", db, "runs", "list", "--columns",
                       "run_id, config.`odd key`, metrics.train/loss.count, tags",
                       "--where", "config.`odd key` >= 1")
    assert code == 0
    rows = table_rows(out.split("\n(")[0])
    assert rows[0] == ["run_id", "config.`odd key`", "metrics.train/loss.count", "tags"]
    assert rows[2:] == [["run-1", "1", "3", "-"], ["run-2", "2", "3", "-"]]


def test_list_as_csv(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--db", db, "runs", "list", "--format", "csv",
                       "--order-by", "config.lr")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["run_id"] for r in rows] == ["run-0", "empty", "run-2", "run-1"]
    assert rows[0]["config.lr"] == "0.001"
    assert rows[0]["tags"] == '["baseline"]'
    assert rows[1]["metrics.acc.last"] == ""
    assert "metrics.train/loss.last_step" in rows[0]
    code, out, _ = cli(capsys, "--db", db, "runs", "list", "--format", "csv", "-c", "run_id",
                       "--include-deleted")
    assert out.split() == ["run_id", "run-0", "run-1", "run-2", "empty", "gone"]


def test_list_as_json_lines(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--db", db, "runs", "list", "--format", "json", "--where",
                       "tags contains 'baseline'")
    assert code == 0
    (line,) = out.splitlines()
    record = json.loads(line)
    assert record["run_id"] == "run-0"
    assert record["config.optimizer"] == "adam"
    assert math.isclose(record["metrics.train/loss.min"], 1 / 3)
    _, out, _ = cli(capsys, "--db", db, "runs", "list", "--format", "json", "-c",
                    "run_id,experiment", "--heads-only")
    assert [json.loads(x) for x in out.splitlines()] == [
        {"run_id": "run-2", "experiment": "exp"}]


def test_a_bad_query_is_one_line_and_a_caret(db: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--db", db, "runs", "list", "--where", "metrics.loss >> 1")
    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        "kittiwake: error: expected a value (a 'string', a number, true, false, null, nan or "
        "inf), found '>' at position 14",
        "  metrics.loss >> 1",
        "                ^"]
    for argv in (["--order-by", "tags"], ["--columns", "run_id, bogus"], ["--limit", "-1"]):
        code, out, err = cli(capsys, "--db", db, "runs", "list", *argv)
        assert code == 1
        assert out == ""
        assert err.startswith("kittiwake: error: ")
        assert "Traceback" not in err
    code, _, err = cli(capsys, "--db", db, "runs", "list", "--limit", "-1")
    assert err.splitlines() == ["kittiwake: error: limit must be an int >= 0 or None, not -1"]


def test_the_deepest_queries_run_and_one_level_more_is_an_error(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    leaves = {"config.optimizer = 'sgd'": frozenset({"run-1", "run-2"}),
              "config.lr < 0.05": frozenset({"run-0", "run-2", "empty"}),
              "metrics.acc exists": frozenset({"run-0", "run-1", "run-2"}),
              "tags contains 'baseline'": frozenset({"run-0"}),
              "config.`odd key` >= 1": frozenset({"run-1", "run-2"})}
    every = frozenset({"run-0", "run-1", "run-2", "empty"})
    rng = random.Random(11)
    for _ in range(3):
        query, found = deep_query(rng, leaves, every)
        code, out, err = cli(capsys, "--db", db, "runs", "list", "--where", query,
                             "--format", "csv", "-c", "run_id")
        assert (code, err) == (0, "")
        assert out.split()[1:] == [r for r in ("run-0", "run-1", "run-2", "empty") if r in found]
        code, out, err = cli(capsys, "--db", db, "runs", "list", "--where", query)
        assert (code, err) == (0, "")  # the table shows the fields the query names
    code, out, err = cli(capsys, "--db", db, "runs", "list", "--where", f"not ({query})")
    assert (code, out) == (1, "")
    first, shown, caret = err.splitlines()
    assert "nests deeper than" in first
    assert shown == f"  not ({query})"
    assert caret.endswith("^")


def test_list_refuses_a_missing_database(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "--db", str(tmp_path / "nope.db"), "runs", "list")
    assert code == 1
    assert "no database at" in err
    assert not (tmp_path / "nope.db").exists()


def test_group(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--db", db, "runs", "group", "config.optimizer",
                       "--metrics", "metrics.train/loss.min")
    assert code == 0
    rows = table_rows(out)
    assert rows[0] == ["config.optimizer", "runs", "n(metrics.train/loss.min)",
                       "mean(metrics.train/loss.min)", "min(metrics.train/loss.min)",
                       "max(metrics.train/loss.min)"]
    assert rows[2] == ["adam", "2", "1", "0.333333", "0.333333", "0.333333"]
    assert rows[3][:3] == ["sgd", "2", "2"]
    code, out, _ = cli(capsys, "--db", db, "runs", "group", "experiment", "--format", "json",
                       "--where", "config.optimizer = 'sgd'")
    (line,) = out.splitlines()
    record = json.loads(line)
    assert record["experiment"] == "exp"
    assert record["runs"] == 2
    assert record["n(metrics.acc.last)"] == 2
    code, out, _ = cli(capsys, "--db", db, "runs", "group", "status", "--format", "csv")
    assert out.splitlines()[1].startswith("succeeded,4")
    code, out, _ = cli(capsys, "--db", db, "runs", "group", "status", "-w", "name = 'x'")
    assert table_rows(out) == [["status", "runs"], ["------", "----"]]
    code, _, err = cli(capsys, "--db", db, "runs", "group", "metrics.acc")
    assert code == 1
    assert "cannot be used here" in err


def test_diff_side_by_side(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--db", db, "diff", "run-0", "run-1")
    assert code == 0
    assert err == ""
    sections = out.strip().split("\n\n")
    run, config, metrics = (table_rows(s) for s in sections)
    assert run[0] == ["run", "run-0", "run-1"]
    assert ["name", "name 0", "name 1"] in run
    assert ["tags", "baseline", "-"] in run
    assert config[0] == ["config", "run-0", "run-1"]
    assert config[2:] == [["lr", "0.001", "0.1"], ["odd key", "0", "1"],
                          ["optimizer", "adam", "sgd"]]
    assert metrics[0] == ["metric", "stat", "run-0", "run-1", "b - a"]
    assert ["acc", "last", "2", "2.1", "0.1"] in metrics
    assert ["train/loss", "min", "0.333333", "0.25", "-0.0833333"] in metrics
    assert not any(r[1] == "count" for r in metrics[2:])  # equal values are left out


def test_diff_missing_values_all_and_json(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "--db", db, "diff", "run-0", "empty")
    config = table_rows(out.strip().split("\n\n")[1])
    assert ["odd key", "0", "(missing)"] in config
    assert ["optimizer", "adam", "adam"] not in config
    code, out, _ = cli(capsys, "--db", db, "diff", "run-0", "empty", "--all")
    assert ["optimizer", "adam", "adam"] in table_rows(out.strip().split("\n\n")[1])
    code, out, _ = cli(capsys, "--db", db, "diff", "run-0", "run-2", "--format", "json")
    found = json.loads(out)
    assert found["a"] == "run-0"
    assert found["config"]["optimizer"] == ["adam", "sgd"]
    assert {"metric": "acc", "aggregate": "last", "a": 2.0, "b": 2.2} in found["metrics"]
    code, out, _ = cli(capsys, "--db", db, "diff", "run-1", "run-1")
    assert out.strip() == "run-1 and run-1 have the same fields, config and metric summaries"
    code, out, err = cli(capsys, "--db", db, "diff", "run-1", "nope")
    assert code == 1
    assert err.splitlines() == ["kittiwake: error: no run 'nope' in project 'default'"]
