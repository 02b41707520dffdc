"""Kittiwake: an async, event-sourced experiment-tracking engine.

The public surface is this module (``connect``, ``Tracker``, ``Run`` and the values users
receive), ``engine.sync`` (the same API, blocking) and ``engine.errors`` (the exception tree).
Everything else is private, one subpackage per layer, each importing only the layers below it
(import-linter holds that in ``make lint``); docs/architecture.md draws the whole:

- ``_core``: the pure core, no I/O — values, events and their upcasters, the payload codec,
  ids, what logging accepts, the series layout and block summaries, the pure fold (the oracle).
- ``_projections``: the projector that folds each append into the tables reads use, inside
  the append's transaction; the rows it works on and their stored form.
- ``_query``: the runs-table query language — lexer, parser, tree, checks, SQL for each
  dialect, plans, running them through a backend's fetch, flat exports.
- ``_storage``: the storage contract, the registry that loads a backend by URL, group commit,
  and one subpackage per backend (``sqlite``, ``postgres``).
- ``_runtime``: the tracker and its reads, opening runs, the run handle, its buffer and the
  writer, the supervisor of the background loops, liveness, subscriptions, the C hot path.
- ``sync``: the blocking facade over ``_runtime``; ``_sync`` implements it — the event loop
  in a thread of its own, and the blocking twins of the tracker, run handles and
  subscriptions.
- ``_client``: the remote store (``connect("http://…")``), the spool, ``kittiwake sync``;
  opened by URL scheme, below ``_runtime``.
- ``_server``: ``kittiwake serve`` — the HTTP API, live streams, tokens, and what the
  dashboard needs (its files, sign-in, projects, abort, tags).
- ``_jobs``: the worker that runs queued jobs (the queue itself is the tracker's).
- ``_dashboard``: the web dashboard's static files (pages, ES modules, the vendored uPlot).
- ``_cli``: the ``kittiwake`` command (``kittiwake ui`` opens the dashboard).
"""

from engine._core.confusion import ConfusionMatrix as ConfusionMatrix
from engine._core.entries import Entry as Entry
from engine._core.files import File as File
from engine._core.files import FileRef as FileRef
from engine._core.histograms import Histogram as Histogram
from engine._core.images import Image as Image
from engine._core.model import Event as Event
from engine._core.model import Experiment as Experiment
from engine._core.model import ForkPoint as ForkPoint
from engine._core.model import Job as Job
from engine._core.model import Lineage as Lineage
from engine._core.model import MetricSummary as MetricSummary
from engine._core.model import RunState as RunState
from engine._core.model import Series as Series
from engine._core.model import Status as Status
from engine._core.text import TextSeries as TextSeries
from engine._query.export import RunsTable as RunsTable
from engine._query.tree import MetricStats as MetricStats
from engine._query.tree import RunGroup as RunGroup
from engine._runtime.connect import connect as connect
from engine._runtime.context import EditContext as EditContext
from engine._runtime.context import RunContext as RunContext
from engine._runtime.init import init as init
from engine._runtime.run import Run as Run
from engine._runtime.subscriptions import Subscription as Subscription
from engine._runtime.tracker import Tracker as Tracker

from . import errors as errors
from . import sync as sync

__version__ = "0.1.0"

__all__ = [
    "ConfusionMatrix",
    "EditContext",
    "Entry",
    "Event",
    "Experiment",
    "File",
    "FileRef",
    "ForkPoint",
    "Histogram",
    "Image",
    "Job",
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
    "TextSeries",
    "Tracker",
    "connect",
    "errors",
    "init",
    "sync",
]
