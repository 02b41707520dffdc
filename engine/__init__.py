"""Kittiwake: an async, event-sourced experiment-tracking engine.

Where things live:

- ``errors`` (public): the exception tree.          ``sync`` (public): the blocking facade.
- ``_tracker``: ``connect`` and ``Tracker``, the API of SPEC §2 (its reads: ``_tracker_reads``);
  ``_settings``: the tracker's settings, checked.
- ``_run``: the run handle and its ``async with`` context; ``_writer``: group commit;
  ``_buffer``: what a run buffers for the writer, and the metric events it becomes.
- ``_model``: values users receive; ``_events``: event types, ``Record``, upcasters.
- ``_codec``: exact payload encoding; ``_validate``: what logging accepts.
- ``_store``: the storage contract; ``_sqlite*``: the embedded backend.
- ``_starting``: creating and resuming runs; ``_liveness``: heartbeats, reaper, aborts, head.
- ``_subscribe``: live subscriptions (history, then live, exactly once).
- ``_projector``: projections applied inline, on the rows and backend contract of
  ``_projection_io``; ``_fold``: the same as a pure fold (the oracle).
- ``_series``: chunked series layout and downsampling; ``_rows``: row conversions.
- ``_query*``: the runs-table query language (parser, tree, SQL); ``_export``: flat tables.
- ``_cli``: the ``kittiwake`` command; ``_demo``: the simulated experiment.
"""

from engine._core.model import Event as Event
from engine._core.model import Experiment as Experiment
from engine._core.model import ForkPoint as ForkPoint
from engine._core.model import Lineage as Lineage
from engine._core.model import MetricSummary as MetricSummary
from engine._core.model import RunState as RunState
from engine._core.model import Series as Series
from engine._core.model import Status as Status
from engine._query.export import RunsTable as RunsTable
from engine._query.tree import MetricStats as MetricStats
from engine._query.tree import RunGroup as RunGroup
from engine._runtime.run import EditContext as EditContext
from engine._runtime.run import Run as Run
from engine._runtime.run import RunContext as RunContext
from engine._runtime.subscriptions import Subscription as Subscription
from engine._runtime.tracker import Tracker as Tracker
from engine._runtime.tracker import connect as connect

from . import errors as errors
from . import sync as sync

__version__ = "0.1.0"

__all__ = [
    "EditContext",
    "Event",
    "Experiment",
    "ForkPoint",
    "Lineage",
    "MetricStats",
    "MetricSummary",
    "Run",
    "RunContext",
    "RunGroup",
    "RunState",
    "RunsTable",
    "Series",
    "Status",
    "Subscription",
    "Tracker",
    "connect",
    "errors",
    "sync",
]
