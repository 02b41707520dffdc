"""``kittiwake worker``, ``enqueue`` and ``queue``: the job queue from a shell (a job's output:
``kittiwake logs``, with what a run records)."""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

import anyio
import orjson

from engine._jobs.worker import Worker, stop_on_signals

from .display import emit, table, terminal_width
from .errors import CliError, UsageError
from .escape import safe_lines
from .tracker import open_tracker

__all__ = ["add_commands"]


def add_commands(commands: Any) -> None:
    """Add the job queue's commands to the ``kittiwake`` parser's sub-commands."""
    worker = commands.add_parser("worker", help="claim queued jobs and run them")
    worker.add_argument("--queue", action="append", dest="queues", metavar="QUEUE",
                        help="a queue to take jobs from (repeat for several; default: default)")
    worker.add_argument("--slots", type=int, default=1, help="jobs run at once (default: 1)")
    worker.add_argument("--name", help="the worker's name (default: host:pid)")
    worker.add_argument("--grace", type=float, default=10.0, metavar="SECONDS",
                        help="after SIGTERM to a job, seconds before SIGKILL (default: 10)")
    worker.add_argument("--stop-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="when the worker is told to stop, seconds its running jobs may "
                             "still take (default: 30)")
    worker.add_argument("--heartbeat-interval", type=float, default=10.0, metavar="SECONDS",
                        help="seconds between the heartbeats of its jobs (default: 10)")
    worker.add_argument("--crash-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="silence after which its jobs count as lost, and go back to "
                             "their queue or end crashed (default: 120)")
    worker.add_argument("--no-requeue", dest="requeue", action="store_false",
                        help="on stop, end unfinished jobs aborted instead of handing them "
                             "back to their queue")
    worker.set_defaults(handler=_worker, creates=True)

    enqueue = commands.add_parser("enqueue", help="queue a command as a job; prints its run id")
    enqueue.add_argument("--queue", default="default")
    enqueue.add_argument("--experiment")
    enqueue.add_argument("--name")
    enqueue.add_argument("--run-id")
    enqueue.add_argument("--tag", action="append", dest="tags", default=[])
    enqueue.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                         help="a config value (JSON numbers, true/false and null are typed; "
                              "anything else is text)")
    enqueue.add_argument("--max-attempts", type=int, default=1)
    enqueue.add_argument("--cwd", help="the directory the job runs in (default: the worker's)")
    enqueue.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARG …")
    enqueue.set_defaults(handler=_enqueue, creates=True)

    queue = commands.add_parser("queue", help="queued and running jobs, per queue")
    queue.add_argument("--all", action="store_true", help="ended jobs too")
    queue.set_defaults(handler=_queue)


def _database(url: str) -> str:
    """The database as a job's process must name it (from its own directory)."""
    if url == ":memory:":
        raise CliError("a worker needs a database its jobs can open too, not :memory:")
    return url if "://" in url else os.path.abspath(url)


async def _worker(args: argparse.Namespace) -> int:
    if args.slots < 1:
        raise UsageError("--slots must be at least 1")
    queues = args.queues or ["default"]
    async with open_tracker(args, heartbeat_interval=args.heartbeat_interval,
                            crash_timeout=args.crash_timeout) as tracker:
        worker = Worker(tracker, _database(args.db), queues=queues, slots=args.slots,
                        name=args.name, grace=args.grace, stop_timeout=args.stop_timeout,
                        requeue=args.requeue, say=lambda line: emit(safe_lines(line)))
        emit(f"worker {worker.name}: queues {', '.join(queues)}, {args.slots} slot"
             f"{'' if args.slots == 1 else 's'}")
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(stop_on_signals, worker)
            await worker.run()
            tasks.cancel_scope.cancel()
    emit(f"worker {worker.name}: stopped")
    return 0


def _config(items: list[str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--config takes KEY=VALUE, not {item!r}")
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = text
        config[key] = value if isinstance(value, (int, float, bool, type(None))) else text
    return config


async def _enqueue(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise UsageError("enqueue needs a command after --, such as `kittiwake enqueue -- "
                         "python train.py`")
    async with open_tracker(args) as tracker:
        run_id = await tracker.enqueue(
            command, queue=args.queue, run_id=args.run_id, name=args.name,
            experiment=args.experiment, config=_config(args.config), tags=args.tags,
            cwd=args.cwd, max_attempts=args.max_attempts)
    emit(run_id)
    return 0


async def _queue(args: argparse.Namespace) -> int:
    async with open_tracker(args) as tracker:
        jobs = await tracker.list_jobs(statuses=None if args.all else ("queued", "running"))
    if not jobs:
        emit("no jobs" if args.all else "no queued or running jobs")
        return 0
    jobs.sort(key=lambda j: (j.queue, j.status != "running", j.created_at))
    rows = [(j.queue, j.run_id, j.status, f"{j.attempt}/{j.max_attempts}", j.worker,
             shlex.join(j.command)) for j in jobs]
    emit(table(("queue", "run", "status", "attempt", "worker", "command"), rows, keep=(1,),
               width=terminal_width()))
    return 0
