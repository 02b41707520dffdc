"""Hypothesis strategies and exact comparisons shared by the property tests."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import strategies as st

import engine

# Floats as users log them: every finite value, both zeros, NaN and both infinities.
floats = st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True)

datetimes = st.one_of(
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)),
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),
                 timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))])),
)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), floats, st.text(), datetimes,
)

payloads = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=8),
        st.dictionaries(st.text(max_size=10), inner, max_size=8),
    ),
    max_leaves=40,
)

# Keys logging accepts (docs/logging.md): '/'-separated, non-empty segments, no control characters.
_segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/"),
    min_size=1, max_size=12,
)
metric_keys = st.lists(_segment, min_size=1, max_size=3).map("/".join)

config_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), floats,
    st.text(max_size=20), datetimes, st.lists(st.text(max_size=8), max_size=4),
)


def same(a: Any, b: Any) -> bool:
    """Exact equality: types must match, NaN equals NaN, -0.0 differs from 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, datetime):
        return a == b and (a.tzinfo is None) == (b.tzinfo is None)
    return bool(a == b)


def same_state(a: engine.RunState, b: engine.RunState) -> bool:
    """Two run states are equal, field by field, with exact floats."""
    fields = ("project", "run_id", "name", "experiment", "status", "status_reason", "tags",
              "fork", "created_at", "updated_at", "ended_at", "deleted", "version", "position",
              "notes", "files", "worker")
    if not same(a.env, b.env):
        return False
    if any(getattr(a, f) != getattr(b, f) for f in fields):
        return False
    if not same(a.config, b.config):
        return False
    if a.metrics.keys() != b.metrics.keys():
        return False
    return all(
        same([x.last, x.min, x.max], [y.last, y.min, y.max])
        and x.count == y.count and same(x.last_step, y.last_step)
        for x, y in ((a.metrics[m], b.metrics[m]) for m in a.metrics)
    )


def state_diff(a: engine.RunState, b: engine.RunState) -> str:
    """Which fields of two run states differ (for assertion messages)."""
    out = []
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if name in ("config", "metrics", "env"):
            if name == "metrics" and x.keys() == y.keys():
                bad = {m: (x[m], y[m]) for m in x if not same_state(
                    _with_metrics(a, {m: x[m]}), _with_metrics(a, {m: y[m]}))}
                if bad:
                    out.append(f"metrics differ: {bad}")
                continue
            if not same(x, y) if name in ("config", "env") else x.keys() != y.keys():
                out.append(f"{name}: {x!r} != {y!r}")
        elif x != y:
            out.append(f"{name}: {x!r} != {y!r}")
    return "; ".join(out)


def _with_metrics(state: engine.RunState, metrics: dict[str, Any]) -> engine.RunState:
    from dataclasses import replace

    return replace(state, metrics=metrics)
