"""What becomes of async trackers still open when the interpreter exits, on an event loop
that ``asyncio.run`` did not shut down.

``asyncio.run`` cancels the tasks still pending when its coroutine returns, and runs their
cancellation to the end: a tracker nobody closed then commits what its runs buffered and
closes (``Tracker._keep``), and an ``engine.init`` run ends as the loop did. A loop run by
hand (``loop.run_until_complete(main())``) gets none of that: the tracker's tasks stay
pending, and the interpreter would wait forever for the database's threads.

So each open tracker is noted here with its loop, and a hook runs when the main thread has
finished, before the interpreter joins the threads that are not daemon threads
(``threading._register_atexit``, as ``concurrent.futures`` stops its workers). For each
loop that still holds an open tracker:

- **running** (on a thread of its own, as ``engine.sync``'s loop): left alone, for whoever
  runs it closes its trackers;
- **stopped, not closed**: its pending tasks are cancelled and run to their end on it, as
  ``asyncio.run`` would have done, so everything accepted is written and runs end exactly as
  there;
- **closed**: nothing can run on it any more, so nothing more is written. A warning on
  stderr says how much each tracker had accepted and not written, and why; its runs stay
  ``running`` until a reaper marks them crashed. The database's threads are daemon threads
  (``engine._storage.sqlite.session``), so they do not hold the exit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401 (its exit hook first: ours then runs before it)
import contextlib
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Left", "forget", "keep"]


@dataclass(eq=False)
class Left:
    """An open tracker, as the exit hook sees it.

    :ivar loop: the event loop it was opened on.
    :ivar name: how the warning names it.
    :ivar is_open: whether it is still open.
    :ivar unwritten: what it accepted and did not write: values, logging calls, run ids.
    """

    loop: asyncio.AbstractEventLoop
    name: str
    is_open: Callable[[], bool]
    unwritten: Callable[[], tuple[int, int, list[str]]] = field(repr=False)


_lock = threading.Lock()
_open: dict[int, Left] = {}


def keep(left: Left) -> None:
    """Look after ``left`` at exit unless it is forgotten first."""
    with _lock:
        _open[id(left)] = left


def forget(left: Left) -> None:
    """``left`` was closed."""
    with _lock:
        _open.pop(id(left), None)


def _at_exit() -> None:
    with _lock:
        held = list(_open.values())
    loops: dict[int, asyncio.AbstractEventLoop] = {id(h.loop): h.loop for h in held}
    for loop in loops.values():
        if loop.is_running():
            continue
        if not loop.is_closed():
            try:
                _shut_down(loop)
            except Exception as exc:  # exit must go on: say so
                print(f"kittiwake: shutting down the event loop {loop!r} at exit failed: {exc}",
                      file=sys.stderr)
    for left in held:
        if left.is_open() and not left.loop.is_running():
            _warn(left)
    with _lock:
        _open.clear()


def _shut_down(loop: asyncio.AbstractEventLoop) -> None:
    """What ``asyncio.run`` does to a loop after its coroutine returned: cancel the pending
    tasks and run them to their end, then close the asynchronous generators."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler({
                "message": "unhandled exception in a task cancelled at interpreter exit",
                "exception": task.exception(), "task": task})
    loop.run_until_complete(loop.shutdown_asyncgens())


def _warn(left: Left) -> None:
    with contextlib.suppress(Exception):
        values, calls, runs = left.unwritten()
        if not (values or calls or runs):
            return  # nothing lost, no run left running
        named = ", ".join(repr(r) for r in runs) or "no run"
        print(f"kittiwake: {left.name} was still open when its event loop was closed, so "
              f"nothing more could be written through it: {values} buffered values "
              f"(metric points, config keys, tags, output lines) from {calls} logging calls "
              f"of {named} were not written, and its runs stay running until a reaper marks "
              "them crashed. Close the tracker (leave its `async with` block, or `await "
              "run.finish()`) before closing its loop, or run the loop with asyncio.run(), "
              "which closes it.", file=sys.stderr)


threading._register_atexit(_at_exit)  # type: ignore[attr-defined]
