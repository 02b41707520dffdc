"""Output capture at the descriptor level: what a user writes, from Python, C and children.

Most tests run a script in a fresh interpreter, whose descriptors are as a user's would be
(pipes to this test, or a pseudo-terminal), and read back both what the script's capture
recorded and what still reached the script's own stdout and stderr. A few run in this
process, where pytest has already replaced the descriptors and ``sys.stdout``.
"""

from __future__ import annotations

import itertools
import json
import os
import pty
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine._runtime.lines import MAX_LINE_BYTES, LineSplitter
from engine._runtime.output import OutputCapture

PRELUDE = """
import ctypes, json, os, subprocess, sys, threading, time
from engine._runtime.output import OutputCapture
lines = []
def record(stream, number, text):
    lines.append([stream, number, text])
capture = OutputCapture(record)
def save():
    with open(sys.argv[1], "w") as file:
        json.dump(lines, file)
"""


def run_script(tmp_path: Path, body: str, **popen: Any) -> tuple[list[list[Any]], str, str]:
    """Run ``body`` after the prelude in a fresh interpreter; (what it recorded, its stdout,
    its stderr)."""
    result_file = tmp_path / "lines.json"
    script = PRELUDE + textwrap.dedent(body) + "\nsave()\n"
    streams = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    done = subprocess.run([sys.executable, "-c", script, str(result_file)], timeout=60,
                          **streams)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr
    out = (done.stdout or b"").decode(errors="replace")
    return json.loads(result_file.read_text()), out, stderr


def texts(lines: list[list[Any]], stream: str = "stdout") -> list[str]:
    """The recorded texts of one stream, checking their numbers run 0, 1, 2, ..."""
    mine = [line for line in lines if line[0] == stream]
    assert [line[1] for line in mine] == list(range(len(mine)))
    return [line[2] for line in mine]


def test_print_is_recorded_per_stream_and_still_shown(tmp_path: Path) -> None:
    lines, out, err = run_script(tmp_path, """
        print("before")  # still in sys.stdout's buffer: a pipe is block-buffered
        with capture:
            print("epoch 1")
            print("warning: slow", file=sys.stderr)
            print("epoch 2")
        print("not captured")
    """)
    assert texts(lines) == ["epoch 1", "epoch 2"]
    assert texts(lines, "stderr") == ["warning: slow"]
    assert out == "before\nepoch 1\nepoch 2\nnot captured\n"
    assert err == "warning: slow\n"


def test_c_level_writes_are_recorded(tmp_path: Path) -> None:
    lines, out, _ = run_script(tmp_path, """
        with capture:
            os.write(1, b"written to fd 1\\n")
            ctypes.CDLL(None).printf(b"printf %d\\n", 42)  # stays in C's buffer until stop
            os.write(2, b"written to fd 2\\n")
    """)
    assert texts(lines) == ["written to fd 1", "printf 42"]
    assert texts(lines, "stderr") == ["written to fd 2"]
    assert "printf 42\n" in out


def test_child_processes_are_recorded(tmp_path: Path) -> None:
    lines, out, err = run_script(tmp_path, """
        with capture:
            subprocess.run(["echo", "from a child"], check=True)
            subprocess.run(["sh", "-c", "echo child error >&2"], check=True)
            subprocess.run([sys.executable, "-c", "print('from python')"], check=True)
    """)
    assert texts(lines) == ["from a child", "from python"]
    assert texts(lines, "stderr") == ["child error"]
    assert out == "from a child\nfrom python\n"
    assert err == "child error\n"


def test_a_progress_bar_is_kept_in_its_final_form(tmp_path: Path) -> None:
    lines, out, _ = run_script(tmp_path, """
        with capture:
            print("start")
            for percent in range(0, 101, 10):  # as tqdm draws: each update rewrites the line
                sys.stdout.write(f"\\rtraining {percent:3d}%|{'#' * (percent // 10):10}|")
                sys.stdout.flush()
            sys.stdout.write("\\n")
            sys.stdout.write("windows line\\r\\n")
            print("done")
    """)
    assert texts(lines) == ["start", "training 100%|##########|", "windows line", "done"]
    assert "\rtraining  50%|#####     |" in out  # the terminal still sees every update


def test_undecodable_bytes_become_replacement_characters(tmp_path: Path) -> None:
    lines, out, _ = run_script(tmp_path, """
        with capture:
            os.write(1, "caf\\u00e9 ".encode() + b"\\xff\\xfe end\\n")
            os.write(1, b"nul \\x00 here\\n")
    """)
    assert texts(lines) == ["caf\u00e9 \ufffd\ufffd end", "nul \\0 here"]
    assert out.startswith("caf\u00e9 ")


def test_a_long_line_is_cut_into_pieces_of_at_most_a_mebibyte(tmp_path: Path) -> None:
    lines, out, _ = run_script(tmp_path, """
        with capture:
            os.write(1, ("\\u00e9" * 1_500_000 + "\\n").encode())  # 3 MB, 2-byte characters
            print("next")
    """)
    recorded = texts(lines)
    assert recorded[-1] == "next"
    pieces = recorded[:-1]
    assert len(pieces) == 3
    assert all(len(piece.encode()) <= MAX_LINE_BYTES for piece in pieces)
    assert "".join(pieces) == "\u00e9" * 1_500_000  # nothing lost, no character split
    assert len(out) == 1_500_000 + len("\nnext\n")


def test_an_exception_in_the_block_keeps_the_last_lines_and_restores_descriptors(
        tmp_path: Path) -> None:
    lines, out, _ = run_script(tmp_path, """
        def identity(fd):
            info = os.fstat(fd)
            return info.st_dev, info.st_ino
        before = [identity(1), identity(2)], sorted(os.listdir("/proc/self/fd"))
        try:
            with capture:
                print("loss is nan at step 7")  # block-buffered: sys.stdout is a pipe here
                sys.stdout.write("no newline yet")
                raise FloatingPointError("diverged")
        except FloatingPointError:
            pass
        after = [identity(1), identity(2)], sorted(os.listdir("/proc/self/fd"))
        assert before == after, (before, after)
        print("after the block")
    """)
    assert texts(lines) == ["loss is nan at step 7", "no newline yet"]
    assert out == "loss is nan at step 7\nno newline yetafter the block\n"


def test_capture_stops_and_starts_again_numbering_on(tmp_path: Path) -> None:
    lines, out, _ = run_script(tmp_path, """
        capture.start()
        print("one")
        capture.stop()
        print("between")
        capture.stop()  # stopping twice does nothing
        capture.start()
        print("two")
        capture.stop()
    """)
    assert lines == [["stdout", 0, "one"], ["stdout", 1, "two"]]
    assert out == "one\nbetween\ntwo\n"


def test_numbering_can_go_on_from_earlier_lines(tmp_path: Path) -> None:
    lines, _, _ = run_script(tmp_path, """
        capture = OutputCapture(record, first_lines={"stdout": 40})
        with capture:
            print("resumed")
            print("oops", file=sys.stderr)
    """)
    assert lines == [["stdout", 40, "resumed"], ["stderr", 0, "oops"]]


@pytest.mark.parametrize("first_lines", [{"stdout": -1}, {"stdin": 3}, {"stderr": 1.5}])
def test_first_lines_must_be_line_numbers(first_lines: dict[Any, Any]) -> None:
    with pytest.raises(ValueError, match="first_lines"):
        OutputCapture(lambda *_: None, first_lines=first_lines)


def test_the_callback_runs_on_another_thread_and_stop_waits_for_it(tmp_path: Path) -> None:
    lines, _, _ = run_script(tmp_path, """
        threads = set()
        def slow(stream, number, text):
            threads.add(threading.current_thread() is threading.main_thread())
            time.sleep(0.02)
            record(stream, number, text)
        with OutputCapture(slow):
            for i in range(20):
                print(i)
        assert threads == {False}, threads
    """)
    assert texts(lines) == [str(i) for i in range(20)]


def test_a_failing_callback_is_raised_at_stop_and_output_still_flows(tmp_path: Path) -> None:
    _, out, _ = run_script(tmp_path, """
        def broken(stream, number, text):
            raise KeyError(text)
        try:
            with OutputCapture(broken):
                print("first")
                print("second")
        except KeyError as exc:
            print("raised", exc)
    """)
    assert out == "first\nsecond\nraised 'first'\n"


def test_a_child_outliving_the_block_is_not_waited_for_and_still_shown(
        tmp_path: Path) -> None:
    lines, out, _ = run_script(tmp_path, """
        with capture:
            child = subprocess.Popen(["sh", "-c", "echo early; sleep 1; echo late"])
            time.sleep(0.3)
            began = time.monotonic()
        assert time.monotonic() - began < 0.5, "stop waited for the child"
        child.wait()
        time.sleep(0.1)
    """)
    assert texts(lines) == ["early"]
    assert out == "early\nlate\n"


def test_on_a_terminal_programs_still_see_a_terminal(tmp_path: Path) -> None:
    reader, writer = pty.openpty()
    try:
        lines, _, _ = run_script(tmp_path, """
            with capture:
                print("\\x1b[32mgreen\\x1b[0m", os.isatty(1), sys.stdout.isatty())
        """, stdout=writer)
        os.close(writer)
        shown = b""
        while chunk := _read_pty(reader):
            shown += chunk
    finally:
        os.close(reader)
    assert texts(lines) == ["\x1b[32mgreen\x1b[0m True True"]
    assert shown.replace(b"\r\n", b"\n") == b"\x1b[32mgreen\x1b[0m True True\n"


def _read_pty(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # every writer closed it
        return b""


def test_a_second_capture_is_refused_and_the_first_goes_on(tmp_path: Path) -> None:
    lines, _, _ = run_script(tmp_path, """
        refusals = []
        with capture:
            for attempt in (capture.start, OutputCapture(record).start):
                try:
                    attempt()
                except RuntimeError as exc:
                    refusals.append(str(exc))
            print("still captured")
        assert len(refusals) == 2, refusals
        sys.stderr.write("\\n".join(refusals))
    """)
    assert texts(lines) == ["still captured"]


def test_under_pytest_the_replaced_streams_are_flushed_and_fds_captured(
        capfd: pytest.CaptureFixture[str]) -> None:
    recorded: list[tuple[str, int, str]] = []
    with OutputCapture(lambda stream, number, text: recorded.append((stream, number, text))):
        print("through sys.stdout")  # pytest's own object, which bypasses fd 1
        os.write(1, b"through fd 1\n")
        os.write(2, b"through fd 2\n")
    out, err = capfd.readouterr()
    assert recorded == [("stdout", 0, "through fd 1"), ("stderr", 0, "through fd 2")]
    assert "through sys.stdout\n" in out
    assert "through fd 1\n" in out
    assert err == "through fd 2\n"


def test_nesting_in_one_process_is_refused() -> None:
    outer = OutputCapture(lambda *_: None)
    with outer, pytest.raises(RuntimeError, match="another output capture is active"):
        OutputCapture(lambda *_: None).start()
    assert not outer.active
    with OutputCapture(lambda *_: None):  # and a new one may start after
        pass


def test_stop_from_another_thread_than_start() -> None:
    capture = OutputCapture(lambda *_: None)
    capture.start()
    stopper = threading.Thread(target=capture.stop)
    stopper.start()
    stopper.join(10)
    assert not capture.active


# The line splitter alone ----------------------------------------------------------------


@pytest.mark.parametrize(("written", "lines"), [
    (b"a\nb\n", ["a", "b"]),
    (b"a\r\nb\r\n", ["a", "b"]),
    (b"10%\r50%\r100%\n", ["100%"]),
    (b"\r 10%\r 20%\n", [" 20%"]),
    (b"erased\r      \rnew text\n", ["new text"]),
    (b"double\r\r\n", ["double"]),
    (b"\n\n", ["", ""]),
    (b"\x1b[1mbold\x1b[0m\n", ["\x1b[1mbold\x1b[0m"]),
])
def test_lines_read_as_the_terminal_showed_them(written: bytes, lines: list[str]) -> None:
    splitter = LineSplitter()
    assert splitter.feed(written) + splitter.finish() == lines


def test_an_unfinished_line_is_handed_over_at_the_end_unless_empty() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"50%\r") == []
    assert splitter.finish() == ["50%"]
    assert splitter.feed(b"\r") + splitter.finish() == []


def test_memory_stays_bounded_for_a_bar_that_never_ends_its_line() -> None:
    splitter = LineSplitter()
    for step in range(10_000):
        assert splitter.feed(f"\rstep {step}".encode()) == []
    assert len(splitter._pending) < 32
    assert splitter.finish() == ["step 9999"]


@given(st.binary(max_size=300).flatmap(
    lambda data: st.tuples(st.just(data), st.lists(st.integers(0, len(data)), max_size=8))))
def test_chunking_never_changes_the_lines(case: tuple[bytes, list[int]]) -> None:
    data, cuts = case
    whole = LineSplitter()
    expected = whole.feed(data) + whole.finish()
    chunked = LineSplitter()
    got: list[str] = []
    bounds = [0, *sorted(cuts), len(data)]
    for start, end in itertools.pairwise(bounds):
        got += chunked.feed(data[start:end])
    assert got + chunked.finish() == expected


def test_the_stream_is_decoded_as_utf8_across_chunk_bounds() -> None:
    splitter = LineSplitter()
    encoded = "\u00e9t\u00e9\n".encode()
    assert splitter.feed(encoded[:1]) + splitter.feed(encoded[1:]) == ["\u00e9t\u00e9"]


def test_a_busy_writer_loses_no_line(tmp_path: Path) -> None:
    lines, out, _ = run_script(tmp_path, """
        with capture:
            for i in range(20_000):
                print(f"line {i}")
    """)
    assert len(texts(lines)) == 20_000
    assert out.count("\n") == 20_000
