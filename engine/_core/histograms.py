"""Histograms: bin edges and counts, as a run logs them at a step.

Edges are floats; counts stay ints when every count given is an integer (what
``numpy.histogram`` gives) and are floats otherwise (weighted or normalised histograms).
The plain form puts both in ``array.array`` columns, which the payload codec stores as
binary, so a histogram read back from the log equals the one logged, bit for bit.

``from_values`` refuses NaN and ±inf rather than dropping them: a histogram of gradients
that quietly left out the NaN would hide the very step where training diverged. Values
outside an explicit ``range`` are left out, as ``numpy.histogram`` does.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from engine.errors import ValidationError

__all__ = ["MAX_BINS", "Histogram", "check_histogram"]

MAX_BINS = 65_536
"""The most bins a histogram may have: its event stays near 1 MiB."""
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True, init=False)
class Histogram:
    """A histogram: ``Histogram(edges, counts)``, or ``Histogram.from_values(values)``.

    ``len(edges) == len(counts) + 1``; edges are finite and strictly increasing; counts are
    finite and >= 0, ints or floats. Any sequence or 1-D NumPy array of numbers will do
    (never bools). Bin ``i`` holds the values in ``[edges[i], edges[i + 1])``, the last bin
    its right edge too. Two histograms are equal when their edges and counts are.

    :raises ValidationError: for edges or counts that break these rules, or more than
        65,536 bins.
    """

    edges: tuple[float, ...]
    """The ``len(counts) + 1`` bin edges, increasing."""
    counts: tuple[int, ...] | tuple[float, ...]
    """The count of each bin: all ints, or all floats."""

    def __init__(self, edges: ArrayLike, counts: ArrayLike) -> None:
        checked_edges, checked_counts = _check(edges, counts, None)
        object.__setattr__(self, "edges", checked_edges)
        object.__setattr__(self, "counts", checked_counts)

    @classmethod
    def from_values(cls, values: ArrayLike, bins: int | Sequence[float] = 64,
                    range: tuple[float, float] | None = None) -> Histogram:
        """The histogram of ``values`` (an array of any shape, flattened) with NumPy:
        ``bins`` equal bins over ``range`` (default: from the smallest value to the
        largest), or ``bins`` as the edges themselves.

        :raises ValidationError: for values that are not numbers, NaN or ±inf among them,
            a bad ``bins`` or ``range``.
        """
        data = _numbers(values, "values", None)
        finite = np.isfinite(data)
        if not finite.all():
            raise ValidationError(
                f"histogram: values hold {np.count_nonzero(~finite)} NaN or infinite "
                "value(s); a histogram counts finite numbers (filter them first, e.g. "
                "values[numpy.isfinite(values)])", key="values")
        span = None if range is None else _range(range)
        if isinstance(bins, bool) or not isinstance(bins, int | np.integer):
            edges_in = _numbers(bins, "bins", None).astype(np.float64)
            if not 2 <= len(edges_in) <= MAX_BINS + 1:
                raise ValidationError(f"histogram: {len(edges_in)} edges in bins; give 2 to "
                                      f"{MAX_BINS + 1} edges, or a number of bins", key="bins")
            _check_edges(edges_in, "histogram: bins: ", "bins")
            with np.errstate(all="ignore"):
                counts, edges = np.histogram(data, bins=edges_in)
        elif not 1 <= int(bins) <= MAX_BINS:
            raise ValidationError(f"histogram: bins={bins} is not allowed; use 1 to "
                                  f"{MAX_BINS} bins, or a sequence of edges", key="bins")
        else:
            try:
                # Overflowing edges come back as inf, which the constructor then refuses.
                with np.errstate(all="ignore"):
                    counts, edges = np.histogram(data, bins=int(bins), range=span)
            except ValueError as exc:  # no distinct finite float edges span the range
                raise ValidationError(
                    f"histogram: {exc} ({'range' if span else 'the values'} from "
                    f"{span[0] if span else data.min()} to {span[1] if span else data.max()})",
                    key="range" if span else "values") from None
        return cls(edges, counts)

    def to_plain(self) -> dict[str, Any]:
        """The plain form for an event payload: ``{"edges": array('d'), "counts": array('q')
        or array('d')}``."""
        code = "q" if self.counts and type(self.counts[0]) is int else "d"
        return {"edges": array("d", self.edges), "counts": array(code, self.counts)}

    @classmethod
    def from_plain(cls, data: Mapping[str, Any]) -> Histogram:
        """The histogram a plain form stands for (arrays or lists)."""
        return cls(data["edges"], data["counts"])


def check_histogram(key: str, value: object) -> Histogram:
    """The histogram to log under ``key``: a ``Histogram``, or its plain form (a mapping of
    ``edges`` and ``counts``) checked with ``key`` named in any refusal."""
    if isinstance(value, Histogram):
        return value
    if isinstance(value, Mapping) and set(value) == {"edges", "counts"}:
        edges, counts = _check(value["edges"], value["counts"], key)
        histogram = Histogram.__new__(Histogram)
        object.__setattr__(histogram, "edges", edges)
        object.__setattr__(histogram, "counts", counts)
        return histogram
    raise ValidationError(
        f"histogram {key!r}: {type(value).__name__} is not a histogram; use "
        "engine.Histogram(edges, counts) or Histogram.from_values(values)", key=key)


def _check(edges: object, counts: object,
           key: str | None) -> tuple[tuple[float, ...], tuple[int, ...] | tuple[float, ...]]:
    where = f"histogram {key!r}: " if key else "histogram: "
    e = _numbers(edges, "edges", key).astype(np.float64)
    c = _numbers(counts, "counts", key)
    if not 1 <= len(c) <= MAX_BINS:
        raise ValidationError(f"{where}{len(c)} bins; a histogram has 1 to {MAX_BINS}",
                              key=key or "counts")
    if len(e) != len(c) + 1:
        raise ValidationError(f"{where}{len(e)} edges for {len(c)} counts; there must be "
                              "one edge more than counts", key=key or "edges")
    _check_edges(e, where, key or "edges")
    if c.dtype.kind == "f":
        if not np.isfinite(c).all():
            raise ValidationError(
                f"{where}counts must be finite, not {_first(c, ~np.isfinite(c))}",
                key=key or "counts")
        kept: tuple[int, ...] | tuple[float, ...] = tuple(c.astype(np.float64).tolist())
    else:
        if c.dtype.kind == "u" and len(c) and int(c.max()) > _INT64_MAX:
            raise ValidationError(f"{where}counts must fit in 64 bits", key=key or "counts")
        kept = tuple(int(v) for v in c.tolist())
    if (c < 0).any():
        raise ValidationError(f"{where}counts must be >= 0, not {_first(c, c < 0)} (bin "
                              f"{int(np.argmax(c < 0))})", key=key or "counts")
    return tuple(e.tolist()), kept


def _check_edges(edges: NDArray[np.float64], where: str, key: str) -> None:
    if not np.isfinite(edges).all():
        raise ValidationError(f"{where}edges must be finite, not "
                              f"{_first(edges, ~np.isfinite(edges))}", key=key)
    steps = np.diff(edges) <= 0
    if steps.any():
        i = int(np.argmax(steps))
        raise ValidationError(f"{where}edges must increase strictly; edge {i + 1} "
                              f"({edges[i + 1]}) follows {edges[i]}", key=key)


def _numbers(value: object, what: str, key: str | None) -> NDArray[Any]:
    """``value`` as a 1-D array of ints or floats (or, for ``values``, any shape, flattened),
    refusing bools, strings, objects and ints past 64 bits."""
    where = f"histogram {key!r}: " if key else "histogram: "
    if isinstance(value, str | bytes | Mapping):
        raise ValidationError(f"{where}{what} must be numbers, not {type(value).__name__}",
                              key=key or what)
    if isinstance(value, list | tuple) and any(type(v) is bool for v in value):
        raise ValidationError(f"{where}{what} must be ints or floats, not bools",
                              key=key or what)
    try:
        data = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValidationError(f"{where}{what} must be numbers ({exc})", key=key or what) from None
    if data.dtype.kind not in "iuf":
        raise ValidationError(
            f"{where}{what} must be ints or floats, not {data.dtype} values (ints past 64 "
            "bits and bools are refused too)", key=key or what)
    if what == "values":
        return data.ravel()
    if data.ndim != 1:
        raise ValidationError(f"{where}{what} must be one-dimensional, not of shape "
                              f"{data.shape}", key=key or what)
    return data


def _range(span: object) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in span)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValidationError(f"histogram: range={span!r} is not a pair of numbers",
                              key="range") from None
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ValidationError(f"histogram: range={span!r} is not allowed; use finite "
                              "(low, high) with low < high", key="range")
    return low, high


def _first(values: NDArray[Any], mask: NDArray[np.bool_]) -> Any:
    return values[mask][0].item()
