"""The blocking API takes exactly the async API's parameters: the same names, kinds, defaults
and types, so that editors and type checkers help blocking code as much as async code, and a
parameter added to one side without the other fails here."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest

import engine

# Methods of the async handles that the engine calls, not users: no blocking twin.
RUN_INTERNALS = {"halt", "raise_on_abort", "request_abort", "record_env", "record_line",
                 "record_system", "record_uploads"}
SUBSCRIPTION_INTERNALS = {"end", "offer", "wake"}
RENAMED = {"aclose": "close"}


def parameters(fn: Callable[..., Any]) -> list[tuple[str, Any, Any, Any]]:
    signature = inspect.signature(fn, eval_str=True)
    return [(p.name, p.kind, p.default, p.annotation) for p in signature.parameters.values()]


def methods(cls: type) -> set[str]:
    return {name for name in dir(cls)
            if not name.startswith("_") and inspect.isfunction(getattr(cls, name))}


def test_init_takes_the_async_arguments() -> None:
    assert parameters(engine.sync.init) == parameters(engine.init)


def test_init_takes_every_option_of_start_run_and_connect() -> None:
    """``init`` is ``connect`` and ``start_run`` in one call: each of their keyword
    parameters is one of its own, with the same default and type."""
    taken = {name: (default, annotation)
             for name, _, default, annotation in parameters(engine.init)}
    for fn in (engine.Tracker.start_run, engine.connect):
        for name, kind, default, annotation in parameters(fn):
            if kind is inspect.Parameter.KEYWORD_ONLY:
                assert taken.get(name) == (default, annotation), name


def test_connect_takes_the_async_settings() -> None:
    assert parameters(engine.sync.connect) == parameters(engine.connect)
    # The constructor too (the async one has no defaults: its users go through connect).
    assert parameters(engine.sync.SyncTracker) == parameters(engine.connect)


@pytest.mark.parametrize(("async_cls", "sync_cls", "left_out"), [
    (engine.Tracker, engine.sync.SyncTracker, set()),
    (engine.Run, engine.sync.SyncRun, RUN_INTERNALS),
    (engine.Subscription, engine.sync.SyncSubscription, SUBSCRIPTION_INTERNALS),
])
def test_every_method_has_a_blocking_twin_with_the_same_parameters(
        async_cls: type, sync_cls: type, left_out: set[str]) -> None:
    wanted = {RENAMED.get(name, name) for name in methods(async_cls) - left_out}
    assert methods(sync_cls) == wanted
    for name in methods(async_cls) - left_out:
        twin = getattr(sync_cls, RENAMED.get(name, name))
        assert parameters(twin) == parameters(getattr(async_cls, name)), name


@pytest.mark.parametrize(("async_cls", "sync_cls"), [
    (engine.Tracker, engine.sync.SyncTracker),
    (engine.Run, engine.sync.SyncRun),
    (engine.Subscription, engine.sync.SyncSubscription),
])
def test_the_blocking_twins_expose_the_same_properties(async_cls: type, sync_cls: type) -> None:
    def properties(cls: type) -> set[str]:
        return {name for name in dir(cls)
                if not name.startswith("_") and isinstance(getattr(cls, name), property)}

    assert properties(sync_cls) >= properties(async_cls)
