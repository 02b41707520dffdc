"""What users write type-checks, and the mistakes a type checker should catch are caught.

mypy (strict) runs once over the snippets below, as attrs and msgspec check their types. A
snippet's line that must fail ends with ``# E: code`` (mypy's error code); every other line
must pass. The engine is only read here, not checked: ``make lint`` checks it.

The compiled hot path's stub is checked against the extension itself with mypy's stubtest.
"""

from __future__ import annotations

import re
import textwrap
import tomllib
from pathlib import Path

import mypy.api
import mypy.stubtest
import pytest

ROOT = Path(__file__).resolve().parent.parent

SNIPPETS = {
    "sync_training": """
        import engine
        import engine.sync


        def train(db: str, epochs: int) -> None:
            with engine.sync.connect(db, project="team/proj", durability="normal",
                                     max_pending_points=100_000) as tracker:
                with tracker.start_run("r1", experiment="baseline", tags=("lr-sweep",),
                                       config={"lr": 0.1, "optimizer": {"name": "sgd"}}) as run:
                    name: str = run.name
                    for step in range(epochs):
                        run.log_metrics({"train/loss": 1 / (step + 1), "train/acc": 1},
                                        step=step)
                    run.log_configs({"layers": ["conv", "dense"]})
                    run.add_tags("good", ["checked", "kept"])
                    run.remove_tags("lr-sweep")
                    run.flush()
                    stop: bool = run.abort_requested
                with tracker.start_run("r2", fork=("r1", 4), resume=True) as child:
                    child.log_metrics({"train/loss": 0.1}, step=5.5, timestamp=1.7e9)
    """,
    "sync_reads": """
        from datetime import datetime

        import engine
        import engine.sync
        from engine.errors import RunNotFoundError


        def report(tracker: engine.sync.SyncTracker) -> None:
            try:
                state: engine.RunState = tracker.get_run("r1", as_of=10)
            except RunNotFoundError:
                return
            status: engine.Status = state.status
            created: datetime = state.created_at
            loss: float = state.metrics["train/loss"].last
            fork: engine.ForkPoint | None = state.fork
            series: engine.Series = tracker.read_series("r1", "train/loss", max_points=100)
            values: list[float] = series.values.tolist()
            best: list[engine.RunState] = tracker.list_runs(
                "metrics.train/acc > 0.9", order_by="-metrics.train/acc", limit=10)
            groups: list[engine.RunGroup] = tracker.group_runs(
                ["experiment", "config.optimizer/name"], aggregates="metrics.train/loss.min")
            stats: engine.MetricStats = groups[0].metrics["metrics.train/loss.min"]
            table: engine.RunsTable = tracker.fetch_runs_table(columns="run_id, name")
            csv: str = table.to_csv()
            experiment: engine.Experiment = tracker.get_experiment("baseline")
            head: str | None = experiment.head
            tree: engine.Lineage = tracker.lineage("r1")
            parents: tuple[engine.ForkPoint, ...] = tree.ancestors
            for event in tracker.events(from_position=0):
                seen: engine.Event = event
            with tracker.subscribe(runs=["r1"], metrics=["train/loss"],
                                   from_position="live") as subscription:
                position: int = subscription.wait_caught_up()
                for live in subscription:
                    kind: str = live.type
                    break
            last_week: engine.RunState = tracker.get_run("r1", as_of=datetime(2025, 1, 1))
            then: list[engine.RunState] = tracker.list_runs(as_of=state.position)
            with tracker.edit_run("r1") as edit:
                edit.log_metrics({"leaderboard/score": 0.91}, step=0)
            tracker.abort_run("r1", reason="diverged")
            tracker.delete_run("r2")
            tracker.rebuild_projections(lambda done, total: None)
    """,
    "async_service": """
        import anyio

        import engine


        async def serve(url: str) -> None:
            async with engine.connect(url, project="team/proj") as tracker:
                async with tracker.start_run(experiment="online", config={"seed": 1}) as run:
                    run.log_metrics({"latency": 0.25})
                    await run.flush()
                state: engine.RunState = await tracker.get_run(run.run_id)
                runs: list[engine.RunState] = await tracker.list_runs(heads_only=True)
                series: engine.Series = await tracker.read_series(run.run_id, "latency")
                async for event in tracker.events(0):
                    first: engine.Event = event
                    break
                subscription: engine.Subscription = tracker.subscribe(types=["StatusChanged"])
                async with subscription:
                    caught_up: int = await subscription.wait_caught_up()
                await tracker.rebuild_projections()


        anyio.run(serve, ":memory:")
    """,
    "sync_mistakes": """
        import engine
        import engine.sync

        engine.sync.connect("x.db", durabilty="full")  # E: call-arg
        engine.sync.connect("x.db", durability="fast")  # E: arg-type
        engine.sync.connect("x.db", project=5)  # E: arg-type
        engine.sync.connect("x.db", flush_interval="1s")  # E: arg-type
        with engine.sync.connect("x.db") as tracker:
            tracker.start_run(tags=5)  # E: arg-type
            tracker.start_run(config=["lr"])  # E: arg-type
            tracker.start_run(fork="parent")  # E: arg-type
            tracker.start_run(experiment="x", expriment="y")  # E: call-arg
            with tracker.start_run() as run:
                run.log_metrics("loss")  # E: arg-type
                run.log_metrics({"loss": 1.0}, step="1")  # E: arg-type
                run.log_metrics({1: 1.0})  # E: dict-item
                run.add_tags(5)  # E: arg-type
                run.log_metric({"loss": 1.0})  # E: attr-defined
            state: engine.Series = tracker.get_run("r1")  # E: assignment
            runs: engine.RunState = tracker.list_runs()  # E: assignment
            tracker.list_runs(order=["-created_at"])  # E: call-arg
            tracker.get_run("r1", 10)  # E: call-arg
            tracker.read_series("r1")  # E: call-arg
            tracker.subscribe(from_position="begin")  # E: arg-type
            tracker.read_series("r1", "loss", as_of="yesterday")  # E: arg-type
            tracker.edit_run("r1").log_metrics({"score": 1.0})  # E: attr-defined
            name: int = tracker.get_run("r1").name  # E: assignment
    """,
    "async_mistakes": """
        import engine


        async def forgot(url: str) -> None:
            async with engine.connect(url, durabilty="full") as tracker:  # E: call-arg
                state: engine.RunState = tracker.get_run("r1")  # E: assignment
                with tracker.start_run() as run:  # E: attr-defined
                    pass
                async with tracker.start_run() as live:
                    live.log_metrics({"loss": "high"}, step=None)
                    live.log_metrics([("loss", 1.0)])  # E: arg-type
                    live.flush()  # E: unused-coroutine
    """,
}
# A string metric value is refused at run time, not by its type: the values of a metrics dict
# are typed loosely so that NumPy and tensor scalars are accepted (``async_mistakes`` shows it).

_EXPECTED = re.compile(r"#\s*E:\s*([\w-]+(?:\s*,\s*[\w-]+)*)\s*$")
_ERROR = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[\w-]+)\]$")


def expected_errors(source: str) -> set[tuple[int, str]]:
    out = set()
    for number, line in enumerate(source.splitlines(), start=1):
        match = _EXPECTED.search(line)
        if match:
            out |= {(number, code.strip()) for code in match.group(1).split(",")}
    return out


@pytest.fixture(scope="module")
def mypy_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mypy's settings for the snippets, with its cache in the test's temporary directory."""
    work = tmp_path_factory.mktemp("typing")
    config = work / "mypy.ini"
    config.write_text(textwrap.dedent(f"""\
        [mypy]
        strict = True
        python_version = 3.11
        mypy_path = {ROOT}
        cache_dir = {work / "cache"}
        # The engine is read for its types, and checked by `make lint`, not here.
        follow_imports = silent
    """))
    return config


@pytest.fixture(scope="module")
def mypy_errors(mypy_config: Path) -> dict[str, set[tuple[int, str]]]:
    """One mypy run over every snippet: each snippet's errors, as (line, code)."""
    files = []
    for name, source in SNIPPETS.items():
        path = mypy_config.parent / f"{name}.py"
        path.write_text(textwrap.dedent(source).lstrip("\n"))
        files.append(str(path))
    stdout, stderr, _ = mypy.api.run(["--config-file", str(mypy_config), "--show-error-codes",
                                      "--no-error-summary", "--no-pretty", *files])
    assert not stderr, stderr
    errors: dict[str, set[tuple[int, str]]] = {name: set() for name in SNIPPETS}
    for line in stdout.splitlines():
        if ": note: " in line:
            continue
        match = _ERROR.match(line)
        assert match, f"unexpected mypy output: {line}"
        errors[Path(match["file"]).stem].add((int(match["line"]), match["code"]))
    return errors


@pytest.mark.parametrize("name", list(SNIPPETS))
def test_snippet_type_checks_as_expected(name: str,
                                         mypy_errors: dict[str, set[tuple[int, str]]]) -> None:
    wanted = expected_errors(textwrap.dedent(SNIPPETS[name]).lstrip("\n"))
    assert bool(wanted) == name.endswith("_mistakes")  # marks lost would pass vacuously
    assert mypy_errors[name] == wanted


def test_the_stub_of_the_compiled_hot_path_matches_it(capsys: pytest.CaptureFixture[str],
                                                      tmp_path: Path) -> None:
    from engine._runtime import hot_path

    if not hot_path.COMPILED:
        pytest.skip("the C extension was not built")
    # Only the stub is compared: skipping its package's imports keeps this to seconds.
    config = tmp_path / "mypy.ini"
    config.write_text(f"[mypy]\nmypy_path = {ROOT}\nfollow_imports = skip\n")
    options = mypy.stubtest.parse_options(
        ["engine._runtime._speedups", "--mypy-config-file", str(config)])
    assert mypy.stubtest.test_stubs(options) == 0, capsys.readouterr().out


def test_the_type_information_ships_with_the_package() -> None:
    with open(ROOT / "pyproject.toml", "rb") as f:
        package_data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["engine"]
    for name in ("py.typed", "_runtime/_speedups.pyi"):
        assert name in package_data
        assert (ROOT / "engine" / name).is_file()
