"""The worker loop: claim jobs up to ``slots``, run each, end it, and stop cleanly.

It wakes on new jobs through the log's live stream — a subscription to job creations and
hand-backs, which PostgreSQL's LISTEN/NOTIFY and SQLite's cheap watch of the log's head feed,
or, attached to a server, the server's event stream — never by polling the queue. A job's
abort request reaches it through the tracker's subscriptions.

Stopping (SIGTERM or SIGINT to the worker): it claims nothing more, lets running jobs go on
until ``stop_timeout`` seconds have passed (a second signal cuts the wait short), then stops
those still running, all at once (SIGTERM to their group, SIGKILL after ``grace``), and hands
them back to their queue (``requeue=True``, the default) or ends them ``aborted``.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import Process, TaskGroup

from engine._core import events as ev
from engine._core.model import Job
from engine._runtime.jobs import worker_name
from engine._runtime.run import Run
from engine._runtime.tracker import Tracker
from engine.errors import EngineError, StorageError

from .process import describe_exit, job_environment, pump, start, stop_group

__all__ = ["Worker", "stop_on_signals"]

Say = Callable[[str], None]


_DRAIN = 2.0  # seconds a job's output may still take to arrive after its process exited


@dataclass
class _Running:
    job: Job
    process: Process | None = None
    ending: tuple[str, str | None] | None = None  # the status and reason it must end with
    stop: anyio.Event = field(default_factory=anyio.Event)  # set: stop its process group
    done: anyio.Event = field(default_factory=anyio.Event)

    def stop_with(self, status: str, reason: str | None) -> None:
        """Stop the job's process (if it runs) and end the job ``status``."""
        if self.ending is None:
            self.ending = (status, reason)
        self.stop.set()


class Worker:
    """Runs the jobs of ``queues`` from ``tracker``'s database, ``slots`` at a time."""

    def __init__(self, tracker: Tracker, db: str, *, queues: list[str], slots: int = 1,
                 name: str | None = None, grace: float = 10.0, stop_timeout: float = 30.0,
                 requeue: bool = True, say: Say | None = None,
                 token: str | None = None) -> None:
        """``db`` is the database as the jobs must open it (``$KITTIWAKE_DB``); for a server,
        ``token`` (default ``$KITTIWAKE_TOKEN``) is what its jobs get as ``$KITTIWAKE_TOKEN``
        and what the worker follows the server's event stream with."""
        self.tracker = tracker
        self.db = db
        self.token = token or os.environ.get("KITTIWAKE_TOKEN") or None
        self.queues = queues
        self.slots = slots
        self.name = name or worker_name()
        self.grace = grace
        self.stop_timeout = stop_timeout
        self.requeue = requeue
        self.say: Say = say or (lambda _: None)
        self.running: dict[str, _Running] = {}
        self.stopping = anyio.Event()
        self._hurry = anyio.Event()  # a second stop: no more waiting for running jobs
        self._wake = anyio.Event()

    def stop(self) -> None:
        """Stop claiming; running jobs finish within ``stop_timeout`` (see the module). A
        second call stops them at once."""
        if self.stopping.is_set():
            self._hurry.set()
        self.stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Claim and run jobs until ``stop``; then wind the running ones down.

        :raises ClosedError: when the tracker stopped (its database out of reach for longer
            than it retries); the jobs running then are left to the reaper.
        """
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._doorbell)
            while not self.stopping.is_set():
                self._wake = anyio.Event()  # before claiming: a job enqueued meanwhile rings
                await self._claim(tasks)
                await self._wake.wait()
            await self._wind_down()
            tasks.cancel_scope.cancel()

    async def _claim(self, tasks: TaskGroup) -> None:
        while len(self.running) < self.slots and not self.stopping.is_set():
            try:
                job = await self.tracker.claim_job(self.queues, worker=self.name)
            except StorageError as exc:  # the tracker retries its own work; a claim waits
                self.say(f"cannot claim a job now ({exc}); trying again")
                with anyio.move_on_after(_RETRY):
                    await self.stopping.wait()
                self._wake.set()
                return
            if job is None:
                return
            entry = self.running[job.run_id] = _Running(job)
            tasks.start_soon(self._run_job, entry)

    async def _doorbell(self) -> None:
        types = [ev.RUN_CREATED, ev.JOB_REQUEUED]
        if _is_server(self.db):
            from engine._client.events import ring_on_events

            await ring_on_events(self.db, self.tracker.project, token=self.token, types=types,
                                 ring=lambda: self._wake.set())
            return
        async for _ in self.tracker.subscribe(types=types, from_position="live"):
            self._wake.set()

    async def _wind_down(self) -> None:
        with anyio.move_on_after(self.stop_timeout):
            async with anyio.create_task_group() as waiting:
                waiting.start_soon(_set_when, self._hurry, waiting.cancel_scope)
                while self.running:
                    await next(iter(self.running.values())).done.wait()
                waiting.cancel_scope.cancel()
        for entry in list(self.running.values()):
            entry.stop_with("queued" if self.requeue else "aborted",
                            f"worker {self.name} stopped")
        while self.running:
            await next(iter(self.running.values())).done.wait()

    async def _run_job(self, entry: _Running) -> None:
        job = entry.job
        try:
            status, reason = await self._execute(entry)
            if entry.ending is not None:
                status, reason = entry.ending
            await _retrying(lambda: self.tracker.end_job(job.run_id, status, reason))
            self.say(f"{job.run_id}: {status}" + (f" ({reason})" if reason else ""))
        finally:
            self.running.pop(job.run_id, None)
            entry.done.set()
            self._wake.set()

    async def _execute(self, entry: _Running) -> tuple[str, str | None]:
        job = entry.job
        attach = {"KITTIWAKE_DB": self.db, "KITTIWAKE_PROJECT": job.project,
                  "KITTIWAKE_RUN_ID": job.run_id}
        if _is_server(self.db) and self.token:
            attach["KITTIWAKE_TOKEN"] = self.token
        env = job_environment(os.environ, job.env, attach)
        if entry.ending is not None:  # stopped before it started
            return entry.ending
        try:
            process = await start(list(job.command), env, job.cwd)
        except OSError as exc:
            return "failed", f"cannot start {job.command[0]!r}: {exc}"
        entry.process = process
        self.say(f"{job.run_id}: started {' '.join(job.command)} (pid {process.pid})")
        try:
            async with anyio.create_task_group() as inner, \
                    self.tracker.edit_run(job.run_id) as handle:
                inner.start_soon(self._watch_abort, entry)
                inner.start_soon(self._stopper, entry, process)
                write = _output(handle)
                async with anyio.create_task_group() as pumps:
                    pumps.start_soon(pump, process.stdout, "logs/stdout", write)
                    pumps.start_soon(pump, process.stderr, "logs/stderr", write)
                    await process.wait()
                    # What it wrote last may still be in the pipes; a child that outlived it
                    # and holds them open must not keep the job from ending.
                    pumps.cancel_scope.deadline = anyio.current_time() + _DRAIN
                inner.cancel_scope.cancel()
        except* EngineError as failed:
            # The output could not be kept (the store refused a batch of it): the job's
            # ending must still be recorded.
            self.say(f"{job.run_id}: output not kept: {failed.exceptions[0]}")
        code = await process.wait()
        await process.aclose()
        return ("succeeded" if code == 0 else "failed"), (None if code == 0
                                                          else describe_exit(code))

    async def _stopper(self, entry: _Running, process: Process) -> None:
        await entry.stop.wait()
        self.say(f"{entry.job.run_id}: stopping: SIGTERM, SIGKILL after {self.grace:g} s")
        await stop_group(process, self.grace)

    async def _watch_abort(self, entry: _Running) -> None:
        job = entry.job
        async for event in self.tracker.subscribe(runs=[job.run_id],
                                                  types=[ev.ABORT_REQUESTED],
                                                  from_position=job.claimed_position):
            self.say(f"{job.run_id}: abort requested")
            entry.stop_with("aborted", event.data.get("reason"))
            return


_RETRY = 1.0  # seconds between attempts when the database refuses to answer


def _is_server(db: str) -> bool:
    return db.startswith(("http://", "https://"))


async def _retrying(call: Callable[[], Awaitable[object]]) -> None:
    """``call()``, again after a pause while the database fails (``StorageError``); a
    tracker that gave up raises ``ClosedError`` instead, which ends the retries."""
    while True:
        try:
            await call()
            return
        except StorageError:
            await anyio.sleep(_RETRY)


async def _set_when(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


def _output(handle: Run) -> Callable[[str, int, str], None]:
    """Where output lines go: the run's text series."""

    def write(key: str, number: int, line: str) -> None:
        handle.log_text({key: line}, step=number)

    return write


async def stop_on_signals(worker: Worker) -> None:
    """Stop the worker (see the module) on SIGTERM or SIGINT."""
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            worker.stop()
