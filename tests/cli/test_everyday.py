"""The command line as a newcomer meets it: the demo's hints work as printed, runs are
aborted, deleted and tagged from the shell, a descending order needs no ``=``, wide group
tables fit the terminal, and ``tail`` waits for a run that has not started."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import engine
from engine import Status
from engine._cli.main import main
from tests.conftest import in_thread

KITTIWAKE = Path(sys.executable).with_name("kittiwake")


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def trained(file_url: str) -> str:
    with engine.sync.connect(file_url, durability="normal") as tracker:
        for k, lr in enumerate((0.1, 0.01, 0.001)):
            with tracker.start_run(f"r{k}", config={"lr": lr}, tags=("old",)) as run:
                run.log_metrics({"acc": 0.5 + k / 10, "loss": 1.0 - k / 10}, step=0)
    return file_url


def test_the_demo_hints_run_as_printed_and_name_a_run_that_succeeded(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    done = subprocess.run([str(KITTIWAKE), "demo", "--steps", "40", "--delay", "0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=True)
    out = done.stdout
    hints = [line.split(": ", 1)[-1].strip() for line in out.splitlines()
             if line.startswith(("look around:", "             "))]
    assert len(hints) == 5
    outputs = {}
    for hint in hints:
        ran = subprocess.run(hint, shell=True, cwd=tmp_path, capture_output=True, text=True,
                             timeout=60, env={k: v for k, v in os.environ.items()
                                              if k != "COLUMNS"})
        assert ran.returncode == 0, (hint, ran.stderr)
        assert ran.stdout
        outputs[hint] = ran.stdout
    best = re.search(r"^best run: (\S+) ", out, re.M)
    assert best is not None
    with engine.sync.connect(str(tmp_path / "kittiwake.db")) as tracker:
        runs = tracker.list_runs()
        assert tracker.get_run(best.group(1)).status is Status.SUCCEEDED
        failed = [r.run_id for r in runs if r.status is Status.FAILED]
    assert len({r.name for r in runs}) == len(runs)  # generated names are not repeated
    # The ordered list, as printed, puts the best run the demo named first, and the run that
    # diverged (its loss went lowest before it failed) not at all.
    listing = next(out for hint, out in outputs.items() if " runs list " in hint)
    rows = [line.split() for line in listing.splitlines()[2:] if not line.startswith("(")]
    assert rows[0][0] == best.group(1)
    assert len(failed) == 1
    assert failed[0] not in {row[0] for row in rows}
    # The download lands under a name of its own choosing, not the bytes' digest.
    fetched = next(out for hint, out in outputs.items() if " download " in hint)
    assert fetched.startswith(f"{tmp_path / 'weights.bin'} (64.0 KiB, sha256:")
    assert (tmp_path / "weights.bin").stat().st_size == 64 << 10
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("kittiwake.db")) \
        == ["weights.bin"]
    # Its runs grouped, as the audit did it: at any width, no line wider than the terminal
    # (the command in-process: fifteen interpreters started would only add seconds).
    for columns in (40, 60, 80, 100, 200):
        monkeypatch.setenv("COLUMNS", str(columns))
        for by in ("status", "experiment,status", "experiment,status,config.optimizer/lr"):
            code, grouped, err = run_cli(capsys, "--db", str(tmp_path / "kittiwake.db"),
                                         "runs", "group", by)
            assert code == 0, err
            assert max(map(len, grouped.splitlines())) <= columns, (by, columns)


def test_hints_name_the_database_when_it_is_not_the_default(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.db"
    done = subprocess.run([str(KITTIWAKE), "--db", str(other), "demo", "--steps", "20",
                           "--delay", "0"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, check=True)
    hint = next(line for line in done.stdout.splitlines() if line.startswith("look around:"))
    assert f"--db {shlex.quote(str(other))}" in hint


@pytest.mark.parametrize("order", [["--order-by", "-metrics.acc"], ["-o", "-metrics.acc"],
                                   ["--order-by=-metrics.acc"]])
def test_a_descending_order_needs_no_equals_sign(capsys: pytest.CaptureFixture[str],
                                                 trained: str, order: list[str]) -> None:
    code, out, err = run_cli(capsys, "--db", trained, "runs", "list", *order, "--format",
                             "csv", "--columns", "run_id")
    assert code == 0, err
    assert out.split() == ["run_id", "r2", "r1", "r0"]


def test_abort_delete_and_tag_from_the_shell(capsys: pytest.CaptureFixture[str],
                                             file_url: str) -> None:
    started = threading.Event()
    stop = threading.Event()
    ended: list[Status] = []

    def train() -> None:
        with engine.sync.connect(file_url) as tracker:
            with tracker.start_run("live") as run:
                started.set()
                for step in range(10_000):
                    run.log_metrics({"loss": 1.0}, step=step)
                    time.sleep(0.01)
                    if stop.is_set():
                        break
            ended.append(tracker.get_run("live").status)

    worker = threading.Thread(target=train)
    worker.start()
    try:
        assert started.wait(30)
        code, out, err = run_cli(capsys, "--db", file_url, "runs", "abort", "live",
                                 "--reason", "from the shell")
        assert code == 0, err
        worker.join(30)
    finally:
        stop.set()
        worker.join(30)
    assert ended == [Status.ABORTED]
    code, out, _ = run_cli(capsys, "--db", file_url, "runs", "tag", "live", "+kept",
                           "+best", "-none")
    assert code == 0
    code, out, err = run_cli(capsys, "--db", file_url, "runs", "kill", "live")
    assert code == 0, err
    assert "already ended" in out
    with engine.sync.connect(file_url) as tracker:
        state = tracker.get_run("live")
        assert state.tags == frozenset({"kept", "best"})
        assert (state.status, state.status_reason) == (Status.ABORTED, "from the shell")
    code, out, err = run_cli(capsys, "--db", file_url, "runs", "delete", "live")
    assert code == 0, err
    with engine.sync.connect(file_url) as tracker:
        assert tracker.get_run("live").deleted
    code, _, err = run_cli(capsys, "--db", file_url, "runs", "tag", "live", "oops")
    assert code == 2
    assert "+TAG or -TAG" in err


def test_a_wide_group_table_folds_to_fit_the_terminal(capsys: pytest.CaptureFixture[str],
                                                      trained: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    code, wide, _ = run_cli(capsys, "--db", trained, "runs", "group", "status")
    assert code == 0
    assert "mean(metrics.acc.last)" in wide
    monkeypatch.setenv("COLUMNS", "80")
    code, narrow, _ = run_cli(capsys, "--db", trained, "runs", "group", "status")
    assert code == 0
    assert max(map(len, narrow.splitlines())) <= 80
    assert re.search(r"^succeeded\s+3\s+metrics\.acc\.last\s+3\s+0\.6\s", narrow, re.M)


def test_tail_waits_for_a_run_that_has_not_started(file_url: str) -> None:
    with engine.sync.connect(file_url):
        pass  # the database exists; the run does not yet
    tail = subprocess.Popen([str(KITTIWAKE), "--db", file_url, "tail", "later"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "120"})
    try:
        assert tail.stdout is not None
        assert "waiting for run later" in tail.stdout.readline()

        def train() -> None:
            with engine.sync.connect(file_url) as tracker, tracker.start_run("later") as run:
                for step in range(5):
                    run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)

        in_thread(train)
        out, err = tail.communicate(timeout=60)
    finally:
        tail.kill()
    assert tail.returncode == 0, err
    assert "run later ended: succeeded" in out


def test_runs_list_and_show_as_of_a_position_or_a_time(capsys: pytest.CaptureFixture[str],
                                                        trained: str) -> None:
    with engine.sync.connect(trained) as tracker:
        first = tracker.get_run("r0").position
        tracker.delete_run("r0")
    code, out, err = run_cli(capsys, "--db", trained, "runs", "list", "--format", "csv",
                             "--columns", "run_id", "--as-of", str(first))
    assert code == 0, err
    assert out.split() == ["run_id", "r0"]
    code, out, _ = run_cli(capsys, "--db", trained, "runs", "list", "--format", "csv",
                           "--columns", "run_id")
    assert out.split() == ["run_id", "r1", "r2"]
    code, out, err = run_cli(capsys, "--db", trained, "runs", "show", "r0", "--as-of",
                             "2999-01-01T00:00:00Z", "--format", "json")
    assert code == 0, err
    assert '"deleted": true' in out
    code, out, err = run_cli(capsys, "--db", trained, "runs", "show", "r0", "--as-of",
                             "2000-01-01")
    assert code == 1
    assert "did not exist yet" in err
    code, _, err = run_cli(capsys, "--db", trained, "runs", "list", "--as-of", "soon")
    assert code == 2
    assert "--as-of" in err


def test_runs_list_in_an_empty_project_names_the_projects_with_runs(
        capsys: pytest.CaptureFixture[str], trained: str) -> None:
    with engine.sync.connect(trained, project="team/vision", durability="normal") as tracker:
        with tracker.start_run("v"):
            pass
        assert tracker.list_projects() == {"default": 3, "team/vision": 1}
    code, out, err = run_cli(capsys, "--db", trained, "--project", "tema/vision",
                             "runs", "list")
    assert code == 0
    assert "(0 runs)" in out
    assert "project 'tema/vision' has no runs" in err
    assert "default (3 runs), team/vision (1 run)" in err
    # A project that has runs, filtered to none, is not a wrong project: no hint.
    code, out, err = run_cli(capsys, "--db", trained, "runs", "list", "--where",
                             "config.lr > 1")
    assert (code, err) == (0, "")
    assert "(0 runs)" in out


def test_runs_list_in_an_empty_database_says_it_is_empty(capsys: pytest.CaptureFixture[str],
                                                          file_url: str) -> None:
    with engine.sync.connect(file_url):
        pass
    code, _, err = run_cli(capsys, "--db", file_url, "runs", "list")
    assert code == 0
    assert "neither has any other project" in err


def test_runs_list_counts_only_runs_not_deleted(capsys: pytest.CaptureFixture[str],
                                                file_url: str) -> None:
    for project, ids in (("team/a", ("a1", "a2", "a3")), ("team/b", ("b1", "b2"))):
        with engine.sync.connect(file_url, project=project, durability="normal") as tracker:
            for run_id in ids:
                with tracker.start_run(run_id):
                    pass
    for project, run_id in (("team/a", "a1"), ("team/a", "a2"), ("team/a", "a3"),
                            ("team/b", "b2")):
        code, out, err = run_cli(capsys, "--db", file_url, "--project", project, "runs",
                                 "delete", run_id)
        assert code == 0, err
    code, out, err = run_cli(capsys, "--db", file_url, "--project", "team/a", "runs", "list")
    assert code == 0
    assert "(0 runs)" in out
    assert "project 'team/a' has no runs but 3 deleted ones (--include-deleted lists them)" \
        in err
    assert "projects with runs: team/b (1 run)\n" in err
    code, out, err = run_cli(capsys, "--db", file_url, "runs", "list")  # project "default"
    assert "project 'default' has no runs; projects with runs: team/b (1 run)\n" in err
    code, out, err = run_cli(capsys, "--db", file_url, "--project", "team/b", "runs",
                             "delete", "b1")
    assert code == 0, err
    code, out, err = run_cli(capsys, "--db", file_url, "--project", "team/a", "runs", "list")
    assert code == 0
    assert err == ("project 'team/a' has no runs but 3 deleted ones (--include-deleted lists "
                   "them), and neither has any other project in this database\n")
    code, out, err = run_cli(capsys, "--db", file_url, "--project", "team/a", "runs", "list",
                             "--include-deleted", "--format", "csv", "--columns", "run_id")
    assert (code, err) == (0, "")
    assert out.split() == ["run_id", "a1", "a2", "a3"]


def test_deleting_a_run_twice_says_it_was_already_deleted(
        capsys: pytest.CaptureFixture[str], trained: str) -> None:
    code, out, err = run_cli(capsys, "--db", trained, "runs", "delete", "r2")
    assert (code, out, err) == (0, "run r2 deleted\n", "")
    with engine.sync.connect(trained) as tracker:
        head = tracker.get_run("r2").position
    code, out, err = run_cli(capsys, "--db", trained, "runs", "delete", "r2")
    assert (code, out, err) == (0, "run r2 was already deleted\n", "")
    with engine.sync.connect(trained) as tracker:
        state = tracker.get_run("r2")
        assert state.deleted
        assert state.position == head  # the second delete recorded nothing
    code, out, err = run_cli(capsys, "--db", trained, "runs", "delete", "r9")
    assert code == 1
    assert "no run 'r9'" in err
