"""Mutation testing of the modules where a wrong line loses data: would the tests notice?

    .venv/bin/python -m bench.mutants                        # every module, 30 mutants each
    .venv/bin/python -m bench.mutants --per-module 60 query  # one module, more mutants
    make mutants

Cosmic Ray lists every mutation of a module (an operator swapped, a condition negated, a
constant changed, a loop that never runs, a ``break`` for a ``continue``, …); this script
takes a random sample of the places it can mutate — one mutation per place, so that a line
with eleven ways to swap a ``+`` does not count eleven times — applies each in turn and runs
*the tests of that module* (not the whole suite, so a run ends in bounded time). A mutant the
tests fail on is killed; one they pass with survived. The score is killed / tried.

Everything runs in a copy of the working tree in a temporary directory: the checkout is never
mutated, even when the run is interrupted. Before the sample, the named mutants below — the
changes that once passed the whole suite — are applied by hand and must each be killed.

The tests run niced and on SQLite only (PostgreSQL, the remote backend, slow and browser tests
left out): a mutant those kill, the SQLite tests nearly always kill too, and the run stays
within about an hour and a half (``--minutes`` per target bounds it). The figures and the
survivors are in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARKERS = "not postgres and not remote and not slow and not browser"


@dataclass(frozen=True)
class Target:
    """Modules to mutate, and the tests that are theirs."""

    modules: tuple[str, ...]
    tests: tuple[str, ...]


TARGETS: dict[str, Target] = {
    "writer": Target(
        ("engine/_runtime/writer.py", "engine/_runtime/buffer.py"),
        ("tests/runtime/test_robustness.py", "tests/storage/test_disk_failures.py",
         "tests/runtime/test_lifecycle.py", "tests/runtime/test_creating.py",
         "tests/storage/test_sqlite.py")),
    "commit": Target(
        ("engine/_storage/commit.py", "engine/_storage/sqlite/commit.py"),
        ("tests/storage/test_sqlite.py",)),  # the store contract, on SQLite
    "subscriptions": Target(
        ("engine/_runtime/subscriptions.py",),
        ("tests/runtime/test_subscribe.py", "tests/runtime/test_subscribe_props.py",
         "tests/runtime/test_subscribe_processes.py")),
    "rebuild": Target(
        ("engine/_storage/rebuild.py",),
        ("tests/storage/test_rebuild.py", "tests/cli/test_check.py",
         "tests/storage/test_sqlite.py")),
    "query": Target(
        ("engine/_query/sql.py",),
        ("tests/query/test_sql.py", "tests/query/test_props.py")),
}


@dataclass(frozen=True)
class Named:
    """A mutant written out by hand: ``old`` replaced by ``new`` in ``module``, and the
    tests that must fail on it."""

    name: str
    module: str
    old: str
    new: str
    tests: tuple[str, ...]


NAMED = (
    Named("the writer drops a failed batch instead of keeping it",
          "engine/_runtime/writer.py",
          "                buf.inflight = failed\n", "                buf.inflight = []\n",
          ("tests/storage/test_disk_failures.py::"
           "test_a_full_disk_keeps_every_point_and_writes_them_once_there_is_room",
           "tests/storage/test_sqlite.py::TestSqliteFile::"
           "test_a_failing_store_drops_nothing_and_flush_says_so_until_it_heals")),
    Named("a read takes the log's head apart from its page (another connection appending)",
          "engine/_storage/reads.py",
          "        head = rows[0][0]\n", "        head = await self.head()\n",
          ("tests/storage/test_sqlite.py::TestSqliteFile::"
           "test_a_read_covers_no_position_it_did_not_return",)),
    Named("verify_rebuild() reports nothing",
          "engine/_storage/split.py",
          "        return await build(self.rebuild_site(), CHECK, None)\n",
          "        await build(self.rebuild_site(), CHECK, None)\n        return []\n",
          ("tests/storage/test_sqlite.py::TestSqliteFile::"
           "test_verify_rebuild_names_each_table_that_differs",)),
    Named("a config text spliced into SQL as an escaped literal",
          "engine/_query/sql.py",
          "c.txt = {self.bind(value)}\"\n",
          "c.txt = '\" + value.replace(\"'\", \"''\") + \"'\"\n",
          ("tests/query/test_sql.py::"
           "test_every_text_literal_is_bound_for_every_field_and_operator",)),
    Named("durability=\"full\" syncs no more than \"normal\" (caught by simulated power loss)",
          "engine/_storage/sqlite/store.py",
          "self.synchronous = \"FULL\" if durability == \"full\" else \"NORMAL\"",
          "self.synchronous = \"NORMAL\"",
          ("tests/test_power_loss.py::"
           "test_a_few_power_losses_on_each_durability_keep_the_promise",)),
)


@dataclass
class Score:
    target: str
    tried: int = 0
    killed: int = 0
    timeouts: int = 0
    seconds: float = 0.0
    survivors: list[str] = field(default_factory=list)


def pytest_command(tests: Sequence[str], timeout: int, *, markers: str = MARKERS) -> str:
    return shlex.join(["nice", "-n", "10", sys.executable, "-m", "pytest", "-x", "-q",
                       "-p", "no:cacheprovider", f"--timeout={timeout}", "-m", markers,
                       *tests])


def copy_tree(into: Path) -> None:
    """The working tree's files (tracked ones, as they are now) and the built speedups."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    files += [str(p.relative_to(ROOT)) for p in (ROOT / "engine").rglob("*.so")]
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)


def run_tests(command: str, timeout: float) -> tuple[bool, str]:
    """Whether the tests passed, and the tail of what they printed."""
    from cosmic_ray.testing import run_tests as cosmic_run
    from cosmic_ray.work_item import TestOutcome

    outcome, output = cosmic_run(command, timeout)
    return outcome == TestOutcome.SURVIVED, str(output)[-1500:]


def check_named(workdir: Path) -> list[str]:
    """Apply each named mutant and run its tests; the names of those that survived."""
    tests = [test for mutant in NAMED for test in mutant.tests]
    passed, output = run_tests(pytest_command(tests, 300, markers=""), 1800)
    if not passed:  # else a mutant would look killed by tests that fail anyway
        raise SystemExit(f"the named mutants' tests fail before any mutation:\n{output}")
    survived = []
    for mutant in NAMED:
        path = workdir / mutant.module
        original = path.read_text()
        if original.count(mutant.old) != 1:
            survived.append(f"{mutant.name}: the line to mutate is no longer in "
                            f"{mutant.module}; update bench/mutants.py")
            continue
        path.write_text(original.replace(mutant.old, mutant.new))
        try:
            passed, output = run_tests(pytest_command(mutant.tests, 300, markers=""), 900)
        finally:
            path.write_text(original)
        print(json.dumps({"named": mutant.name, "killed": not passed}), flush=True)
        if passed:
            survived.append(f"{mutant.name}\n{output}")
    return survived


def sample(target: Target, count: int, rng: random.Random) -> list[object]:
    """``count`` places of ``target``'s modules, one random mutation at each."""
    from cosmic_ray.commands.init import _all_work_items

    sites: dict[tuple[str, tuple[int, int]], list[object]] = {}
    for item in _all_work_items([Path(m) for m in target.modules], {}):
        mutation = item.mutations[0]
        sites.setdefault((str(mutation.module_path), mutation.start_pos), []).append(mutation)
    places = sorted(sites)
    chosen = rng.sample(places, min(count, len(places)))
    return [rng.choice(sites[place]) for place in sorted(chosen)]


def describe(mutation: object, diff: str) -> str:
    """One line: where, which operator, and the changed line."""
    changed = [line[1:].strip() for line in diff.splitlines()
               if line.startswith("+") and not line.startswith("+++")]
    spec = mutation
    return (f"{spec.module_path}:{spec.start_pos[0]} "  # type: ignore[attr-defined]
            f"{spec.operator_name.removeprefix('core/')}: "  # type: ignore[attr-defined]
            f"{changed[0] if changed else '?'}")


def mutate(name: str, count: int, rng: random.Random, minutes: float) -> Score:
    from cosmic_ray.mutating import mutate_and_test
    from cosmic_ray.work_item import TestOutcome

    target = TARGETS[name]
    score = Score(name)
    start = time.perf_counter()
    baseline = time.perf_counter()
    passed, output = run_tests(pytest_command(target.tests, 300), 1800)
    if not passed:
        raise SystemExit(f"{name}: the tests fail before any mutation:\n{output}")
    budget = max(60.0, 3 * (time.perf_counter() - baseline))
    for mutation in sample(target, count, rng):
        if time.perf_counter() - start > 60 * minutes:
            break  # the sample is cut short: the score is over the mutants tried
        result = mutate_and_test([mutation], pytest_command(target.tests, int(budget)), budget)
        if result.test_outcome is None:
            continue  # no mutation possible there after all
        score.tried += 1
        if result.test_outcome == TestOutcome.SURVIVED:
            score.survivors.append(describe(mutation, result.diff or ""))
        else:
            score.killed += 1
            score.timeouts += result.output == "timeout"
        print(json.dumps({"target": name, "tried": score.tried, "killed": score.killed}),
              flush=True)
    score.seconds = time.perf_counter() - start
    return score


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", choices=[[], *TARGETS], default=[])
    parser.add_argument("--per-module", type=int, default=30,
                        help="places mutated per target (default 30)")
    parser.add_argument("--minutes", type=float, default=15.0,
                        help="stop trying a target's mutants after this long (default 15)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--skip-named", action="store_true",
                        help="leave out the check of the named mutants")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    print(json.dumps({"seed": seed}), flush=True)
    failed = False
    with tempfile.TemporaryDirectory(prefix="kw-mutants-") as tmp:
        workdir = Path(tmp)
        copy_tree(workdir)
        os.chdir(workdir)  # cosmic-ray mutates paths relative to here: the copy
        # Processes the tests start (a server, a killed writer) import the copy too.
        os.environ["PYTHONPATH"] = str(workdir)
        if not args.skip_named:
            survived = check_named(workdir)
            for line in survived:
                print(f"  NAMED MUTANT SURVIVED: {line}", flush=True)
            failed = bool(survived)
        for name in args.targets or list(TARGETS):
            score = mutate(name, args.per_module, random.Random(f"{seed}-{name}"),
                           args.minutes)
            print(json.dumps({"target": name, "modules": TARGETS[name].modules,
                              "tried": score.tried, "killed": score.killed,
                              "timeouts": score.timeouts,
                              "score": round(score.killed / max(score.tried, 1), 3),
                              "seconds": round(score.seconds)}), flush=True)
            for line in score.survivors:
                print(f"  SURVIVED {line}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
