"""Confusion matrices: how often each true label was predicted as each label.

The plain form keeps the labels as a list and the counts row by row in one ``array('q')``
column, which the payload codec stores as binary: 1,000 labels cost 8 MB of counts, not a
million JSON numbers to parse.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from engine.errors import ValidationError

__all__ = ["MAX_LABEL", "MAX_LABELS", "ConfusionMatrix", "check_confusion_matrix"]

MAX_LABELS = 1024
"""The most labels a matrix may have (a million counts: its event stays near 8 MB)."""
MAX_LABEL = 1024
"""The longest label, in characters."""
_INT64_MAX = 2**63 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True, slots=True, init=False)
class ConfusionMatrix:
    """A confusion matrix: ``ConfusionMatrix(labels, matrix)``.

    ``labels`` are unique non-empty strings; ``matrix`` is square, one row per true label
    and one column per predicted label, in the order of ``labels``, holding non-negative
    integers (Python or NumPy ints; a nested list or a 2-D integer array). Two matrices are
    equal when their labels and counts are.

    :raises ValidationError: for labels or counts that break these rules.
    """

    labels: tuple[str, ...]
    """The class labels, in the order of the rows and columns."""
    matrix: tuple[tuple[int, ...], ...]
    """``matrix[i][j]``: how many items of true label ``i`` were predicted as label ``j``."""

    def __init__(self, labels: ArrayLike, matrix: ArrayLike) -> None:
        checked_labels, rows = _check(labels, matrix, None)
        object.__setattr__(self, "labels", checked_labels)
        object.__setattr__(self, "matrix", rows)

    def to_plain(self) -> dict[str, Any]:
        """The plain form for an event payload: ``{"labels": [...], "matrix": array('q')}``,
        the counts row by row."""
        flat = array("q")
        for row in self.matrix:
            flat.extend(row)
        return {"labels": list(self.labels), "matrix": flat}

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> ConfusionMatrix:
        """The matrix a plain form stands for (the counts as an array or a list)."""
        labels, flat = data["labels"], data["matrix"]
        size = len(labels)
        if len(flat) != size * size:
            raise ValidationError(f"confusion matrix: {len(flat)} counts for {size} labels; "
                                  f"expected {size * size}", key="matrix")
        return cls(labels, [flat[i * size:(i + 1) * size] for i in range(size)])


def check_confusion_matrix(key: str, value: object) -> ConfusionMatrix:
    """The confusion matrix to log under ``key``: a ``ConfusionMatrix``, or a mapping of
    ``labels`` and ``matrix`` (the nested rows) checked with ``key`` named in any refusal."""
    if isinstance(value, ConfusionMatrix):
        return value
    if isinstance(value, Mapping) and set(value) == {"labels", "matrix"}:
        labels, rows = _check(value["labels"], value["matrix"], key)
        made = ConfusionMatrix.__new__(ConfusionMatrix)
        object.__setattr__(made, "labels", labels)
        object.__setattr__(made, "matrix", rows)
        return made
    raise ValidationError(
        f"confusion matrix {key!r}: {type(value).__name__} is not a confusion matrix; use "
        "engine.ConfusionMatrix(labels, matrix)", key=key)


def _check(labels: object, matrix: object,
           key: str | None) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    where = f"confusion matrix {key!r}: " if key else "confusion matrix: "
    names = _labels(labels, where, key)
    if isinstance(matrix, str | bytes | Mapping):
        raise ValidationError(f"{where}matrix must be rows of counts, not "
                              f"{type(matrix).__name__}", key=key or "matrix")
    if isinstance(matrix, list | tuple) and any(
            type(v) is bool for row in matrix if isinstance(row, list | tuple) for v in row):
        raise ValidationError(f"{where}counts must be integers, not bools", key=key or "matrix")
    try:
        counts = np.asarray(matrix)
    except (ValueError, TypeError, OverflowError):
        raise ValidationError(f"{where}matrix must be rows of equal length", key=key or "matrix"
                              ) from None
    size = len(names)
    if counts.shape != (size, size):
        raise ValidationError(
            f"{where}matrix of shape {counts.shape} for {size} labels; it must be square, "
            f"{size}x{size}: one row and one column per label", key=key or "matrix")
    if counts.dtype.kind not in "iu":
        raise ValidationError(
            f"{where}counts must be integers (Python or NumPy ints), not {counts.dtype} values",
            key=key or "matrix")
    if (counts < 0).any():
        i, j = (int(v) for v in np.argwhere(counts < 0)[0])
        raise ValidationError(f"{where}counts must be >= 0, not {counts[i, j]} (row {names[i]!r}"
                              f", column {names[j]!r})", key=key or "matrix")
    if counts.dtype.kind == "u" and int(counts.max()) > _INT64_MAX:
        raise ValidationError(f"{where}counts must fit in 64 bits", key=key or "matrix")
    return names, tuple(tuple(int(v) for v in row) for row in counts.tolist())


def _labels(labels: object, where: str, key: str | None) -> tuple[str, ...]:
    if isinstance(labels, str | bytes | Mapping):
        raise ValidationError(f"{where}labels must be a sequence of strings, not "
                              f"{type(labels).__name__}", key=key or "labels")
    if not isinstance(labels, Iterable):
        raise ValidationError(f"{where}labels must be a sequence of strings, not "
                              f"{type(labels).__name__}", key=key or "labels")
    names: tuple[object, ...] = tuple(labels)
    if not 1 <= len(names) <= MAX_LABELS:
        raise ValidationError(f"{where}{len(names)} labels; a matrix has 1 to {MAX_LABELS}",
                              key=key or "labels")
    for name in names:
        if (not isinstance(name, str) or not name or len(name) > MAX_LABEL
                or _CONTROL.search(name)):
            raise ValidationError(
                f"{where}label {name!r} is not allowed; labels are non-empty strings of at "
                f"most {MAX_LABEL} characters without control characters", key=key or "labels")
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(f"{where}label {name!r} is not valid Unicode text",
                                  key=key or "labels") from None
    checked = tuple(str(n) for n in names)
    if len(set(checked)) != len(checked):
        twice = next(n for i, n in enumerate(checked) if n in checked[:i])
        raise ValidationError(f"{where}label {twice!r} is given twice; labels are unique",
                              key=key or "labels")
    return checked
