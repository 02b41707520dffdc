"""Kittiwake side by side with the trackers people use today, in one run.

``make bench-compare`` runs this file with the project's interpreter. It

1. creates (or reuses) the peers' virtual environment ``bench/.peers/venv`` from
   ``requirements-peers.txt`` — the peers never enter the project's environment;
2. runs every workload of every library in a fresh process (``work_*.py``), each with its
   own temporary data directory under ``bench/.peers/data`` (on the same disk as the
   repository), deleted afterwards;
3. writes ``bench/compare/results.json``, the plot ``docs/ingest-comparison.png`` (matplotlib
   in the peers' environment) and ``docs/comparison.md``.

``--only kittiwake,sqlite3`` (libraries) or ``--phases w5`` (workloads) runs a subset and
writes ``bench/.peers/partial-results.json`` only, leaving the committed results and docs
alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PEERS = ROOT / "bench" / ".peers"
PEERS_VENV = PEERS / "venv"
PEERS_PYTHON = PEERS_VENV / "bin" / "python"
DATA = PEERS / "data"
REQUIREMENTS = HERE / "requirements-peers.txt"
RESULTS = HERE / "results.json"
PARTIAL = PEERS / "partial-results.json"
DOC = ROOT / "docs" / "comparison.md"
PLOT = ROOT / "docs" / "ingest-comparison.png"

MAX_REPS = 3
REP_BUDGET = 40.0  # seconds of one cell after which no further repetition is started
TIMEOUT = 1200.0  # seconds one worker process may take

NO_SERVER_READ = ("its documented reading API (`wandb.Api()`) asks the W&B server; an "
                  "offline run reaches it only after `wandb sync`, and the Python package "
                  "has no reader for the local `.wandb` file")
NO_SERVER_QUERY = ("run queries (`wandb.Api().runs(filters=..., order=...)`) run on the W&B "
                   "server only")
NEPTUNE_NO_READ = ("Neptune's readers (neptune-query, formerly neptune-fetcher) fetch from "
                   "the Neptune server only; offline data is a queue for `neptune sync`")


@dataclass(frozen=True)
class Library:
    """One row group of the tables: a tracker or a baseline and the workloads it runs."""

    key: str
    name: str
    kind: str  # "kittiwake", "peer" or "baseline"
    script: str
    peers_env: bool
    distribution: str
    w1: tuple[tuple[str, str], ...]  # (workload, label); W2 and W4 read the first one's data
    w2: str | None = None
    w3_create: tuple[tuple[str, str], ...] = ()  # the query reads the first one's data
    w3_query: str | None = None
    w4: str | None = None
    w5: tuple[tuple[str, str], ...] = ()  # W1's points through a tracking server
    unavailable: dict[str, str] = field(default_factory=dict)


LIBRARIES: tuple[Library, ...] = (
    Library("kittiwake", "Kittiwake", "kittiwake", "work_kittiwake.py", False, "kittiwake",
            w1=(("w1", "Kittiwake (async API)"), ("w1-sync", "Kittiwake (sync facade)")),
            w2="w2",
            w3_create=(("w3-create", "Kittiwake (50 runs at a time)"),
                       ("w3-create-seq", "Kittiwake (one run at a time)")),
            w3_query="w3-query", w4="w4",
            w5=(("w5-remote", "Kittiwake (`kittiwake serve`, remote tracker)"),)),
    Library("sqlite3", "sqlite3 baseline", "baseline", "work_baselines.py", False, "sqlite3",
            w1=(("w1-sqlite", "sqlite3 executemany, one transaction"),),
            w2="w2-sqlite",
            w3_create=(("w3-create-sqlite", "sqlite3 executemany, one transaction"),),
            w3_query="w3-query-sqlite"),
    Library("orjson", "orjson baseline", "baseline", "work_baselines.py", False, "orjson",
            w1=(("w1-orjson", "orjson lines, one fsync"),),
            w2="w2-orjson",
            w3_create=(("w3-create-orjson", "orjson lines, one fsync"),),
            w3_query="w3-query-orjson"),
    Library("trackio", "trackio", "peer", "work_trackio.py", True, "trackio",
            w1=(("w1", "trackio"),), w2="w2",
            w3_create=(("w3-create", "trackio"),), w3_query="w3-query"),
    Library("wandb", "wandb (offline)", "peer", "work_wandb.py", True, "wandb",
            w1=(("w1", "wandb (offline)"),),
            w3_create=(("w3-create", "wandb (offline)"),),
            unavailable={"w2": NO_SERVER_READ, "w3-query": NO_SERVER_QUERY}),
    Library("neptune", "neptune-scale (offline)", "peer", "work_neptune.py", True,
            "neptune-scale",
            w1=(("w1", "neptune-scale (offline)"),),
            w3_create=(("w3-create", "neptune-scale (offline)"),),
            unavailable={"w2": NEPTUNE_NO_READ, "w3-query": NEPTUNE_NO_READ}),
    Library("tensorboardx", "tensorboardX", "peer", "work_tensorboardx.py", True,
            "tensorboardX",
            w1=(("w1", "tensorboardX"),), w2="w2",
            w3_create=(("w3-create", "tensorboardX"),), w3_query="w3-query"),
    Library("mlflow", "MLflow (SQLite store)", "peer", "work_mlflow.py", True, "mlflow",
            w1=(("w1-batch", "MLflow log_batch (1,000 metrics a call)"),
                ("w1", "MLflow log_metrics per step")),
            w2="w2",
            w3_create=(("w3-create", "MLflow"),), w3_query="w3-query",
            w5=(("w5-server", "MLflow (`mlflow server`, REST log-batch)"),)),
    Library("aim", "Aim", "peer", "work_aim.py", True, "aim",
            w1=(("w1", "Aim"),), w2="w2",
            w3_create=(("w3-create", "Aim"),), w3_query="w3-query"),
)


def say(message: str) -> None:
    """Progress on the terminal."""
    print(f"[bench-compare {time.strftime('%H:%M:%S')}] {message}", flush=True)


# The peers' environment ----------------------------------------------------------------------

def _requirements_stamp() -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    return f"{digest} python {platform.python_version()}\n"


def ensure_peers() -> None:
    """Create ``bench/.peers/venv`` and install the pinned peers, unless it already holds
    exactly this requirements file."""
    stamp = PEERS_VENV / ".requirements-stamp"
    want = _requirements_stamp()
    if PEERS_PYTHON.exists() and stamp.exists() and stamp.read_text() == want:
        say(f"peers' environment up to date: {PEERS_VENV.relative_to(ROOT)}")
        return
    say(f"creating the peers' environment {PEERS_VENV.relative_to(ROOT)} (takes a few minutes)")
    if PEERS_VENV.exists():
        shutil.rmtree(PEERS_VENV)
    PEERS.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    # -qq: pip's warnings about this machine's package index settings are noise here.
    pip = [str(PEERS_PYTHON), "-m", "pip", "install", "-qq", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(want)
    say("peers installed")


def peer_versions() -> dict[str, str]:
    """Every distribution in the peers' environment with its version."""
    found = subprocess.run([str(PEERS_PYTHON), "-m", "pip", "list", "--format=json",
                            "--disable-pip-version-check"],
                           check=True, capture_output=True, text=True).stdout
    return {p["name"]: p["version"] for p in json.loads(found)}


# Machine -------------------------------------------------------------------------------------

def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _mount_of(path: Path) -> tuple[str, str, str]:
    best = ("?", "?", "?")
    length = -1
    for line in _read("/proc/mounts").splitlines():
        device, point, fstype, *_ = line.split()
        if str(path).startswith(point) and len(point) > length:
            best, length = (device, point, fstype), len(point)
    return best


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    mem_kib = next((int(line.split()[1]) for line in _read("/proc/meminfo").splitlines()
                    if line.startswith("MemTotal:")), 0)
    DATA.mkdir(parents=True, exist_ok=True)
    device, point, fstype = _mount_of(DATA.resolve())
    usage = shutil.disk_usage(DATA)
    block = Path(device).name
    rotational = _read(f"/sys/block/{block}/queue/rotational").strip()
    peers_python = subprocess.run([str(PEERS_PYTHON), "-c", "import sys; print(sys.version)"],
                                  check=True, capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kib / 2**20, 1),
        "python_project": sys.version.split()[0],
        "python_peers": peers_python.split()[0],
        "os": f"{platform.system()} {platform.release()}",
        "disk": {"device": device, "mount": point, "fstype": fstype,
                 "size_gib": round(usage.total / 2**30), "rotational": rotational or "?"},
        "loadavg_start": _read("/proc/loadavg").split()[:3],
    }


def _busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (all cores)."""
    fields = [float(v) for v in _read("/proc/stat").split("\n", 1)[0].split()[1:]]
    if len(fields) < 5:
        return 0.0
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds this process and its finished children have used."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def kittiwake_source() -> dict[str, Any]:
    """Which Kittiwake was measured: the commit, and whether engine/ had local changes."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else "?"
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "engine_modified": bool(git("status", "--porcelain", "--", "engine"))}


# Running workers -----------------------------------------------------------------------------

def _env(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        # Everything a library writes stays in the workload's directory.
        "TMPDIR": str(data_dir),
        "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(data_dir),
        "WANDB_CONFIG_DIR": str(data_dir / ".wandb-config"),
        "WANDB_CACHE_DIR": str(data_dir / ".wandb-cache"),
        "TRACKIO_DIR": str(data_dir), "NEPTUNE_MODE": "offline",
        "MPLCONFIGDIR": str(data_dir / ".matplotlib"),
        # No network here: a library waiting for a telemetry endpoint would time its
        # timeout, not its work.
        "DO_NOT_TRACK": "true", "MLFLOW_DISABLE_TELEMETRY": "true",
        "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    })
    env.pop("PYTHONPATH", None)
    return env


def run_worker(library: Library, workload: str, data_dir: Path) -> dict[str, Any]:
    """Run one workload in a fresh process; returns its RESULT (or an ``error``)."""
    python = PEERS_PYTHON if library.peers_env else Path(sys.executable)
    command = [str(python), str(HERE / library.script), workload, str(data_dir)]
    started = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=data_dir, env=_env(data_dir), capture_output=True,
                              text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {TIMEOUT:.0f} s"}
    wall = time.perf_counter() - started
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {done.returncode}: " + " | ".join(tail)[-600:]}
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    result["wall_seconds"] = round(wall, 3)
    if "error" in result:
        say(f"  {library.key} {workload}: {result['error']}")
    return result


def _new_dir(tag: str) -> Path:
    DATA.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{tag}-", dir=DATA))


def _drop(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)


def _summarize(library: Library, phase: str, workload: str, label: str,
               reps: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in reps if "error" not in r and "seconds" in r]
    cell: dict[str, Any] = {
        "library": library.key, "name": library.name, "kind": library.kind, "phase": phase,
        "workload": workload, "label": label, "reps": reps, "n": len(good),
        "version": next((r.get("version") for r in good), None),
        "error": next((r["error"] for r in reps if "error" in r), None),
    }
    if good:
        cell["seconds"] = statistics.median(r["seconds"] for r in good)
        for key in ("setup_seconds", "durable_call_seconds", "index_seconds", "disk_mb"):
            values = [r[key] for r in good if key in r]
            if values:
                cell[key] = statistics.median(values)
        cell["peak_rss_mb"] = max(r["peak_rss_mb"] for r in good)
        cell["children_peak_rss_mb"] = max(r.get("children_peak_rss_mb", 0.0) for r in good)
        checks = [r["correct"] for r in good if "correct" in r]
        if checks:
            cell["correct"] = all(checks)
        for key in ("points", "runs", "api", "how", "durable_call", "query_path", "top",
                    "reader_version"):
            if key in good[-1]:
                cell[key] = good[-1][key]
    return cell


def repeat(library: Library, phase: str, workload: str, label: str, *, reps: int,
           keep: bool) -> tuple[dict[str, Any], Path | None]:
    """Run a workload up to ``reps`` times (fewer when one takes long), each in a fresh
    process and directory; returns the summary and, with ``keep``, the last directory."""
    results: list[dict[str, Any]] = []
    spent = 0.0
    kept: Path | None = None
    for rep in range(reps):
        data_dir = _new_dir(f"{library.key}-{workload}")
        result = run_worker(library, workload, data_dir)
        result["rep"] = rep + 1
        results.append(result)
        spent += result.get("wall_seconds", 0.0)
        _drop(kept)
        kept = data_dir
        if "error" in result or spent >= REP_BUDGET:
            break
    if not keep:
        _drop(kept)
        kept = None
    cell = _summarize(library, phase, workload, label, results)
    say(f"  {label} [{phase}]: {_brief(cell)}")
    return cell, kept


def read_repeat(library: Library, phase: str, workload: str, label: str, data_dir: Path,
                reps: int) -> dict[str, Any]:
    """Run a reading workload ``reps`` times on the same data, each in a fresh process."""
    results = []
    for rep in range(reps):
        result = run_worker(library, workload, data_dir)
        result["rep"] = rep + 1
        results.append(result)
        if "error" in result:
            break
    cell = _summarize(library, phase, workload, label, results)
    say(f"  {label} [{phase}]: {_brief(cell)}")
    return cell


def _brief(cell: dict[str, Any]) -> str:
    if cell.get("seconds") is None:
        return f"FAILED {cell.get('error')}"
    text = f"{cell['seconds']:.4f} s (median of {cell['n']})"
    if cell.get("phase") in ("w1", "w5") and cell.get("points"):
        text += f", {cell['points'] / cell['seconds']:,.0f} points/s"
    if "correct" in cell:
        text += ", correct" if cell["correct"] else ", WRONG ANSWER"
    return text


def _unavailable(library: Library, phase: str, reason: str) -> dict[str, Any]:
    return {"library": library.key, "name": library.name, "kind": library.kind,
            "phase": phase, "label": library.name, "unavailable": reason}


PHASES = ("w1", "w2", "w3", "w4", "w5")


def run_library(library: Library, reps: int,
                phases: tuple[str, ...] = PHASES) -> list[dict[str, Any]]:
    """The workloads of one library in ``phases``; W2 and W4 read the data of its first W1
    variant (so either brings W1 along)."""
    say(f"{library.name}")
    cells: list[dict[str, Any]] = []
    primary: Path | None = None
    w1 = library.w1 if {"w1", "w2", "w4"} & set(phases) else ()
    try:
        for index, (workload, label) in enumerate(w1):
            cell, kept = repeat(library, "w1", workload, label, reps=reps, keep=index == 0)
            cells.append(cell)
            if index == 0:
                primary = kept
        if library.w2 and primary is not None:
            cells.append(read_repeat(library, "w2", library.w2, library.name, primary, reps))
        elif "w2" in library.unavailable:
            cells.append(_unavailable(library, "w2", library.unavailable["w2"]))
        if library.w4 and primary is not None:
            cells.append(read_repeat(library, "w4", library.w4, library.name, primary, reps))
    finally:
        _drop(primary)
    w3_data: Path | None = None
    try:
        for index, (workload, label) in enumerate(library.w3_create if "w3" in phases else ()):
            cell, kept = repeat(library, "w3-create", workload, label, reps=reps,
                                keep=index == 0)
            cells.append(cell)
            if index == 0:
                w3_data = kept
        if library.w3_query and w3_data is not None:
            cells.append(read_repeat(library, "w3-query", library.w3_query, library.name,
                                     w3_data, reps))
        elif "w3-query" in library.unavailable:
            cells.append(_unavailable(library, "w3-query", library.unavailable["w3-query"]))
    finally:
        _drop(w3_data)
    for workload, label in library.w5 if "w5" in phases else ():
        cells.append(repeat(library, "w5", workload, label, reps=reps, keep=False)[0])
    return cells


def profile_ingest() -> dict[str, Any] | None:
    """Kittiwake's W1 ingest with its steps timed (``profile_kittiwake.py --timings``)."""
    say("Kittiwake's ingest, step by step (profile_kittiwake.py --timings 10)")
    data_dir = _new_dir("profile")
    try:
        done = subprocess.run([sys.executable, str(HERE / "profile_kittiwake.py"), "--timings",
                               "10"], cwd=data_dir, env=_env(data_dir), capture_output=True,
                              text=True, timeout=TIMEOUT)
    finally:
        _drop(data_dir)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        say(f"  profile failed: {done.stderr.strip()[-300:]}")
        return None
    found: dict[str, Any] = json.loads(lines[-1][len("RESULT "):])
    return found


def main() -> None:
    """Install the peers if needed, run everything, write results, plot and report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated library keys "
                        f"({', '.join(lib.key for lib in LIBRARIES)}); writes partial results")
    parser.add_argument("--phases", help=f"comma-separated workloads ({', '.join(PHASES)}); "
                        "writes partial results")
    parser.add_argument("--reps", type=int, default=MAX_REPS, help="repetitions per workload")
    args = parser.parse_args()
    phases = tuple(args.phases.split(",")) if args.phases else PHASES
    partial = bool(args.only or args.phases)
    chosen = LIBRARIES
    if args.only:
        keys = set(args.only.split(","))
        chosen = tuple(lib for lib in LIBRARIES if lib.key in keys)
    ensure_peers()
    _drop(DATA)  # leftovers of an interrupted run
    started = time.perf_counter()
    busy, own = _busy_seconds(), _own_seconds()
    info: dict[str, Any] = {
        "generated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "make bench-compare" if not partial else
                   " ".join([".venv/bin/python bench/compare/run.py", *sys.argv[1:]]),
        "machine": machine(),
        "kittiwake": kittiwake_source(),
        "peer_versions": peer_versions(),
        "settings": report.settings(),
    }
    cells: list[dict[str, Any]] = []
    for library in chosen:
        cells.extend(run_library(library, args.reps, phases))
    if any(library.key == "kittiwake" for library in chosen) and "w1" in phases:
        info["profile"] = profile_ingest()
    _drop(DATA)
    info["machine"]["loadavg_end"] = _read("/proc/loadavg").split()[:3]
    info["duration_seconds"] = round(time.perf_counter() - started, 1)
    # CPU that other processes used while the comparison ran, in cores on average: the
    # figures are only as good as this is small.
    foreign = (_busy_seconds() - busy) - (_own_seconds() - own)
    info["machine"]["other_load_cores"] = round(max(foreign, 0.0) / info["duration_seconds"], 2)
    info["cells"] = cells
    info["targets"] = report.targets(cells)
    target = PARTIAL if partial else RESULTS
    target.write_text(json.dumps(info, indent=1) + "\n")
    say(f"results: {target.relative_to(ROOT)}")
    if partial:
        return
    plot = subprocess.run([str(PEERS_PYTHON), str(HERE / "plot.py"), str(RESULTS), str(PLOT)],
                          env=_env(Path(tempfile.gettempdir())), capture_output=True, text=True)
    if plot.returncode != 0:
        say(f"plot failed: {plot.stderr.strip()[-500:]}")
    DOC.write_text(report.markdown(info, PLOT.relative_to(DOC.parent).as_posix()))
    say(f"report: {DOC.relative_to(ROOT)}, plot: {PLOT.relative_to(ROOT)}; "
        f"{info['duration_seconds']:.0f} s in all")
    for line in report.target_lines(info["targets"]):
        say(line)


if __name__ == "__main__":
    main()
