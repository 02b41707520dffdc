"""kill -9 at random instants, over and over, and after each one: was anything lost?

    .venv/bin/python -m bench.torture                       # every scenario, 1,000 trials in all
    .venv/bin/python -m bench.torture --trials 50 sqlite    # one scenario, 50 trials
    make torture

Each trial starts a child process that works without pause — a writer that logs and reports
each step once ``flush()`` confirmed it, or a rebuild of the projections — and kills it with
SIGKILL at a random instant (a fresh seed per run, printed so a failure can be replayed with
``--seed``). The parent then reopens the database and checks the promise:

- every step a child reported as flushed is there, with its value;
- nothing is written twice: each series' steps are one each, in order;
- the log's positions run 1, 2, 3, … without a gap, and each run's versions likewise;
- the projections equal a rebuild from the log (``check``, which also verifies every event's
  checksum) and the pure fold of the log, run by run;
- the next trial resumes the same runs, so damage that only shows later is caught later.

The ``sqlite-power-loss`` scenario cuts the power instead (``bench/powerloss.py``): each
database file goes back to what its last sync made durable, which a kill cannot show.

A violation prints what broke and the seed, and the exit code is 1. The figures (trials,
violations, time) are in docs/reliability.md. ``tests/test_torture.py`` runs a few trials of
each scenario in the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import engine
from bench.remote import free_port, start_server
from engine._core.fold import Fold

POSTGRES = os.environ.get("KITTIWAKE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
RUNS = ("victim-0", "victim-1", "victim-2")

# The writer: three runs, resumed where the last trial left them, each step flushed and then
# reported on stdout as "run step". Configs and tags change as it goes, so the projections of
# more than metrics are at stake when it dies.
WRITER = textwrap.dedent("""
    import asyncio, contextlib, random, sys
    import engine

    async def main(url, durability, seed, spool, flushes):
        rng = random.Random(seed)
        settings = {"spool": spool} if spool else {}
        async with engine.connect(url, durability=durability, **settings) as tracker, \\
                contextlib.AsyncExitStack() as stack:
            runs = {}
            steps = {}
            for run_id in %r:
                run = await stack.enter_async_context(tracker.start_run(run_id, resume=True))
                state = await tracker.get_run(run_id)
                last = state.metrics.get("m")
                runs[run_id] = run
                steps[run_id] = 0 if last is None else int(last.last_step) + 1
            while flushes:
                flushes -= 1
                run_id = rng.choice(list(runs))
                run, step = runs[run_id], steps[run_id]
                for k in range(rng.randint(1, 200)):
                    run.log_metrics({"m": float(step + k), "n": -float(step + k)},
                                    step=step + k)
                if rng.random() < 0.1:
                    run.log_configs({"at": step, "seed": seed})
                if rng.random() < 0.05:
                    run.add_tags(f"t{step %% 7}")
                steps[run_id] = step + k + 1
                await run.flush()
                print(run_id, step + k, flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]),
                     sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] else None,
                     int(sys.argv[5]) if len(sys.argv) > 5 else -1))
""") % (RUNS,)

# The uploader: files of random sizes (some the same bytes again), each reported once
# ``flush()`` confirmed the event that names it, as "file key step sha256:...".
UPLOADER = textwrap.dedent("""
    import asyncio, hashlib, os, random, sys
    import engine

    async def main(url, seed):
        rng = random.Random(seed)
        async with engine.connect(url, durability="full") as tracker:
            async with tracker.start_run("uploads", resume=True) as run:
                done = await tracker.read_files("uploads", "f")
                step = int(done[-1].step) + 1 if done else 0
                print("open", flush=True)
                while True:
                    size = rng.choice([10, 1_000, 100_000, 3_000_000])
                    data = os.urandom(size) if rng.random() < 0.8 else b"same" * (size // 4)
                    run.log_files({"f": data}, step=step)
                    await run.flush()
                    print("file", "f", step, "sha256:" + hashlib.sha256(data).hexdigest(),
                          flush=True)
                    step += 1

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
""")

REBUILDER = textwrap.dedent("""
    import asyncio, sys
    import engine

    async def main(url):
        async with engine.connect(url) as tracker:
            print("open", flush=True)
            while True:
                await tracker.rebuild_projections()

    asyncio.run(main(sys.argv[1]))
""")


@dataclass
class Outcome:
    """What one scenario's trials found."""

    scenario: str
    trials: int = 0
    violations: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Ledger:
    """What the children reported as flushed: the highest step per run, across trials."""

    flushed: dict[str, int] = field(default_factory=dict)

    def take(self, lines: str) -> None:
        for line in lines.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in RUNS:
                self.flushed[parts[0]] = max(self.flushed.get(parts[0], -1), int(parts[1]))


def _failure(exc: Exception) -> str:
    """A trial whose check raised: the error and where, so that it can be found."""
    import traceback

    return f"{type(exc).__name__}: {exc}\n{''.join(traceback.format_tb(exc.__traceback__))}"


def _kill_child(argv: list[str], rng: random.Random, *, longest: float,
                env: dict[str, str] | None = None) -> str:
    """Start ``argv`` (in ``env``), wait for its first line, kill -9 it at a random instant
    up to ``longest`` seconds later; everything it printed."""
    child = subprocess.Popen([sys.executable, "-c", *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None and child.stderr is not None
    try:
        first = child.stdout.readline()
        if not first:
            raise RuntimeError(f"the child died before it began: {child.stderr.read()[-2000:]}")
        time.sleep(rng.uniform(0.0, longest))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
        return first + child.stdout.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()


async def verify(url: str, ledger: Ledger) -> list[str]:
    """Every way the database can break the promise, as one line each (empty: kept)."""
    broken: list[str] = []
    async with engine.connect(url, durability="normal") as tracker:
        positions: list[int] = []
        versions: dict[str, int] = {}
        fold = Fold()
        async for event in tracker.events():
            positions.append(event.position)
            if event.version != versions.get(event.run_id, 0) + 1:
                broken.append(f"run {event.run_id}: version {event.version} after "
                              f"{versions.get(event.run_id, 0)}")
            versions[event.run_id] = event.version
            fold.apply(event)
        if positions != list(range(1, len(positions) + 1)):
            broken.append("the log's positions have a gap or a repeat")
        broken += [f"check: {finding}" for finding in await tracker.check()]
        for run_id, last in sorted(ledger.flushed.items()):
            series = await tracker.read_series(run_id, "m")
            steps = [int(s) for s in series.steps]
            if steps != list(range(len(steps))):
                broken.append(f"run {run_id}: steps have a gap or a duplicate")
            if len(steps) <= last:
                broken.append(f"run {run_id}: step {last} was flushed, then lost "
                              f"({len(steps)} steps remain)")
            if list(series.values) != [float(s) for s in steps]:
                broken.append(f"run {run_id}: a value differs from the one logged")
            state = await tracker.get_run(run_id)
            expected = fold.run_state(tracker.project, run_id)
            if state != expected:
                differ = [name for name in state.__dataclass_fields__
                          if getattr(state, name) != getattr(expected, name)]
                broken.append(f"run {run_id}: the projections differ from the fold in "
                              f"{', '.join(differ)}")
            if not series.same_as(fold.series(tracker.project, run_id, "m")):
                broken.append(f"run {run_id}: the series differs from the fold's")
    return broken


# A database serves this many trials before the next one starts afresh: the checks read the
# whole database, so one that grew through every trial would make the run quadratic.
TRIALS_PER_DATABASE = 20


def _database(url: str | Callable[[], str], trial: int) -> str | None:
    """The database trial ``trial`` starts afresh on, or None when it goes on with the last:
    a new one from ``url`` when it makes them, else the file ``url`` emptied."""
    if trial % TRIALS_PER_DATABASE:
        return None
    if callable(url):
        return url()
    if trial:
        for old in Path(url).parent.glob(Path(url).name + "*"):
            old.unlink()
    return url


def _writer_trials(url: str | Callable[[], str], trials: int, rng: random.Random,
                   durability: str, outcome: Outcome) -> None:
    ledger = Ledger()
    for trial in range(trials):
        database = _database(url, trial)
        if database is not None:
            current, ledger = database, Ledger()
        seed = rng.randrange(2**32)
        try:
            ledger.take(_kill_child([WRITER, current, durability, str(seed)], rng,
                                    longest=0.5))
            broken = asyncio.run(verify(current, ledger))
        except Exception as exc:  # a trial that cannot even be checked is a violation too
            broken = [_failure(exc)]
        outcome.trials += 1
        outcome.violations += [f"seed {seed}: {line}" for line in broken]


def _rebuild_trials(url: str, trials: int, rng: random.Random, outcome: Outcome) -> None:
    # The database is filled by a writer that ends its runs: runs left running would break
    # their heartbeat promise during the trials, and a reaper's crash records are not what
    # this scenario is about.
    ledger = Ledger()
    filled = subprocess.run([sys.executable, "-c", WRITER, url, "normal", "1", "", "40"],
                            capture_output=True, text=True, timeout=600, check=True)
    ledger.take(filled.stdout)
    for _ in range(trials):
        seed = rng.randrange(2**32)
        try:
            _kill_child([REBUILDER, url], random.Random(seed), longest=0.8)
            broken = asyncio.run(verify(url, ledger))
            broken += asyncio.run(_leftovers(url))
        except Exception as exc:
            broken = [_failure(exc)]
        outcome.trials += 1
        outcome.violations += [f"seed {seed}: {line}" for line in broken]


async def _leftovers(url: str) -> list[str]:
    """Tables a killed rebuild left beside the live ones, once the database was reopened."""
    if "://" in url:
        import asyncpg

        base, _, schema = url.partition("?search_path=")
        connection = await asyncpg.connect(base)
        try:
            rows = await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE "
                "'%\\_\\_new'", schema)
        finally:
            await connection.close()
        names = [row[0] for row in rows]
    else:
        import sqlite3

        with sqlite3.connect(url) as db:
            names = [row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE "
                "'%\\_\\_new' ESCAPE '\\'")]
    return [f"a killed rebuild left {name}" for name in names]


def _postgres_url() -> str:
    import uuid

    schema = f"kw_torture_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    return f"{POSTGRES}?search_path={schema}"


def _drop_schema(url: str) -> None:
    import asyncpg

    async def drop() -> None:
        base, _, schema = url.partition("?search_path=")
        connection = await asyncpg.connect(base)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()

    asyncio.run(drop())


def _server_trials(workdir: Path, trials: int, rng: random.Random, outcome: Outcome) -> None:
    """The server is killed at a random instant under a writer's load (the writer, which
    can no longer flush, is killed next); what the server confirmed must be in its
    database."""
    ledger = Ledger()
    db = str(workdir / "served.db")
    for trial in range(trials):
        if trial % TRIALS_PER_DATABASE == 0:
            for old in workdir.glob("served.db*"):
                old.unlink()
            ledger = Ledger()
        seed = rng.randrange(2**32)
        port = free_port()
        try:
            server = start_server(db, port)
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITER, f"http://127.0.0.1:{port}", "full", str(seed)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            assert writer.stdout is not None
            first = writer.stdout.readline()
            if not first:
                raise RuntimeError("the writer died before it began")
            time.sleep(rng.uniform(0.0, 0.5))
            os.kill(server.pid, signal.SIGKILL)
            server.wait(timeout=60)
            time.sleep(0.2)  # answers already on the wire reach the writer
            os.kill(writer.pid, signal.SIGKILL)
            writer.wait(timeout=60)
            ledger.take(first + writer.stdout.read())
            writer.stdout.close()
            assert writer.stderr is not None
            writer.stderr.close()
            broken = asyncio.run(verify(db, ledger))
        except Exception as exc:
            broken = [_failure(exc)]
        outcome.trials += 1
        outcome.violations += [f"seed {seed}: {line}" for line in broken]


def _spool_trials(workdir: Path, trials: int, rng: random.Random, outcome: Outcome) -> None:
    """A remote writer with a spool is killed at a random instant; ``kittiwake sync`` then
    sends what its spool kept. What it reported as flushed must be on the server, once."""
    from engine._client.sync import sync

    db = str(workdir / "spooled.db")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(db, port)
    try:
        ledger = Ledger()
        for trial in range(trials):
            if trial % TRIALS_PER_DATABASE == 0 and trial:
                server.kill()
                server.wait()
                for old in workdir.glob("spooled.db*"):
                    old.unlink()
                server = start_server(db, port)
                ledger = Ledger()
            seed = rng.randrange(2**32)
            spool = str(workdir / f"spool-{trial}.sqlite")
            try:
                ledger.take(_kill_child([WRITER, url, "full", str(seed), spool], rng,
                                        longest=0.5))
                report = asyncio.run(sync(url, spool=spool))
                broken = [] if report.pending == 0 else [f"{report.pending} rows left"]
                broken += asyncio.run(verify(url, ledger))
            except Exception as exc:
                broken = [_failure(exc)]
            outcome.trials += 1
            outcome.violations += [f"seed {seed}: {line}" for line in broken]
    finally:
        server.kill()
        server.wait()


def _upload_trials(url: str | Callable[[], str], trials: int, rng: random.Random,
                   outcome: Outcome) -> None:
    """A process logging files is killed at a random instant: every file it reported reads
    back byte for byte (its digest checked), and the log names no missing bytes."""
    reported: dict[int, str] = {}
    for trial in range(trials):
        database = _database(url, trial)
        if database is not None:
            current, reported = database, {}
        seed = rng.randrange(2**32)
        try:
            for line in _kill_child([UPLOADER, current, str(seed)], rng,
                                    longest=0.6).splitlines():
                parts = line.split()
                if parts and parts[0] == "file":
                    reported[int(parts[2])] = parts[3]
            broken = asyncio.run(_verify_uploads(current, reported))
        except Exception as exc:
            broken = [_failure(exc)]
        outcome.trials += 1
        outcome.violations += [f"seed {seed}: {line}" for line in broken]


async def _verify_uploads(url: str, reported: dict[int, str]) -> list[str]:
    import hashlib

    broken: list[str] = []
    async with engine.connect(url, durability="normal") as tracker:
        refs = {int(ref.step): ref for ref in await tracker.read_files("uploads", "f")}
        for step, digest in sorted(reported.items()):
            ref = refs.get(step)
            if ref is None:
                broken.append(f"file step {step} was flushed, then lost")
                continue
            if ref.digest != digest:
                broken.append(f"file step {step} names {ref.digest}, not {digest}")
            data = await tracker.read_file(ref)
            if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                broken.append(f"file step {step} reads back other bytes")
        broken += [f"check: {finding}" for finding in await tracker.check()]
    return broken


def server_kill(trials: int, rng: random.Random, workdir: Path) -> Outcome:
    """(c) the server process, under a writer's load."""
    outcome = Outcome("server")
    _server_trials(workdir, trials, rng, outcome)
    return outcome


def spool_client(trials: int, rng: random.Random, workdir: Path) -> Outcome:
    """(d) a remote writer with a spool."""
    outcome = Outcome("spool")
    _spool_trials(workdir, trials, rng, outcome)
    return outcome


def sqlite_upload(trials: int, rng: random.Random, workdir: Path) -> Outcome:
    """(f) a process uploading files, on SQLite (bytes in the run database)."""
    outcome = Outcome("sqlite-upload")
    _upload_trials(str(workdir / "files.db"), trials, rng, outcome)
    return outcome


def sqlite_writer(trials: int, rng: random.Random, workdir: Path) -> Outcome:
    """(a) an embedded writer on SQLite, both durabilities."""
    outcome = Outcome("sqlite-writer")
    for durability in ("full", "normal"):
        share = (trials + 1) // 2 if durability == "full" else trials // 2
        if share:
            _writer_trials(str(workdir / f"writer-{durability}.db"), share, rng, durability,
                           outcome)
    return outcome


def postgres_writer(trials: int, rng: random.Random, workdir: Path) -> Outcome:
    """(b) an embedded writer on PostgreSQL."""
    outcome = Outcome("postgres-writer")
    urls: list[str] = []

    def fresh() -> str:
        urls.append(_postgres_url())
        return urls[-1]

    try:
        _writer_trials(fresh, trials, rng, "full", outcome)
    finally:
        for url in urls:
            _drop_schema(url)
    return outcome


def sqlite_rebuild(trials: int, rng: random.Random, workdir: Path) -> Outcome:
    """(e) a rebuild of the projections, on SQLite."""
    outcome = Outcome("sqlite-rebuild")
    _rebuild_trials(str(workdir / "rebuild.db"), trials, rng, outcome)
    return outcome


def postgres_rebuild(trials: int, rng: random.Random, workdir: Path) -> Outcome:
    """(e) a rebuild of the projections, on PostgreSQL."""
    outcome = Outcome("postgres-rebuild")
    url = _postgres_url()
    try:
        _rebuild_trials(url, trials, rng, outcome)
    finally:
        _drop_schema(url)
    return outcome


def sqlite_power_loss(trials: int, rng: random.Random, workdir: Path) -> Outcome:
    """Power loss under a SQLite writer, both durabilities (``bench/powerloss.py``): each
    file back to what its last sync made durable."""
    from bench import powerloss

    outcome = Outcome("sqlite-power-loss")
    outcome.violations, syncs = powerloss.sqlite_power_loss(trials, rng, workdir)
    outcome.trials = trials
    print(json.dumps({"scenario": outcome.scenario, "syncs seen": dict(syncs)}), flush=True)
    return outcome


Scenario = Callable[[int, random.Random, Path], Outcome]

SCENARIOS: dict[str, tuple[Scenario, float]] = {
    # name: (scenario, its share of the trials)
    "sqlite": (sqlite_writer, 0.25),
    "postgres": (postgres_writer, 0.15),
    "server": (server_kill, 0.1),
    "spool": (spool_client, 0.1),
    "sqlite-rebuild": (sqlite_rebuild, 0.1),
    "postgres-rebuild": (postgres_rebuild, 0.1),
    "sqlite-upload": (sqlite_upload, 0.2),
    "sqlite-power-loss": (sqlite_power_loss, 0.2),
}


def run(names: list[str], trials: int, seed: int) -> list[Outcome]:
    """``trials`` in all, shared among the scenarios ``names`` by their weights."""
    weights = {name: SCENARIOS[name][1] for name in names}
    total = sum(weights.values())
    shares = {name: max(1, int(trials * weights[name] / total)) for name in names}
    shares[names[0]] += max(0, trials - sum(shares.values()))
    outcomes = []
    for name in names:
        share = shares[name]
        rng = random.Random(f"{seed}-{name}")
        with tempfile.TemporaryDirectory(prefix="kw-torture-") as workdir:
            start = time.perf_counter()
            outcome = SCENARIOS[name][0](share, rng, Path(workdir))
            outcome.seconds = time.perf_counter() - start
        outcomes.append(outcome)
        print(json.dumps({"scenario": outcome.scenario, "trials": outcome.trials,
                          "violations": len(outcome.violations),
                          "seconds": round(outcome.seconds, 1)}), flush=True)
        for line in outcome.violations:
            print(f"  VIOLATION {outcome.scenario}: {line}", flush=True)
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", choices=[[], *SCENARIOS], default=[])
    parser.add_argument("--trials", type=int, default=1000, help="in all (default 1000)")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(json.dumps({"seed": seed}), flush=True)
    outcomes = run(args.scenarios or list(SCENARIOS), args.trials, seed)
    trials = sum(o.trials for o in outcomes)
    violations = sum(len(o.violations) for o in outcomes)
    seconds = sum(o.seconds for o in outcomes)
    print(json.dumps({"trials": trials, "violations": violations,
                      "seconds": round(seconds, 1)}), flush=True)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
