"""The worker loop: claim jobs up to ``slots``, run each, end it, and stop cleanly.

It wakes on new jobs through the log's live stream — a subscription to job creations and
hand-backs, which PostgreSQL's LISTEN/NOTIFY and SQLite's cheap watch of the log's head feed —
never by polling the queue. A job's abort request reaches it the same way.

Stopping (SIGTERM or SIGINT to the worker): it claims nothing more, lets running jobs go on
until ``stop_timeout`` seconds have passed, then stops those still running (SIGTERM to their
group, SIGKILL after ``grace``) and hands them back to their queue while attempts remain
(``requeue=True``, the default), or ends them ``aborted``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import Process, TaskGroup

from engine._core import events as ev
from engine._core.model import Job
from engine._runtime.jobs import worker_name
from engine._runtime.run import Run
from engine._runtime.tracker import Tracker

from .process import describe_exit, job_environment, pump, start, stop_group

__all__ = ["Worker", "stop_on_signals"]

Say = Callable[[str], None]


@dataclass
class _Running:
    job: Job
    process: Process | None = None
    ending: tuple[str, str | None] | None = None  # the status and reason it must end with
    done: anyio.Event = field(default_factory=anyio.Event)


class Worker:
    """Runs the jobs of ``queues`` from ``tracker``'s database, ``slots`` at a time."""

    def __init__(self, tracker: Tracker, db: str, *, queues: list[str], slots: int = 1,
                 name: str | None = None, grace: float = 10.0, stop_timeout: float = 30.0,
                 requeue: bool = True, say: Say | None = None) -> None:
        self.tracker = tracker
        self.db = db
        self.queues = queues
        self.slots = slots
        self.name = name or worker_name()
        self.grace = grace
        self.stop_timeout = stop_timeout
        self.requeue = requeue
        self.say: Say = say or (lambda _: None)
        self.running: dict[str, _Running] = {}
        self.stopping = anyio.Event()
        self._wake = anyio.Event()
        self.started: list[tuple[str, float]] = []  # (run id, monotonic start), for benches

    def stop(self) -> None:
        """Stop claiming; running jobs finish within ``stop_timeout`` (see the module)."""
        self.stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Claim and run jobs until ``stop``; then wind the running ones down."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._doorbell)
            while not self.stopping.is_set():
                self._wake = anyio.Event()  # before claiming: a job enqueued meanwhile rings
                while len(self.running) < self.slots and not self.stopping.is_set():
                    job = await self.tracker.claim_job(self.queues, worker=self.name)
                    if job is None:
                        break
                    self.running[job.run_id] = _Running(job)
                    tasks.start_soon(self._run_job, self.running[job.run_id], tasks)
                await self._wake.wait()
            await self._wind_down()
            tasks.cancel_scope.cancel()

    async def _doorbell(self) -> None:
        types = [ev.RUN_CREATED, ev.JOB_REQUEUED]
        async for _ in self.tracker.subscribe(types=types, from_position="live"):
            self._wake.set()

    async def _wind_down(self) -> None:
        with anyio.move_on_after(self.stop_timeout):
            while self.running:
                await next(iter(self.running.values())).done.wait()
        for entry in list(self.running.values()):
            entry.ending = ("queued" if self.requeue else "aborted",
                            f"worker {self.name} stopped")
            if entry.process is not None:
                await stop_group(entry.process, self.grace)
        while self.running:
            await next(iter(self.running.values())).done.wait()

    async def _run_job(self, entry: _Running, tasks: TaskGroup) -> None:
        job = entry.job
        try:
            status, reason = await self._execute(entry, tasks)
            if entry.ending is not None:
                status, reason = entry.ending
            await self.tracker.end_job(job.run_id, status, reason)
            self.say(f"{job.run_id}: {status}" + (f" ({reason})" if reason else ""))
        finally:
            self.running.pop(job.run_id, None)
            entry.done.set()
            self._wake.set()

    async def _execute(self, entry: _Running, tasks: TaskGroup) -> tuple[str, str | None]:
        job = entry.job
        attach = {"KITTIWAKE_DB": self.db, "KITTIWAKE_PROJECT": job.project,
                  "KITTIWAKE_RUN_ID": job.run_id}
        env = job_environment(os.environ, job.env, attach)
        try:
            process = await start(list(job.command), env, job.cwd)
        except OSError as exc:
            return "failed", f"cannot start {job.command[0]!r}: {exc}"
        entry.process = process
        self.started.append((job.run_id, anyio.current_time()))
        self.say(f"{job.run_id}: started {' '.join(job.command)} (pid {process.pid})")
        async with anyio.create_task_group() as inner, \
                self.tracker.edit_run(job.run_id) as handle:
            inner.start_soon(self._watch_abort, entry)
            write = _output(handle)
            inner.start_soon(pump, process.stdout, "logs/stdout", write)
            inner.start_soon(pump, process.stderr, "logs/stderr", write)
            code = await process.wait()
            inner.cancel_scope.cancel()
        await process.aclose()
        return ("succeeded" if code == 0 else "failed"), (None if code == 0
                                                          else describe_exit(code))

    async def _watch_abort(self, entry: _Running) -> None:
        job = entry.job
        async for event in self.tracker.subscribe(runs=[job.run_id],
                                                  types=[ev.ABORT_REQUESTED],
                                                  from_position=job.claimed_position):
            entry.ending = ("aborted", event.data.get("reason"))
            assert entry.process is not None
            self.say(f"{job.run_id}: abort requested; SIGTERM, SIGKILL after {self.grace:g} s")
            await stop_group(entry.process, self.grace)
            return


def _output(handle: Run) -> Callable[[str, int, str], None]:
    """Where output lines go: the run's text series when this release has them, else the
    worker's own output."""
    log_text = getattr(handle, "log_text", None)

    def write(key: str, number: int, line: str) -> None:
        if log_text is not None:
            log_text({key: line}, step=number)
        else:
            print(f"[{handle.run_id} {key}] {line}", flush=True)

    return write


async def stop_on_signals(worker: Worker) -> None:
    """Stop the worker (see the module) on SIGTERM or SIGINT."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            worker.stop()
