"""The command line shows what runs record besides metrics: ``runs show`` (notes, env, files
with sizes, the last lines of output), ``logs`` (and ``--follow``), ``files``, ``download``,
``gc`` and ``runs notes``."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

import engine
from engine._cli.main import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def recorded(file_url: str) -> str:
    with engine.sync.connect(file_url, durability="normal") as tracker, \
            tracker.start_run("r", notes="warmup helped", capture_env=True) as run:
        run.log_metrics({"loss": 0.5}, step=0)
        for number, line in enumerate(["epoch 1", "epoch 2\x1b[2J", "done"]):
            run.log_text({"logs/stdout": line}, step=number)  # as captured output is
        run.log_text({"logs/stderr": "a warning"}, step=0)
        run.upload({"model/weights": b"w" * 3000})
        run.log_files({"eval/pred": b"png?"}, step=1)
    return file_url


def test_runs_show_prints_notes_env_files_and_the_last_lines(
        capsys: pytest.CaptureFixture[str], recorded: str) -> None:
    code, out, _ = run_cli(capsys, "--db", recorded, "runs", "show", "r")
    assert code == 0
    assert "notes\nwarmup helped" in out
    assert "python/version" in out
    assert "model/weights" in out
    assert "2.9 KiB" in out
    assert "epoch 2\\x1b[2J" in out  # escaped, never sent to the terminal raw
    assert "[stderr] a warning" in out


def test_logs_prints_the_output_and_tail_the_last_lines(
        capsys: pytest.CaptureFixture[str], recorded: str) -> None:
    code, out, _ = run_cli(capsys, "--db", recorded, "logs", "r")
    assert code == 0
    assert out.splitlines() == ["epoch 1", "epoch 2\\x1b[2J", "done", "[stderr] a warning"]
    _, out, _ = run_cli(capsys, "--db", recorded, "logs", "r", "--tail", "1")
    assert out.splitlines() == ["[stderr] a warning"]


def test_logs_follow_prints_lines_as_they_come_until_the_run_ends(
        capsys: pytest.CaptureFixture[str], file_url: str) -> None:
    with engine.sync.connect(file_url, durability="normal") as tracker:
        context = tracker.start_run("live")
        run = context.__enter__()
        run.log_text({"logs/stdout": "first"}, step=0)
        run.flush()
        result: list[int] = []
        follower = threading.Thread(target=lambda: result.append(
            main(["--db", file_url, "logs", "live", "--follow"])))
        follower.start()
        time.sleep(0.5)
        run.log_text({"logs/stdout": "second"}, step=1)
        run.flush()
        context.__exit__(None, None, None)
        follower.join(30)
    assert result == [0]
    out, _ = capsys.readouterr()
    assert out.splitlines() == ["first", "second"]


def test_files_download_gc_and_notes(capsys: pytest.CaptureFixture[str], recorded: str,
                                     tmp_path: Path) -> None:
    code, out, _ = run_cli(capsys, "--db", recorded, "files", "r")
    assert code == 0
    assert "model/weights" in out
    assert "eval/pred" not in out
    _, out, _ = run_cli(capsys, "--db", recorded, "files", "r", "eval/pred")
    assert "eval/pred" in out
    assert "4 B" in out
    code, out, _ = run_cli(capsys, "--db", recorded, "download", "r", "model/weights",
                           str(tmp_path / "w.bin"))
    assert code == 0
    assert (tmp_path / "w.bin").read_bytes() == b"w" * 3000
    code, _, _ = run_cli(capsys, "--db", recorded, "download", "r", "eval/pred",
                         str(tmp_path))
    assert code == 0
    code, _, err = run_cli(capsys, "--db", recorded, "download", "r", "nothing")
    assert code == 1
    assert "no file 'nothing'" in err
    code, out, _ = run_cli(capsys, "--db", recorded, "gc", "--grace", "0")
    assert code == 0
    assert "removed 0 unreferenced files" in out
    code, _, _ = run_cli(capsys, "--db", recorded, "runs", "notes", "r", "better notes")
    assert code == 0
    with engine.sync.connect(recorded) as tracker:
        assert tracker.get_run("r").notes == "better notes"


@pytest.mark.parametrize(("name", "kept"), [
    ("../../escaped.txt", "escaped.txt"), ("/etc/escaped.txt", "escaped.txt"),
    ("ckpt\\..\\..\\escaped.txt", "escaped.txt"), ("..", None), ("ckpt/model.pt", "model.pt")])
def test_a_download_into_a_directory_never_leaves_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, kept: str | None) -> None:
    """Whoever logged a file chose its name; downloading it into a directory writes only the
    name's last part there (or the digest), whatever the name says."""
    url = str(tmp_path / "runs.db")
    with engine.sync.connect(url, durability="normal") as tracker, \
            tracker.start_run("r") as run:
        ref = run.upload({"f": engine.File(b"payload", name=name)})["f"]
    into = tmp_path / "a" / "b"
    into.mkdir(parents=True)
    assert main(["--db", url, "download", "r", "f", str(into)]) == 0
    capsys.readouterr()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.read_bytes() == b"payload"]
    expected = into / (kept or ref.digest.removeprefix("sha256:"))
    assert written == [expected]
