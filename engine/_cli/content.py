"""The commands for what a run records besides metrics: ``logs`` (its captured output, and
``--follow`` live), ``files`` and ``download``, ``gc``, ``runs notes``; and the sections
``runs show`` adds for notes, environment, files and the last lines of output."""

from __future__ import annotations

import argparse
from typing import Any, TypeVar

from engine._core.files import FileRef
from engine._core.model import RunState
from engine._runtime.tracker import Tracker
from engine.errors import RunNotFoundError

from .display import emit, fmt, table, terminal_width
from .errors import CliError
from .escape import safe
from .tracker import open_tracker

__all__ = ["add_commands", "show_sections"]

Parser = TypeVar("Parser", bound=argparse.ArgumentParser)
STREAMS = ("logs/stdout", "logs/stderr")
SHOWN_LINES = 10


def add_commands(commands: argparse._SubParsersAction[Parser],
                 runs: argparse._SubParsersAction[Parser]) -> None:
    """Register ``logs``, ``files``, ``download`` and ``gc``, and ``runs notes``."""
    logs = commands.add_parser("logs", help="a run's captured output (stdout and stderr)")
    logs.add_argument("run_id")
    logs.add_argument("--follow", "-f", action="store_true",
                      help="keep printing new lines until the run ends")
    logs.add_argument("--tail", "-n", type=int, metavar="N", help="only the last N lines")
    logs.set_defaults(handler=_logs)

    files = commands.add_parser("files", help="a run's files: attributes and file series")
    files.add_argument("run_id")
    files.add_argument("key", nargs="?", help="a file series to list step by step")
    files.set_defaults(handler=_files)

    download = commands.add_parser("download", help="fetch a run's file, checked against "
                                   "its digest")
    download.add_argument("run_id")
    download.add_argument("key", help="a file attribute (model/weights), or a file series "
                          "with --step")
    download.add_argument("path", nargs="?", default=".",
                          help="where to write it (a directory: under the file's name)")
    download.add_argument("--step", type=float, help="the step of a file series entry "
                          "(default: its last)")
    download.set_defaults(handler=_download)

    gc = commands.add_parser("gc", help="remove stored file bytes no event refers to")
    gc.add_argument("--grace", type=float, default=3600.0, metavar="SECONDS",
                    help="keep bytes stored more recently than this (default: an hour; "
                         "an upload in flight has not named its bytes yet)")
    gc.add_argument("--dry-run", action="store_true", help="only count what would go")
    gc.set_defaults(handler=_gc)

    notes = runs.add_parser("notes", help="set a run's notes (its description)")
    notes.add_argument("run_id")
    notes.add_argument("text")
    notes.set_defaults(handler=_notes)


async def show_sections(tracker: Tracker, state: RunState) -> list[str]:
    """What ``runs show`` prints after the metrics: notes, env, files, last output lines."""
    out = []
    if state.notes:
        out.append("\nnotes\n" + safe(state.notes))
    if state.env:
        out.append("\nenv\n" + table(("path", "value"), sorted(state.env.items()),
                                     width=terminal_width()))
    if state.files:
        out.append("\nfiles\n" + _file_table(state.files.values()))
    lines = await _merged(tracker, state, SHOWN_LINES)
    if lines:
        out.append(f"\noutput (last {len(lines)} lines; kittiwake logs {state.run_id})\n"
                   + "\n".join(_line(s, t) for _, s, t in lines))
    return out


def _file_table(refs: Any) -> str:
    # The key is what ``download`` needs: cut anything else first.
    return table(("key", "step", "name", "size", "media type", "digest"),
                 [(r.key, r.step, r.name, _size(r.size), r.media_type, r.digest[:19])
                  for r in refs], numeric=(1, 3), keep=(0,), width=terminal_width())


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    raise AssertionError("unreachable")  # pragma: no cover


def _line(stream: str, text: str) -> str:
    return safe(text) if stream == "logs/stdout" else f"[stderr] {safe(text)}"


async def _merged(tracker: Tracker, state: RunState,
                  tail: int | None) -> list[tuple[float, str, str]]:
    """Both streams' lines in the order they were captured (the last ``tail``)."""
    lines: list[tuple[float, str, str]] = []
    for stream in STREAMS:
        text = await tracker.read_text(state.run_id, stream, tail=tail)
        lines.extend((at, stream, value)
                     for at, value in zip(text.timestamps, text.values, strict=True))
    lines.sort(key=lambda line: line[0])
    return lines[-tail:] if tail else lines


async def _logs(args: argparse.Namespace) -> int:
    if args.tail is not None and args.tail < 0:
        raise CliError("--tail must be 0 or more")
    async with open_tracker(args) as tracker:
        if not args.follow:
            state = await tracker.get_run(args.run_id)
            for _, stream, text in await _merged(tracker, state, args.tail):
                emit(_line(stream, text))
            return 0
        await _follow(tracker, args.run_id)
    return 0


async def _follow(tracker: Tracker, run_id: str) -> None:
    """Every line, history then live, until the run ends."""
    await tracker.get_run(run_id)  # a missing run is an error, not an endless wait
    async for event in tracker.subscribe(runs=[run_id], types=["TextLogged", "StatusChanged"],
                                         from_position=0):
        if event.type == "StatusChanged":
            if event.data.get("status") != "running":
                return
            continue
        rows = [(at, stream, text) for stream in STREAMS
                if (column := event.data["text"].get(stream))
                for at, text in zip(column["timestamps"], column["values"], strict=True)]
        for _, stream, text in sorted(rows, key=lambda row: row[0]):
            emit(_line(stream, text))


async def _files(args: argparse.Namespace) -> int:
    async with open_tracker(args) as tracker:
        if args.key:
            refs: list[FileRef] = await tracker.read_files(args.run_id, args.key)
            if not refs:
                emit(f"run {args.run_id} has no file series {safe(args.key)!r}")
                return 0
            emit(_file_table(refs))
            return 0
        state = await tracker.get_run(args.run_id)
    if not state.files:
        emit(f"run {args.run_id} has no file attributes (list a file series with "
             f"`kittiwake files {args.run_id} KEY`)")
        return 0
    emit(_file_table(state.files.values()))
    return 0


async def _download(args: argparse.Namespace) -> int:
    async with open_tracker(args) as tracker:
        state = await tracker.get_run(args.run_id)
        ref = state.files.get(args.key) if args.step is None else None
        if ref is None:
            series = await tracker.read_files(args.run_id, args.key)
            if args.step is not None:
                series = [r for r in series if r.step == args.step]
            if not series:
                raise RunNotFoundError(f"run {args.run_id} has no file {args.key!r}"
                                       + ("" if args.step is None else f" at step {args.step}"))
            ref = series[-1]
        written = await tracker.download(ref, args.path)
    emit(f"{safe(written)} ({_size(ref.size)}, {ref.digest})")
    return 0


async def _gc(args: argparse.Namespace) -> int:
    async with open_tracker(args) as tracker:
        done = await tracker.gc(grace=args.grace, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    emit(f"{verb} {done.removed} unreferenced file{'' if done.removed == 1 else 's'} "
         f"({_size(done.freed)}) and {done.leftovers} unfinished upload"
         f"{'' if done.leftovers == 1 else 's'}; kept {done.kept_young} younger than "
         f"{fmt(args.grace)} s")
    return 0


async def _notes(args: argparse.Namespace) -> int:
    async with open_tracker(args) as tracker, tracker.edit_run(args.run_id) as run:
        run.set_notes(args.text)
    emit(f"run {args.run_id} notes set")
    return 0
