"""The same API, blocking: for training scripts that are not async.

``engine.sync.connect(...)`` runs the async engine on an event loop in a background thread
and returns a tracker whose methods block; they take the async API's parameters, and return
the same values. Logging does not cross threads: the training thread checks and buffers its
points itself, exactly as in async code. When the buffer is full, ``log_metrics`` waits for
the writer to catch up (real backpressure) instead of raising; when the run is aborted, it
raises ``RunAbortedError``, and the run's ``with`` block ends quietly, as the async block's
cancel scope does.

``engine.sync.init(...)`` starts a run without a ``with`` block, for notebooks: log to it,
then ``run.finish()``; a run never finished is ended when the interpreter exits.

    with engine.sync.connect("runs.db") as tracker:
        with tracker.start_run(experiment="baseline") as run:
            for step in range(1000):
                run.log_metrics({"loss": 1 / (step + 1)}, step=step)
"""

from engine._sync.init import init as init
from engine._sync.run import SyncEditContext as SyncEditContext
from engine._sync.run import SyncRun as SyncRun
from engine._sync.run import SyncRunContext as SyncRunContext
from engine._sync.subscription import SyncSubscription as SyncSubscription
from engine._sync.tracker import SyncTracker as SyncTracker
from engine._sync.tracker import connect as connect

__all__ = [
    "SyncEditContext",
    "SyncRun",
    "SyncRunContext",
    "SyncSubscription",
    "SyncTracker",
    "connect",
    "init",
]
