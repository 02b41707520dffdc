"""The projections of what a run records besides metrics: notes, env, file attributes, the
kind of each key, and the entries of text, file, histogram and confusion-matrix series.

These live on the run row (``notes``, ``env``, ``files``, ``kinds``, ``entry_segments``) and
in the ``entries`` table. A fork sees its parent's entries through a segment capped at the
fork step and at the fork's position (the parent's epoch keeps growing after the fork); a
rewind closes the run's own epoch into a segment capped at the rewind step. Metrics keep
their own rows, so a key's kind is checked against both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine._core import content as ct
from engine._core import events as ev
from engine._core.codec import encode
from engine._core.events import Record
from engine.errors import ValidationError

from .rows import Changes, RunRow

__all__ = ["apply_content", "fork_content", "kind_error", "rewind_content"]


def kind_error(key: str, kind: str, had: str) -> ValidationError:
    """The refusal of logging ``kind`` under a key that holds ``had``."""
    return ValidationError(f"key {key!r} holds a {had} in this run (or the run it was forked "
                           f"from); it cannot take a {kind} too: use another key", key=key)


def apply_content(row: RunRow, rec: Record, metrics: Mapping[str, Any],
                  changes: Changes) -> None:
    """Fold one content event into the run row and ``changes``; everything is checked
    before anything changes.

    :raises ValidationError: a key that holds another kind, or a step not past the key's
        last step (or the run's floor).
    """
    data = rec.data
    kind = rec.type
    if kind == ev.NOTES_SET:
        row.notes = data["notes"]
    elif kind == ev.ENV_CAPTURED:
        row.env.update(data["env"])
        changes.configs[row.rk] = row
    elif kind == ev.FILES_UPLOADED:
        for key in data["files"]:
            _check_kind(row, metrics, key, ct.UPLOAD)
        for key, ref in data["files"].items():
            plain = {k: v for k, v in ref.items() if k != "timestamp"}
            plain["at"] = ref["timestamp"]
            row.files[key] = plain
            row.kinds[key] = [ct.UPLOAD, None]
    else:
        logged = list(ct.entries_of(kind, data))
        for key, what, rows in logged:
            _check_kind(row, metrics, key, what)
            if rows:
                _check_step(row, key, what, rows[0][0])
        for key, what, rows in logged:
            if not rows:
                continue
            changes.entries.extend(
                (row.rk, key, row.epoch, step, rec.position, what, at, encode(value))
                for step, at, value in rows)
            row.kinds[key] = [what, rows[-1][0]]


def _check_kind(row: RunRow, metrics: Mapping[str, Any], key: str, kind: str) -> None:
    if key in metrics:
        raise kind_error(key, kind, ct.METRIC)
    had = row.kinds.get(key)
    if had is not None and had[0] != kind:
        raise kind_error(key, kind, had[0])


def _check_step(row: RunRow, key: str, kind: str, step: int | float) -> None:
    had = row.kinds.get(key)
    last = had[1] if had is not None else None
    bound = last if row.floor is None or (last is not None and last > row.floor) else row.floor
    if bound is not None and step <= bound:
        raise ValidationError(
            f"{kind} {key!r}: step {step} is not greater than the last step {bound} of run "
            f"{row.run_id!r}; another writer may be logging to it", key=key)


def fork_content(child: RunRow, parent: RunRow, step: int | float, position: int) -> None:
    """Give a new fork its parent's notes, env, file attributes and key kinds as they are
    now, and a view of the parent's entries up to ``step``."""
    child.notes = parent.notes
    child.env = dict(parent.env)
    child.files = dict(parent.files)
    child.kinds = {key: [kind, _cap(last, step)] for key, (kind, last) in parent.kinds.items()}
    child.entry_segments = [
        [src, epoch, _cap(cap, step), pos] for src, epoch, cap, pos in parent.entry_segments
    ] + [[parent.rk, parent.epoch, step, position]]


def rewind_content(row: RunRow, step: int | float) -> None:
    """Cut the run's entries after ``step`` (before its epoch moves on)."""
    row.kinds = {key: [kind, _cap(last, step)] for key, (kind, last) in row.kinds.items()}
    row.entry_segments = [
        [src, epoch, _cap(cap, step), pos] for src, epoch, cap, pos in row.entry_segments
    ] + [[row.rk, row.epoch, step, None]]


def _cap(value: int | float | None, step: int | float) -> int | float | None:
    return value if value is None or value <= step else step
