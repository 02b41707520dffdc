"""The ``kittiwake`` command (docs/cli.md), run in-process through ``engine._cli.main``."""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import engine
from engine._cli.demo import run_demo
from engine._cli.main import main


@pytest.fixture(autouse=True)
def _no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads its defaults from the environment: start from none."""
    for name in ("KITTIWAKE_DB", "KITTIWAKE_PROJECT", "KITTIWAKE_DEBUG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def populated(file_url: str) -> str:
    """A database with a succeeded run (configs, tags, NaN) and a failed one."""
    with engine.sync.connect(file_url, durability="normal") as tracker:
        with tracker.start_run("base", experiment="exp", tags=("baseline",),
                               config={"optimizer": {"name": "adam", "lr": 0.001}}) as run:
            run.log_configs({"seed": 7, "layers": ["conv", "relu"]})
            for step in range(5):
                run.log_metrics({"train/loss": 1.0 / (step + 1), "train/acc": step / 10},
                                step=step)
            run.log_metrics({"val/loss": math.nan}, step=4)
        with contextlib.suppress(ZeroDivisionError), tracker.start_run("broken") as run:
            run.log_metrics({"train/loss": 3.0}, step=0)
            run.log_metrics({"train/loss": 1 / 0}, step=1)
    return file_url


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def summary_rows(text: str) -> list[dict[str, str]]:
    """The rows of the aligned table whose header starts with ``run``, split at the columns
    its dashed rule marks."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["run", "name"])
    header, rule = lines[start], lines[start + 1]
    assert set(rule) <= {"-", " "}
    spans: list[tuple[int, int]] = []
    at = 0
    for dashes in rule.split("  "):
        spans.append((at, at + len(dashes)))
        at += len(dashes) + 2
    names = [header[a:b].strip() for a, b in spans]
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append({n: line[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)})
    return rows


def assert_one_line_error(code: int, out: str, err: str) -> None:
    assert code != 0
    assert err.startswith("kittiwake: error:")
    assert err.count("\n") == 1, err
    assert "Traceback" not in err
    assert out == ""


# demo -------------------------------------------------------------------------------------


def test_demo_creates_its_database_here_and_prints_a_summary(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "demo", "--steps", "40", "--delay", "0")
    assert code == 0, err
    database = tmp_path / "kittiwake.db"
    assert database.is_file()

    rows = summary_rows(out)
    assert len(rows) == 4
    assert Counter(r["status"] for r in rows) == {"succeeded": 3, "failed": 1}
    forks = [r for r in rows if r["fork"] != "-"]
    assert len(forks) == 1
    ids = {r["run"] for r in rows}
    assert forks[0]["fork"].split("@")[0] in ids
    failed = next(r for r in rows if r["status"] == "failed")
    assert failed["reason"] != "-"

    preempt = next(r["run"] for r in rows if r["run"].startswith("preempt-"))
    with engine.sync.connect(str(database)) as tracker:
        states = {s.run_id: s for s in tracker.list_runs()}
        assert set(states) == ids
        assert Counter(str(s.status) for s in states.values()) == {"succeeded": 3, "failed": 1}
        assert sum(s.fork is not None for s in states.values()) == 1
        events = [e for e in tracker.events() if e.run_id == preempt]
        resumes = [e for e in events if e.type == "RunResumed"]
        assert len(resumes) == 1
        resumed = resumes[0]
        rewind = resumed.data["rewind_to"]
        assert rewind is not None

        def logged(keep: Any) -> list[Any]:
            return [step for e in events if e.type == "MetricsLogged" and keep(e.position)
                    for step in e.data["metrics"].get("train/loss", {"steps": []})["steps"]]

        before = logged(lambda p: p < resumed.position)
        after = logged(lambda p: p > resumed.position)
        assert max(before) > rewind  # points past the checkpoint were logged, then rewound
        series = tracker.read_series(preempt, "train/loss").steps.tolist()
        assert series == [s for s in before if s <= rewind] + after
        assert states[preempt].metrics["train/loss"].count == len(series)
        old = tracker.get_run(preempt, as_of=resumed.position - 1)
        assert old.metrics["train/loss"].count == len(before)


class Terminal(io.StringIO):
    """An output stream that records, with every flush, what had been written by then — and,
    with every write, the head of the log as the tracker knew it."""

    def __init__(self, tracker: engine.Tracker, tty: bool) -> None:
        super().__init__()
        self.tracker = tracker
        self.tty = tty
        self.flushes: list[str] = []
        self.writes: list[tuple[str, int]] = []

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        liveness = self.tracker._liveness
        assert liveness is not None
        self.writes.append((text, liveness.seen))
        return super().write(text)

    def flush(self) -> None:
        self.flushes.append(self.getvalue())


_ENDED = re.compile(r"^  (\S+) .*: (succeeded|failed) at step \d+")


async def test_piped_demo_output_shows_each_runs_end_as_it_happens(file_url: str) -> None:
    async with engine.connect(file_url, durability="normal") as tracker:
        out = Terminal(tracker, tty=False)
        await run_demo(tracker, steps=40, delay=0, out=out)
        events = [e async for e in tracker.events()]
    text = out.getvalue()
    assert "\x1b" not in text  # no terminal control codes in a pipe

    def kind(run_id: str) -> str:
        return run_id.rsplit("-", 1)[0]

    ends = [(kind(e.run_id), e.data["status"]) for e in events if e.type == "StatusChanged"]
    lines = [(w, head, m.groups()) for w, head in out.writes if (m := _ENDED.match(w))]
    shown = [groups for _, _, groups in lines]
    # One line per run's end (the preempted run ends twice: failed, then succeeded).
    assert Counter(shown) == Counter(ends)
    assert [s for k, s in shown if k == "preempt"] == ["failed", "succeeded"]
    summary = text.index("\nrun ")
    for i, (line, _, _) in enumerate(lines):
        assert text.index(line) < summary
        flushed = next(f for f in out.flushes if line in f)  # flushed before what comes next
        assert all(later not in flushed for later, _, _ in lines[i + 1:])
    # Written as it happened: before the demo went on to what follows each of these ends.
    decay = next(e.position for e in events
                 if e.type == "RunCreated" and kind(e.run_id) == "decay")
    resumed = next(e.position for e in events if e.type == "RunResumed")
    assert next(head for _, head, g in lines if g == ("baseline", "succeeded")) < decay
    assert next(head for _, head, g in lines if g == ("preempt", "failed")) < resumed


async def test_demo_on_a_terminal_redraws_its_board_in_place(file_url: str) -> None:
    async with engine.connect(file_url, durability="normal") as tracker:
        out = Terminal(tracker, tty=True)
        states = await run_demo(tracker, steps=40, delay=0.01, out=out)
    text = out.getvalue()
    assert "\x1b[F" in text  # drawn more than once, each over the last
    board = text.split("\x1b[F")[-1]
    rows = board.split("\x1b[K\n")[:-1]
    assert len(rows) == 4
    for state in states:
        kind = state.run_id.rsplit("-", 1)[0]
        row = next(r for r in rows if r.strip().startswith(kind))
        assert "step" in row
        assert "loss" in row
        assert str(state.status) in row  # the final board shows how each run ended


# runs show --------------------------------------------------------------------------------


def test_runs_show_prints_status_config_and_metrics(
        capsys: pytest.CaptureFixture[str], populated: str) -> None:
    code, out, err = run_cli(capsys, "--db", populated, "runs", "show", "base")
    assert code == 0, err
    assert err == ""
    assert "succeeded" in out
    assert "base" in out
    for text in ("optimizer/name", "adam", "optimizer/lr", "0.001", "seed", "layers",
                 "train/loss", "train/acc", "val/loss", "baseline"):
        assert text in out, text

    code, out, err = run_cli(capsys, "--db", populated, "runs", "show", "broken")
    assert code == 0, err
    assert "failed" in out
    assert "ZeroDivisionError" in out


def test_runs_show_json(capsys: pytest.CaptureFixture[str], populated: str) -> None:
    code, out, err = run_cli(capsys, "--db", populated, "runs", "show", "base",
                             "--format", "json")
    assert code == 0, err
    shown: dict[str, Any] = json.loads(out)
    assert shown["run_id"] == "base"
    assert shown["status"] == "succeeded"
    assert shown["experiment"] == "exp"
    assert shown["tags"] == ["baseline"]
    assert shown["config"] == {"optimizer/name": "adam", "optimizer/lr": 0.001, "seed": 7,
                               "layers": ["conv", "relu"]}
    loss = shown["metrics"]["train/loss"]
    assert (loss["count"], loss["last_step"], loss["last"]) == (5, 4, 0.2)
    assert (loss["min"], loss["max"]) == (0.2, 1.0)
    assert set(shown["metrics"]) == {"train/loss", "train/acc", "val/loss"}
    assert shown["ended_at"] is not None


# events -----------------------------------------------------------------------------------


def test_events_prints_the_log_as_json_lines_in_order(
        capsys: pytest.CaptureFixture[str], populated: str) -> None:
    with engine.sync.connect(populated) as tracker:
        expected = [(e.position, e.id, e.run_id, e.type) for e in tracker.events()]
    code, out, err = run_cli(capsys, "--db", populated, "events")
    assert code == 0, err
    lines = out.splitlines()
    events = [json.loads(line) for line in lines]
    assert [(e["position"], e["id"], e["run_id"], e["type"]) for e in events] == expected
    positions = [e["position"] for e in events]
    assert positions == list(range(1, len(positions) + 1))
    assert events[0]["type"] == "RunCreated"
    assert events[0]["data"]["config"] == {"optimizer/name": "adam", "optimizer/lr": 0.001}

    cut = len(expected) // 2
    code, out, err = run_cli(capsys, "--db", populated, "events", "--from", str(cut))
    assert code == 0, err
    after = [json.loads(line)["position"] for line in out.splitlines()]
    assert after == [p for p, *_ in expected if p > cut]

    code, out, err = run_cli(capsys, "--db", populated, "events", "--from",
                             str(len(expected)))
    assert (code, out) == (0, "")


# rebuild ----------------------------------------------------------------------------------


def test_rebuild_leaves_every_run_as_it_was(capsys: pytest.CaptureFixture[str],
                                            populated: str) -> None:
    def shown() -> list[Any]:
        states = []
        for run_id in ("base", "broken"):
            code, out, err = run_cli(capsys, "--db", populated, "runs", "show", run_id,
                                     "--format", "json")
            assert code == 0, err
            states.append(json.loads(out))
        return states

    before = shown()
    code, _, err = run_cli(capsys, "--db", populated, "rebuild")
    assert code == 0, err
    assert shown() == before
    with engine.sync.connect(populated) as tracker:
        assert tracker.read_series("base", "train/loss").steps.tolist() == [0, 1, 2, 3, 4]


# errors -----------------------------------------------------------------------------------


def test_an_unknown_run_is_one_error_line(capsys: pytest.CaptureFixture[str],
                                          populated: str) -> None:
    code, out, err = run_cli(capsys, "--db", populated, "runs", "show", "no-such-run")
    assert_one_line_error(code, out, err)
    assert "no-such-run" in err


def test_a_missing_database_is_one_error_line_and_is_not_created(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing = tmp_path / "typo.db"
    for argv in (["runs", "show", "x"], ["events"], ["rebuild"]):
        code, out, err = run_cli(capsys, "--db", str(missing), *argv)
        assert_one_line_error(code, out, err)
        assert "typo.db" in err
    assert not missing.exists()


@pytest.mark.parametrize("url", ["mysql://localhost/runs", "ftp://example.com/runs.db"])
def test_a_bad_db_url_is_one_error_line(capsys: pytest.CaptureFixture[str], url: str) -> None:
    code, out, err = run_cli(capsys, "--db", url, "runs", "show", "x")
    assert_one_line_error(code, out, err)


@pytest.mark.parametrize("argv", [
    ["runs", "show"], ["runs"], [], ["bogus"], ["demo", "--steps", "many"],
    ["events", "--from", "nope"], ["runs", "show", "a", "b"], ["runs", "show", "a", "--format",
                                                                "xml"],
])
def test_usage_errors_are_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                              argv: list[str]) -> None:
    code, out, err = run_cli(capsys, *argv)
    assert_one_line_error(code, out, err)
    assert code == 2
    assert "usage:" not in err
    assert "--help" in err  # where to look next


def test_a_usage_error_is_one_line_from_the_command() -> None:
    done = subprocess.run([sys.executable, "-m", "engine._cli.main", "runs", "show"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr == "kittiwake: error: the following arguments are required: run_id " \
                          "(see `kittiwake runs show --help`)\n"
    assert done.stdout == ""


def test_a_database_that_cannot_be_opened_is_one_error_line_from_the_command(
        tmp_path: Path) -> None:
    """Out of process, as a user runs it: nothing may reach stderr after the error line (a
    connection thread left behind used to print a traceback at exit, some of the time)."""
    unopenable = [str(tmp_path), f"sqlite:///{tmp_path}/no/such/dir/runs.db"]
    for db in unopenable:
        for _ in range(3):
            done = subprocess.run(
                [sys.executable, "-m", "engine._cli.main", "--db", db, "runs", "show", "x"],
                capture_output=True, text=True, timeout=60, check=False)
            assert done.returncode != 0
            assert done.stderr.startswith("kittiwake: error:"), done.stderr
            assert done.stderr.count("\n") == 1, done.stderr
            assert done.stdout == ""
