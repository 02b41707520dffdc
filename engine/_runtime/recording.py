"""Checking what a run logs besides metrics, and the payloads of the events that carry it.

A logging call is checked whole here before anything is buffered: each key, each value
(by its kind's own check), the kind each key already holds in the run (a key keeps one
kind for the life of a run and its forks) and each key's step. ``Keys`` is the run
handle's memory of its keys; the store checks kinds and steps again at commit, against
writers elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine._core import content as ct
from engine._core import events as ev
from engine._core.confusion import ConfusionMatrix, check_confusion_matrix
from engine._core.files import File
from engine._core.histograms import Histogram, check_histogram
from engine._core.text import check_text
from engine._core.validate import check_key, check_step, flatten
from engine.errors import ValidationError

__all__ = ["KINDS", "Keys", "check_timestamp", "flat_values", "kind_of", "text_payload",
           "valued_payload"]

KINDS: Mapping[str, tuple[str, str, Callable[[str, Any], Any]]] = {
    ct.TEXT: (ev.TEXT_LOGGED, "text", check_text),
    ct.HISTOGRAM: (ev.HISTOGRAMS_LOGGED, "histograms", check_histogram),
    ct.CONFUSION_MATRIX: (ev.CONFUSION_MATRICES_LOGGED, "matrices", check_confusion_matrix),
}
"""Kind → (event type, payload field, value check) of the stepped kinds logged by value."""


def kind_of(key: str, value: object) -> str:
    """The kind ``run.log`` routes ``value`` to.

    :raises ValidationError: for a value of no kind, naming ``key``.
    """
    kind = type(value)
    if kind is float or kind is int:
        return ct.METRIC
    if kind is str:
        return ct.TEXT
    if isinstance(value, File):
        return ct.FILE
    if isinstance(value, Histogram):
        return ct.HISTOGRAM
    if isinstance(value, ConfusionMatrix):
        return ct.CONFUSION_MATRIX
    if isinstance(value, str):
        return ct.TEXT
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ct.METRIC
    raise ValidationError(
        f"key {key!r}: run.log cannot log a {type(value).__name__}; give an int or float "
        "(metric), a str (text), engine.File or engine.Image (file), engine.Histogram or "
        "engine.ConfusionMatrix", key=key)


@dataclass(slots=True)
class Keys:
    """The run's non-metric keys: each key's kind and the last step logged under it (None
    for a file attribute), and the step every new entry must pass (fork or rewind)."""

    kinds: dict[str, list[Any]] = field(default_factory=dict)
    floor: int | float = -1

    def check(self, key: str, kind: str, metrics: Mapping[str, Any] | set[str]) -> None:
        """Refuse ``kind`` under a key that holds another one."""
        if key in metrics:
            if kind != ct.METRIC:
                raise _changed(key, kind, ct.METRIC)
            return
        had = self.kinds.get(key)
        if had is not None and had[0] != kind:
            raise _changed(key, kind, had[0])

    def step(self, key: str, kind: str, step: object) -> int | float:
        """The step for a new entry under ``key``: the one given, checked to be past the
        key's last step, or the next one after it."""
        had = self.kinds.get(key)
        last = had[1] if had is not None and had[1] is not None else None
        bound = self.floor if last is None or last < self.floor else last
        if step is None:
            return check_step(int(bound) + 1 if bound == int(bound) else bound + 1, key)
        checked = check_step(step, key)
        if checked <= bound:
            why = (f"the last step of {key!r} is {last}" if last is not None and last >= bound
                   else f"the run's steps must be greater than {bound} (its fork or rewind "
                        "step)")
            raise ValidationError(f"{kind} {key!r}: step {checked} is not allowed: {why}; "
                                  "steps must increase", key=key)
        return checked

    def taken(self, key: str, kind: str, step: int | float | None) -> None:
        self.kinds[key] = [kind, step]


def _changed(key: str, kind: str, had: str) -> ValidationError:
    return ValidationError(f"key {key!r} holds a {had} in this run (or the run it was forked "
                           f"from); it cannot take a {kind} too: use another key", key=key)


def check_timestamp(value: object) -> float:
    """A logged point's timestamp: finite seconds since the epoch."""
    if (type(value) is float or type(value) is int) and math.isfinite(value):
        return float(value)
    raise ValidationError(f"timestamp {value!r} is not a number of seconds since the epoch",
                          key="timestamp")


def flat_values(values: Mapping[str, Any], what: str) -> dict[str, Any]:
    """A logging call's values by flat key (nested dicts flattened with ``/``), keys
    checked."""
    if not isinstance(values, Mapping):
        raise ValidationError(f"expected a dict of {what}s, got {type(values).__name__}")
    flat = flatten(values, what)
    for key in flat:
        check_key(key, what)
    return flat


def text_payload(items: list[tuple[str, int | float, str]], at: float) -> dict[str, Any]:
    """A TextLogged payload for ``(key, step, text)`` items."""
    text: dict[str, dict[str, list[Any]]] = {}
    for key, step, value in items:
        column = text.setdefault(key, {"steps": [], "values": [], "timestamps": []})
        column["steps"].append(step)
        column["values"].append(value)
        column["timestamps"].append(at)
    return {"text": text}


def valued_payload(field_name: str, items: list[tuple[str, int | float, dict[str, Any]]],
                   at: float) -> dict[str, Any]:
    """The payload of a histograms, confusion-matrices or files event."""
    out: dict[str, list[dict[str, Any]]] = {}
    for key, step, plain in items:
        out.setdefault(key, []).append({"step": step, "timestamp": at, **plain})
    return {field_name: out}
