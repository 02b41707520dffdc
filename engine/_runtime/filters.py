"""What a subscription's filters select, read the same way wherever they come from.

``Tracker.subscribe`` and the server's event stream take the same ``runs``, ``types`` and
``metrics`` arguments; reading them here keeps a stream over HTTP selecting exactly what a
subscription in the process would.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine._core import events as ev
from engine._storage.contract import EventFilter
from engine.errors import ValidationError

__all__ = ["event_filter"]


def _names(values: object, what: str) -> frozenset[str] | None:
    if values is None:
        return None
    listed: list[object]
    if isinstance(values, str):
        listed = [values]
    elif isinstance(values, Iterable) and not isinstance(values, Mapping):
        listed = list(values)
    else:
        listed = [values]
    names = [v for v in listed if type(v) is str]
    if len(names) != len(listed):
        raise ValidationError(f"{what} must be a string or a collection of strings, not "
                              f"{values!r}", key=what)
    return frozenset(names)


def event_filter(project: str | None, runs: object, types: object,
                 metrics: object) -> tuple[EventFilter, frozenset[str] | None]:
    """What ``subscribe``'s filters select: the events of ``project`` (None: every project)
    that pass them, and the metrics a metric event is trimmed to (None: all of them).

    :raises ValidationError: for a filter that is not a string or a collection of strings.
    """
    run_ids = _names(runs, "runs")
    type_names = _names(types, "types")
    metric_names = _names(metrics, "metrics")
    if metric_names is not None:
        type_names = frozenset({ev.METRICS_LOGGED}) & (type_names or {ev.METRICS_LOGGED})
    return EventFilter(project=project, run_ids=run_ids, types=type_names), metric_names
