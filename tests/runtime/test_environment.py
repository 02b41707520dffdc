"""Environment and source capture, in and out of real, temporary git work trees."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import anyio
import pytest

from engine._core.validate import normalize_config
from engine._runtime.environment import (
    environment,
    environment_async,
    source_files,
    source_files_async,
)
from engine.errors import ValidationError

GIT_KEYS = {"git/commit", "git/branch", "git/remote", "git/dirty"}


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` as a user would, with a name and a default branch set."""
    done = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com",
         "-c", "init.defaultBranch=main", *args],
        cwd=repo, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A work tree with one commit on ``main``."""
    root = tmp_path / "project"
    root.mkdir()
    git(root, "init", "-q")
    (root / "train.py").write_text("print('training')\n")
    git(root, "add", "train.py")
    git(root, "commit", "-q", "-m", "first")
    return root


def counting_git(tmp_path: Path, delay: float = 0.0) -> tuple[str, Path]:
    """A git that logs each invocation (and may be slow); its path and its log."""
    log = tmp_path / "git.log"
    wrapper = tmp_path / "git-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$1" >> {log}\nsleep {delay}\nexec git "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return str(wrapper), log


def test_outside_a_work_tree_the_process_is_described_without_git(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = environment()
    assert GIT_KEYS.isdisjoint(env)
    assert env["command/cwd"] == str(tmp_path)
    assert env["command/argv"] == sys.argv
    assert env["pid"] == os.getpid()
    assert env["python/executable"] == sys.executable
    assert env["python/version"] == ".".join(map(str, sys.version_info[:3]))
    assert all(type(env[key]) is str for key in ("host/name", "os/platform", "user"))
    assert normalize_config(env) == env


def test_in_a_work_tree_commit_branch_remote_and_cleanliness(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(repo, "remote", "add", "origin", "https://alice:s3cret@example.com/team/proj.git")
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")  # anywhere inside the tree
    env = environment()
    assert env["git/commit"] == git(repo, "rev-parse", "HEAD")
    assert env["git/branch"] == "main"
    assert env["git/remote"] == "https://example.com/team/proj.git"  # no credentials kept
    assert env["git/dirty"] is False


def test_changed_tracked_files_make_the_tree_dirty(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    monkeypatch.chdir(repo)
    assert environment()["git/dirty"] is True


def test_untracked_files_do_not_make_the_tree_dirty(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "notes.txt").write_text("scratch\n")
    monkeypatch.chdir(repo)
    assert environment()["git/dirty"] is False


def test_a_detached_head_has_a_commit_and_no_branch(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(repo, "checkout", "-q", "--detach")
    monkeypatch.chdir(repo)
    env = environment()
    assert env["git/commit"] == git(repo, "rev-parse", "HEAD")
    assert "git/branch" not in env
    assert "git/remote" not in env  # and no remote: none is named


def test_before_the_first_commit_there_is_a_branch_and_no_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(tmp_path, "init", "-q")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["-c"])
    env = environment()
    assert env["git/branch"] == "main"
    assert "git/commit" not in env
    assert source_files(True) == []  # no HEAD to diff against


def test_the_upstream_remote_is_preferred_and_ssh_user_names_kept(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    git(repo, "remote", "add", "fork", "git@example.com:me/proj.git")
    git(repo, "remote", "add", "upstream", "ssh://git:pw@example.com/team/proj.git")
    git(repo, "update-ref", "refs/remotes/fork/main", "HEAD")
    git(repo, "branch", "-q", "--set-upstream-to=fork/main")
    monkeypatch.chdir(repo)
    assert environment()["git/remote"] == "git@example.com:me/proj.git"


def test_without_git_installed_nothing_of_git_is_recorded(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "train.py").write_text("print('changed')\n")
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "argv", ["-c"])
    missing = str(repo / "no-such-git")
    assert GIT_KEYS.isdisjoint(environment(git=missing))
    assert source_files(True, git=missing) == []


def test_git_runs_once_per_process_even_from_many_threads(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counted, log = counting_git(tmp_path, delay=0.05)
    monkeypatch.chdir(repo)
    results: list[dict[str, object]] = []
    threads = [threading.Thread(target=lambda: results.append(environment(git=counted)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    calls = log.read_text().split()
    assert calls == ["rev-parse", "status", "config"]
    assert all(result["git/commit"] == results[0]["git/commit"] for result in results)
    environment(git=counted)
    source_files(True, git=counted)
    source_files(True, git=counted)
    assert log.read_text().split() == [*calls, "diff"]


async def test_the_async_variant_keeps_the_event_loop_free_while_git_runs(
        repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slow, _ = counting_git(tmp_path, delay=0.2)
    monkeypatch.chdir(repo)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(tick)
        env = await environment_async(git=slow)
        tasks.cancel_scope.cancel()
    assert ticks >= 10  # three git calls of 0.2 s each; a blocked loop would not tick
    assert env == environment(git=slow)
    began = time.perf_counter()
    await environment_async(git=slow)
    assert time.perf_counter() - began < 0.05  # known now: no thread, no git


def test_source_is_the_script_and_the_diff_against_head(
        repo: Path, tmp_path: Path) -> None:
    (repo / "train.py").write_text("print('training, changed')\n")
    script = ("import json, sys\nfrom engine._runtime.environment import source_files\n"
              "print(json.dumps([[k, v if isinstance(v, str) else v.decode()] for k, v in "
              "((k, str(v) if not isinstance(v, bytes) else v) for k, v in "
              "source_files(True))]))\n")
    (repo / "run.py").write_text(script)
    done = subprocess.run([sys.executable, "run.py"], cwd=repo, capture_output=True,
                          text=True, check=True)
    files = dict(json.loads(done.stdout))
    assert files["source/run.py"] == str(repo / "run.py")
    assert "+print('training, changed')" in files["source/git.diff"]
    assert list(files) == ["source/run.py", "source/git.diff"]


def test_a_clean_tree_has_no_diff_and_false_captures_nothing(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "argv", ["-c"])
    assert source_files(True) == []
    (repo / "train.py").write_text("changed\n")
    assert source_files(False) == []


def test_globs_match_from_the_root_and_leave_out_what_git_ignores(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("src/model.py", "src/nn/layers.py", "src/data.csv", ".venv/lib/x.py",
                 "top.py"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(f"# {name}\n")
    (repo / ".gitignore").write_text(".venv/\n")
    git(repo, "add", "src/model.py", ".gitignore")
    git(repo, "commit", "-q", "-m", "model")
    monkeypatch.chdir(repo / "src")
    monkeypatch.setattr(sys, "argv", ["-c"])
    files = dict(source_files(["src/**/*.py", "*.py", ".venv/**"]))
    assert files == {"source/src/model.py": repo / "src/model.py",
                     "source/src/nn/layers.py": repo / "src/nn/layers.py",  # untracked
                     "source/top.py": repo / "top.py",
                     "source/train.py": repo / "train.py"}


def test_outside_a_work_tree_globs_match_from_the_current_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a.py", "pkg/b.py", "pkg/deep/c.py", "pkg/c.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    (tmp_path / "pkg" / "loop").symlink_to(tmp_path)  # a cycle a walk must not follow
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["-c"])
    assert [key for key, _ in source_files(["**/*.py"])] == [
        "source/a.py", "source/pkg/b.py", "source/pkg/deep/c.py"]
    assert [key for key, _ in source_files(["pkg/*.py", "pkg/c.tx?"])] == [
        "source/pkg/b.py", "source/pkg/c.txt"]


def test_past_the_limit_the_rest_is_left_out_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for index in range(6):
        (tmp_path / f"f{index}.bin").write_bytes(b"x" * 400)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["-c"])
    with pytest.warns(UserWarning, match=r"limited to 1000 bytes.*left out 4 file\(s\) of "
                                         r"1600 bytes: source/f2.bin, source/f3.bin"):
        files = source_files(["*.bin"], limit=1000)
    assert [key for key, _ in files] == ["source/f0.bin", "source/f1.bin"]


def test_a_file_name_that_cannot_be_a_key_is_left_out_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ok.py").write_text("x\n")
    (tmp_path / "bad\x01name.py").write_text("x\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["-c"])
    with pytest.warns(UserWarning, match="cannot be keys"):
        files = source_files(["*.py"])
    assert [key for key, _ in files] == ["source/ok.py"]


@pytest.mark.parametrize("pattern", ["/etc/*", "../*.py", "", "a/../../b"])
def test_patterns_outside_the_tree_are_refused(pattern: str) -> None:
    with pytest.raises(ValidationError, match="capture_source"):
        source_files([pattern])


async def test_source_files_async_gives_the_same_answer(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(repo)
    monkeypatch.setattr(sys, "argv", ["-c"])
    assert await source_files_async(["*.py"]) == source_files(["*.py"])
