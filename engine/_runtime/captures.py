"""What a run records about itself while its block runs: its output, its environment, its
source and the machine's load.

``Captures`` starts with the run's block and ends before its final status:

- **Output** (``capture_output``): fds 1 and 2 captured (``output.OutputCapture``); each
  line becomes an entry of the text series ``logs/stdout`` or ``logs/stderr`` at its line
  number, gathered into one event per writer cycle (``RunBuffer.lines``). A line is never
  refused for room: the capture thread must not wait for the event loop, which may itself
  be writing to the captured pipe. Ending the block stops the capture first, so the lines
  written just before a crash are recorded before its ``failed`` status. The descriptors
  belong to the whole process: a run that starts while another run's capture is on (a
  nested run, a notebook cell run again before its run finished) records none of the
  output, and a warning names both runs; it starts all the same.
- **Environment** (``capture_env``): ``environment.environment`` as an ``EnvCaptured``
  event, buffered like the rest (it commits with the run). The tracker asks for it (git
  included, on a worker thread) when it opens, so a run that starts later records it at
  once; one that starts sooner records it from a background task, and ``start_run`` never
  waits for git.
- **Source** (``capture_source``): the script, ``git diff HEAD`` and the globs' files,
  read and hashed once per process (``snapshot``), recorded as file attributes in a
  FilesUploaded event buffered with what the run logs, so it commits with the run. When the
  tracker knows its blob store holds every one of those bytes (``snapshot.Named``) that
  happens at the start; otherwise a background task, which the block's end waits for,
  lists and hashes the files (first run of the process) and puts the missing bytes first.
- **System metrics** (``system_metrics``): ``system.SystemSampler`` every
  ``system_metrics_interval`` seconds, logged as metrics under ``system/`` without moving
  the run's implicit step.

A capture that fails (no git, a source file that vanished) warns and leaves the run alone.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.to_thread
from anyio.abc import TaskGroup

from engine._core import content as ct
from engine._core import events as ev
from engine._core.events import NewEvent
from engine._storage.blobs.contract import BlobStore
from engine.errors import EngineError, ValidationError

from . import environment as envs
from . import snapshot as snap
from .output import SUPPORTED, CaptureBusyError, OutputCapture, Stream
from .system import DEFAULT_INTERVAL, MIN_INTERVAL, SystemSampler

__all__ = ["CAPTURE_ENV_VAR", "DEFAULT_INTERVAL", "CaptureOptions", "Captures",
           "captures_default", "check_capture_options", "env_event", "lines_from",
           "prefetch_environment"]

CAPTURE_ENV_VAR = "KITTIWAKE_CAPTURE"
"""Set to ``off`` to turn every capture's *default* off (CI, tests); arguments still win."""

STDOUT, STDERR = "logs/stdout", "logs/stderr"
_KEYS: dict[Stream, str] = {"stdout": STDOUT, "stderr": STDERR}


def captures_default() -> bool:
    """Whether captures are on unless a call says otherwise."""
    return os.environ.get(CAPTURE_ENV_VAR, "").strip().lower() not in ("off", "0", "false",
                                                                       "no")


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    """What a run captures (``None``: the default of the API it was started from)."""

    output: bool
    env: bool
    source: bool | tuple[str, ...]
    system: bool
    interval: float


def check_capture_options(*, capture_output: bool | None, capture_env: bool | None,
                          capture_source: bool | Sequence[str] | None,
                          system_metrics: bool | None, system_metrics_interval: float,
                          blocking: bool) -> CaptureOptions:
    """The options, checked, with their defaults filled in (output and system metrics are
    on by default in blocking code, off in async code; env and source on in both).

    :raises ValidationError: naming the bad option.
    """
    on = captures_default()
    for name, value in (("capture_output", capture_output), ("capture_env", capture_env),
                        ("system_metrics", system_metrics)):
        if value is not None and type(value) is not bool:
            raise ValidationError(f"{name} must be True or False, not {value!r}", key=name)
    source: bool | tuple[str, ...]
    if capture_source is None:
        source = on
    elif type(capture_source) is bool:
        source = capture_source
    elif isinstance(capture_source, Sequence) and not isinstance(capture_source, str | bytes):
        source = tuple(capture_source)
        if not all(type(p) is str for p in source):
            raise ValidationError("capture_source must be True, False or a list of globs such "
                                  f"as ['src/**/*.py'], not {capture_source!r}",
                                  key="capture_source")
        envs.check_patterns(source)  # at the call: later, the run would only warn
    else:
        raise ValidationError("capture_source must be True, False or a list of globs such as "
                              f"['src/**/*.py'], not {capture_source!r}", key="capture_source")
    if (isinstance(system_metrics_interval, bool)
            or not isinstance(system_metrics_interval, int | float)
            or not math.isfinite(system_metrics_interval)
            or system_metrics_interval < MIN_INTERVAL):
        raise ValidationError(
            f"system_metrics_interval must be a number of seconds >= {MIN_INTERVAL:g}, not "
            f"{system_metrics_interval!r}", key="system_metrics_interval")
    return CaptureOptions(
        output=(on and blocking) if capture_output is None else capture_output,
        env=on if capture_env is None else capture_env,
        source=source,
        system=(on and blocking) if system_metrics is None else system_metrics,
        interval=float(system_metrics_interval))


async def prefetch_environment() -> None:
    """Learn the process's environment (git included) off the event loop, so runs started
    later record it at once; quietly, since a run that needs it asks again."""
    try:
        await envs.environment_async()
    except Exception:
        return


class Captures:
    """The captures of one live run (see the module docstring)."""

    def __init__(self, run: Any, options: CaptureOptions, tasks: TaskGroup, *,
                 clock: Any, first_lines: dict[str, int], system_from: float,
                 blobs: BlobStore, named: snap.Named) -> None:
        self.run = run
        self.options = options
        self.tasks = tasks
        self.clock = clock
        self.blobs = blobs
        self.named = named
        self._first = first_lines
        self._system_from = system_from
        self._output: OutputCapture | None = None
        # The background task's, made only when there is one: a run whose captures are all
        # recorded at its start makes none.
        self._scope: anyio.CancelScope | None = None
        self._sampler_scope: anyio.CancelScope | None = None
        self._done: anyio.Event | None = None
        self._env_done = False
        self._source_done = False

    def start(self) -> None:
        """Start capturing: output, and what is known already, at once; the rest in a
        background task."""
        options = self.options
        self._env_done = not options.env
        if options.env and envs.known():
            self.run.record_env(envs.environment())
            self._env_done = True
        self._source_done = not options.source or self._record_known_source(options.source)
        if options.output:
            self._start_output()
        if not (self._env_done and self._source_done and not options.system):
            self._scope = anyio.CancelScope()
            self._sampler_scope = anyio.CancelScope()
            self._done = anyio.Event()
            self.tasks.start_soon(self._background, self._scope, self._sampler_scope,
                                  self._done)

    def _start_output(self) -> None:
        if not SUPPORTED:
            warnings.warn("capture_output is not supported on this platform; the run's "
                          "output is not recorded", stacklevel=4)
            return
        output = OutputCapture(self._line, owner=f"run {self.run.run_id!r}",
                               first_lines={s: self._first.get(k, 0) for s, k in _KEYS.items()})
        try:
            output.start()
        except CaptureBusyError as busy:
            holder = busy.owner or "another capture"
            warnings.warn(
                f"run {self.run.run_id!r} does not record its output: this process's stdout "
                f"and stderr are being captured for {holder} already, and one run at a time "
                f"can capture them (finish {holder} first, or pass capture_output=False)",
                stacklevel=1)
            return
        except OSError as exc:
            self._failed(exc)
            return
        self._output = output

    def _line(self, stream: Stream, number: int, text: str) -> None:
        self.run.record_line(_KEYS[stream], number, text)

    def _record_known_source(self, capture: bool | tuple[str, ...]) -> bool:
        """Record the source now if the process read it before and the blob store holds
        all of it; False if that is left to the background task."""
        taken = snap.cached(capture)
        if taken is None:
            return False
        refs = snap.known_refs(taken.files, self.named, self.clock())
        if refs is None:
            return False
        self._warn(taken.warnings)
        try:
            if refs:
                self.run.record_uploads(refs)
        except EngineError as exc:
            self._failed(exc)
        return True

    async def _background(self, scope: anyio.CancelScope, sampler_scope: anyio.CancelScope,
                          done: anyio.Event) -> None:
        try:
            with scope:
                options = self.options
                if not self._env_done:
                    self.run.record_env(await envs.environment_async())
                    self._env_done = True
                if not self._source_done:
                    await self._upload_source(options.source)
                if options.system:
                    with sampler_scope:
                        await self._sample()
        except (EngineError, OSError) as exc:
            self._failed(exc)
        finally:
            done.set()

    async def _upload_source(self, capture: bool | tuple[str, ...]) -> None:
        taken = await snap.snapshot_async(capture)
        self._warn(taken.warnings)
        if taken.files:
            refs = await snap.stored_refs(self.blobs, taken.files, self.named, self.clock())
            self.run.record_uploads(refs)

    def _warn(self, messages: Sequence[str]) -> None:
        for message in messages:
            warnings.warn(f"run {self.run.run_id!r}: {message}", stacklevel=1)

    def _failed(self, exc: BaseException) -> None:
        warnings.warn(f"run {self.run.run_id!r}: a capture failed and was left out: {exc}",
                      stacklevel=1)

    async def _sample(self) -> None:
        sampler = await SystemSampler.create(self._system_from, clock=self.clock)
        try:
            await sampler.run(lambda sample: self.run.record_system(sample.values,
                                                                    sample.step),
                              self.options.interval)
        finally:
            sampler.close()

    async def close(self) -> None:
        """Stop every capture: the output first (every line written so far recorded), the
        sampler at once; wait for the environment and source to be recorded."""
        output, self._output = self._output, None
        if output is not None:
            await anyio.to_thread.run_sync(output.stop)
        done, scope, sampler_scope = self._done, self._scope, self._sampler_scope
        if done is None or scope is None or sampler_scope is None or done.is_set():
            return  # (cancelling a scope costs: anyio describes the task that cancels it)
        sampler_scope.cancel()
        with anyio.move_on_after(60):
            await done.wait()
        scope.cancel()

    def stop_now(self) -> None:
        """Restore the descriptors and stop the background work without waiting (the
        tracker is going away)."""
        output, self._output = self._output, None
        if output is not None:
            output.stop()
        if self._scope is not None:
            self._scope.cancel()


def lines_from(kinds: dict[str, list[Any]]) -> dict[str, int]:
    """The first line numbers of a run that goes on from output it recorded before."""
    out: dict[str, int] = {}
    for key in (STDOUT, STDERR):
        had = kinds.get(key)
        if had is not None and had[0] == ct.TEXT and had[1] is not None:
            out[key] = int(had[1]) + 1
    return out


def env_event(env: dict[str, Any]) -> NewEvent:
    """The event recording ``env``."""
    return NewEvent(ev.ENV_CAPTURED, {"env": env})

