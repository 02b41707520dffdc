"""The public surface is exactly what ``__all__`` says, and every piece of it is documented."""

from __future__ import annotations

import inspect
from types import ModuleType

import pytest

import engine
import engine.errors
import engine.sync

# The public surface, spelled out: adding or dropping a name must be a deliberate change here.
PUBLIC = [
    "ConfusionMatrix", "EditContext", "Entry", "Event", "Experiment", "File", "FileRef",
    "ForkPoint", "Histogram", "Image", "Job", "Lineage", "MetricStats", "MetricSummary", "Run",
    "RunContext", "RunGroup", "RunState", "RunsTable", "Series", "Status", "Subscription",
    "TextSeries", "Tracker", "connect", "errors", "init", "sync",
]
SYNC = ["SyncEditContext", "SyncRun", "SyncRunContext", "SyncSubscription", "SyncTracker",
        "connect", "init"]
ERRORS = [
    "AuthError", "BackpressureError", "ClosedError", "ConcurrencyError", "EngineError",
    "FileSourceError", "IntegrityError", "QuerySyntaxError", "RunAbortedError", "RunExistsError",
    "RunNotFoundError", "StorageError", "ValidationError",
]


def test_the_public_surface_is_the_expected_one() -> None:
    assert engine.__all__ == PUBLIC
    assert engine.sync.__all__ == SYNC
    assert engine.errors.__all__ == ERRORS


@pytest.mark.parametrize("facade", [engine, engine.sync])
def test_the_facades_export_exactly_their_all(facade: ModuleType) -> None:
    public = {name for name in dir(facade) if not name.startswith("_")}
    assert set(facade.__all__) == public
    assert facade.__all__ == sorted(facade.__all__)


def test_the_errors_module_exports_what_it_defines() -> None:
    module = engine.errors
    defined = {name for name, value in vars(module).items()
               if not name.startswith("_")
               and getattr(value, "__module__", None) == module.__name__}
    assert set(module.__all__) == defined
    assert module.__all__ == sorted(module.__all__)


@pytest.mark.parametrize("module", [engine, engine.errors, engine.sync])
def test_every_public_name_has_a_docstring(module: ModuleType) -> None:
    missing = [name for name in module.__all__ if not inspect.getdoc(getattr(module, name))]
    assert missing == []


def test_the_error_tree_is_the_one_spec_names() -> None:
    errors = engine.errors
    for name in ("ValidationError", "RunNotFoundError", "RunExistsError", "ConcurrencyError",
                 "QuerySyntaxError", "BackpressureError", "ClosedError", "RunAbortedError",
                 "StorageError", "IntegrityError", "AuthError", "FileSourceError"):
        assert issubclass(getattr(errors, name), errors.EngineError)
    assert issubclass(errors.FileSourceError, errors.ValidationError)
    assert issubclass(errors.ValidationError, ValueError)
    assert issubclass(errors.QuerySyntaxError, ValueError)
    assert issubclass(errors.RunNotFoundError, LookupError)


def test_query_syntax_errors_point_at_the_problem() -> None:
    error = engine.errors.QuerySyntaxError("unexpected ')'", "a = 1)", 5)
    assert str(error).splitlines() == ["unexpected ')' at position 5", "  a = 1)", "       ^"]
