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

from . import errors as errors
from . import sync as sync
from ._export import RunsTable as RunsTable
from ._model import Event as Event
from ._model import Experiment as Experiment
from ._model import ForkPoint as ForkPoint
from ._model import Lineage as Lineage
from ._model import MetricSummary as MetricSummary
from ._model import RunState as RunState
from ._model import Series as Series
from ._model import Status as Status
from ._query_ast import MetricStats as MetricStats
from ._query_ast import RunGroup as RunGroup
from ._run import Run as Run
from ._run import RunContext as RunContext
from ._subscribe import Subscription as Subscription
from ._tracker import Tracker as Tracker
from ._tracker import connect as connect

__version__ = "0.1.0"

__all__ = [
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
