"""Terminal output cannot be forged: what a run recorded — tags, names, config values,
reasons — may hold ESC, BEL, CR, LF and bidirectional overrides, and every command prints
them as visible escapes, never raw."""

from __future__ import annotations

import pytest

import engine
from engine._cli.escape import safe, safe_lines
from engine._cli.main import main

EVIL_TAG = "evil\x1b[2J\x07"
EVIL_CONFIG = "x\r\nstatus      succeeded"
EVIL_NAME = "report\u202etxt.exe"
RAW = ("\x1b", "\x07", "\r", "\u202e")


@pytest.fixture
def forged(file_url: str) -> str:
    with engine.sync.connect(file_url, durability="normal") as tracker:
        with tracker.start_run("a", name=EVIL_NAME, tags=(EVIL_TAG,),
                               config={"note": EVIL_CONFIG, "e\u202ekey": 1}) as run:
            run.log_metrics({"loss": 1.0}, step=0)
        with tracker.start_run("b", config={"note": "plain"}):
            pass
    return file_url


def printed(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    main(list(argv))
    out, err = capsys.readouterr()
    return out + err


@pytest.mark.parametrize("argv", [
    ["runs", "show", "a"],
    ["runs", "show", "a", "--format", "json"],
    ["runs", "list", "--columns", "run_id,name,tags,config.note"],
    ["runs", "list", "--format", "csv"],
    ["runs", "list", "--format", "json"],
    ["runs", "group", "config.note"],
    ["diff", "a", "b"],
    ["diff", "a", "b", "--format", "json"],
    ["events"],
    ["runs", "list", "--where", "name = 'x\x1b[2J'"],   # an error that quotes the query
    ["runs", "list", "--where", "name = 'x"],           # a syntax error with its caret
])
def test_no_command_prints_a_control_or_bidi_character_raw(
        capsys: pytest.CaptureFixture[str], forged: str, argv: list[str]) -> None:
    text = printed(capsys, "--db", forged, *argv)
    for raw in RAW:
        assert raw not in text, (argv, raw)


def test_the_table_shows_what_was_recorded_as_escapes(capsys: pytest.CaptureFixture[str],
                                                      forged: str) -> None:
    text = printed(capsys, "--db", forged, "runs", "show", "a")
    assert "evil\\x1b[2J\\x07" in text
    assert "x\\r\\nstatus      succeeded" in text
    assert "report\\u202etxt.exe" in text
    # The forged line does not stand on a line of its own: the run's own status line is the
    # only one that starts with "status".
    assert sum(line.startswith("status") for line in text.splitlines()) == 1


@pytest.mark.parametrize("text", ["plain", "\u00e9 \u2013 \u201cquoted\u201d", "日本語",
                                  "tab\there"])
def test_ordinary_text_is_left_as_it_is(text: str) -> None:
    assert safe_lines(text) == text
    if "\t" not in text:
        assert safe(text) == text


def test_line_breaks_survive_only_where_the_layout_is_ours() -> None:
    assert safe("a\nb") == "a\\nb"
    assert safe_lines("a\nb\r\nc\rd") == "a\nb\nc\\rd"
