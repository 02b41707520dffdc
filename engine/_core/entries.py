"""``Entry``: one value a run logged at a step, as reads of histograms and confusion
matrices return it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Generic, TypeVar

__all__ = ["Entry"]

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Entry(Generic[V]):
    """A logged value at a step: ``Entry(step, value, timestamp)``; ``timestamp`` is when
    it was logged (UTC), as in ``Event``."""

    step: int | float
    value: V
    timestamp: datetime
