"""The ``kittiwake`` command.

Every command opens the database named by ``--db`` (or ``$KITTIWAKE_DB``, default
``kittiwake.db`` in the working directory). Errors are one line on stderr and a non-zero exit,
never a traceback (set ``KITTIWAKE_DEBUG=1`` to see one).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import NoReturn

import anyio

from engine.errors import EngineError

from . import content as content_commands
from . import jobs as jobs_commands
from . import runs as runs_commands
from .display import Counter, Progress, emit, event_json
from .errors import CliError, UsageError
from .escape import safe_lines
from .tracker import invoked_as, open_tracker

__all__ = ["main"]

Command = Callable[[argparse.Namespace], Awaitable[int]]


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line like every other error (argparse prints the
    usage first); sub-commands' parsers are made of this class too."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="kittiwake", description="Kittiwake: event-sourced experiment tracking.")
    parser.add_argument("--db", default=os.environ.get("KITTIWAKE_DB", "kittiwake.db"),
                        help="database: a file path or postgresql:// URL (default: %(default)s)")
    parser.add_argument("--project", default=os.environ.get("KITTIWAKE_PROJECT", "default"),
                        help="project (default: %(default)s)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="simulate an experiment on an embedded database")
    demo.add_argument("--steps", type=int, default=300, help="steps per run")
    demo.add_argument("--delay", type=float, default=0.004, help="seconds per simulated step")
    demo.set_defaults(handler=_demo, creates=True)

    runs = commands.add_parser("runs", help="list and show runs").add_subparsers(
        dest="runs_command", required=True, metavar="RUNS_COMMAND")
    show = runs.add_parser("show", help="one run: status, config, tags, metric summaries, "
                           "notes, env, files and its last lines of output")
    show.add_argument("run_id")
    show.add_argument("--format", choices=("table", "json"), default="table")
    runs_commands.add_as_of(show)
    show.set_defaults(handler=runs_commands.show)

    events = commands.add_parser("events", help="the log as JSON lines")
    events.add_argument("--from", dest="from_position", type=int, default=0,
                        help="start after this position (default: the beginning)")
    events.set_defaults(handler=_events)

    rebuild = commands.add_parser("rebuild", help="rebuild every projection from the log")
    rebuild.set_defaults(handler=_rebuild)

    check = commands.add_parser(
        "check", help="verify the database: the log, then every projection against a "
                      "rebuild; exit status 1 when anything is damaged")
    check.set_defaults(handler=_check)

    tail = commands.add_parser("tail", help="a run's metrics, live, until the run ends; a "
                               "run that has not started yet is waited for")
    tail.add_argument("run_id")
    tail.add_argument("--timeout", type=float, metavar="SECONDS",
                      help="give up if the run has not started by then (default: wait)")
    tail.set_defaults(handler=_tail)

    serve = commands.add_parser(
        "serve", help="serve the database over HTTP (the remote tracker, live streams)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on; beyond loopback only with --auth "
                            "(default: %(default)s)")
    serve.add_argument("--port", type=int, default=8080, help="port (default: %(default)s)")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes on the one socket (default: %(default)s)")
    serve.add_argument("--auth", action="store_true",
                       help="require a bearer token (kittiwake tokens create) on every request")
    serve.set_defaults(direct=_serve)

    ui = commands.add_parser(
        "ui", help="open a local database in the browser: the dashboard on a free loopback "
                   "port")
    ui.add_argument("database", nargs="?", metavar="DB",
                    help="the database (default: --db)")
    ui.add_argument("--port", type=int, default=0,
                    help="port (default: a free one)")
    ui.add_argument("--no-browser", action="store_true",
                    help="print the address without opening a browser")
    ui.set_defaults(direct=_ui)

    sync = commands.add_parser(
        "sync", help="send what a remote tracker's spool holds to the server (--db URL), and "
                     "upload offline runs")
    sync.add_argument("--spool", metavar="PATH",
                      help="the spool file (default: the server's, under the cache directory)")
    sync.set_defaults(handler=_sync)

    from .tokens import add_commands as add_token_commands

    add_token_commands(commands)
    runs_commands.add_commands(commands, runs)
    jobs_commands.add_commands(commands)
    content_commands.add_commands(commands, runs)
    return parser


_DASHED_VALUES = frozenset({"--order-by", "-o"})
"""Options whose value may start with ``-`` (a descending order: ``--order-by -metrics.x``),
which argparse would otherwise read as an option of its own."""


def attach_values(argv: Sequence[str]) -> list[str]:
    """``argv`` with each value of an option in ``_DASHED_VALUES`` attached to it
    (``--order-by -x`` becomes ``--order-by=-x``), and ``runs tag ID``'s changes marked as
    positional (``-baseline`` removes a tag), so that neither is taken for an option."""
    argv = list(argv)
    for i in range(1, len(argv) - 1):
        if argv[i - 1:i + 1] == ["runs", "tag"] and "--" not in argv[i + 2:i + 3]:
            argv.insert(i + 2, "--")
            break
    out: list[str] = []
    items = iter(argv)
    for arg in items:
        if arg in _DASHED_VALUES:
            value = next(items, None)
            if value is None:
                out.append(arg)
                break
            out.append(f"--order-by={value}")
            continue
        if arg == "--":  # everything after it is positional anyway
            out.append(arg)
            out.extend(items)
            break
        out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        args = _parser().parse_args(attach_values(sys.argv[1:] if argv is None else argv))
    except UsageError as exc:
        _fail(str(exc))
        return 2
    try:
        try:
            direct: Callable[[argparse.Namespace], int] | None = getattr(args, "direct", None)
            if direct is not None:  # runs its own event loops (a server, its workers)
                return direct(args)
            return anyio.run(_run, args)
        except BaseExceptionGroup as group:  # one failure inside a task group: report it
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`kittiwake events | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except UsageError as exc:  # found by a command itself: still the command line's fault
        _fail(str(exc))
        return 2
    except (CliError, EngineError, OSError) as exc:
        _fail(str(exc) if isinstance(exc, EngineError) else str(exc).splitlines()[0])
        return 1
    except Exception as exc:  # the promise is one line, even for a bug
        if os.environ.get("KITTIWAKE_DEBUG"):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc}")
        return 70


def _fail(message: str) -> None:
    print(f"kittiwake: error: {safe_lines(message)}", file=sys.stderr)


async def _run(args: argparse.Namespace) -> int:
    handler: Command = args.handler
    return await handler(args)


def _serve(args: argparse.Namespace) -> int:
    try:
        from engine._server.serve import serve
    except ImportError as exc:
        raise CliError("kittiwake serve needs the server extra: "
                       "pip install 'kittiwake[server]'") from exc
    serve(args.db, host=args.host, port=args.port, auth=args.auth, workers=args.workers)
    return 0


def _ui(args: argparse.Namespace) -> int:
    from .ui import run_ui

    run_ui(args.database or args.db, port=args.port, open_browser=not args.no_browser,
           out=sys.stdout)


async def _sync(args: argparse.Namespace) -> int:
    if not args.db.startswith(("http://", "https://")):
        raise CliError("kittiwake sync sends to a server: pass --db http(s)://…")
    from engine._client.sync import sync

    report = await sync(args.db, spool=args.spool)
    emit(f"sent {report.sent} spooled requests ({report.refused} refused); uploaded "
         f"{report.uploaded} offline events ({report.upload_refused} refused); "
         f"{report.pending} still spooled")
    return 0 if report.pending == 0 else 1


async def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    if args.steps < 20:
        raise CliError("--steps must be at least 20")
    async with open_tracker(args) as tracker:
        await run_demo(tracker, steps=args.steps, delay=args.delay, out=sys.stdout,
                       command=invoked_as(args))
    return 0


async def _events(args: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    async with open_tracker(args) as tracker:
        async for event in tracker.events(args.from_position):
            out.write(event_json(event) + b"\n")
    out.flush()
    return 0


async def _rebuild(args: argparse.Namespace) -> int:
    async with open_tracker(args) as tracker:
        await tracker.rebuild_projections(Progress("rebuilding"))
    emit("projections rebuilt")
    return 0


async def _check(args: argparse.Namespace) -> int:
    counter = Counter("checking the log: position")
    async with open_tracker(args) as tracker:
        findings = await tracker.check(counter)
    counter.clear()
    if not findings:
        emit("the database is healthy: the log is whole and every projection equals a "
             "rebuild")
        return 0
    for finding in findings:
        emit(safe_lines(finding))
    emit(f"{len(findings)} finding{'' if len(findings) == 1 else 's'}")
    return 1


async def _tail(args: argparse.Namespace) -> int:
    from .tail import tail

    async with open_tracker(args) as tracker:
        await tail(tracker, args.run_id, sys.stdout, start_within=args.timeout)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
