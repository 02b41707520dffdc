"""Turns the comparison's results into its targets and ``docs/comparison.md``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import _common as c

Cell = dict[str, Any]

INGEST_TARGET = 1_000_000  # points/s
PEER_FACTOR = 10.0  # Kittiwake ingest over the fastest peer
ORJSON_FACTOR = 0.4  # Kittiwake ingest over the orjson baseline
X = "\N{MULTIPLICATION SIGN}"
NONE = "\N{EN DASH}"  # an empty cell


def settings() -> dict[str, Any]:
    """The workloads' sizes, for results.json."""
    return {"metrics": len(c.METRICS), "steps": c.STEPS, "points": c.POINTS,
            "read_metric": c.READ_METRIC, "w3_runs": c.W3_RUNS, "w3_steps": c.W3_STEPS,
            "w3_metrics": list(c.W3_METRICS), "w3_configs": sorted(c.w3_config(0)),
            "w3_filter": f"last m0 > {c.W3_M0_ABOVE} and lr < {c.W3_LR_BELOW}",
            "w3_top": c.W3_TOP, "w3_expected": c.w3_expected()}


# Picking cells -------------------------------------------------------------------------------

def _ok(cell: Cell) -> bool:
    return cell.get("seconds") is not None and cell.get("correct", True) is not False


def _find(cells: Iterable[Cell], phase: str, library: str,
          workload: str | None = None) -> Cell | None:
    return next((x for x in cells if x["phase"] == phase and x["library"] == library
                 and (workload is None or x.get("workload") == workload) and _ok(x)), None)


def _kind(cells: Iterable[Cell], phase: str, kind: str) -> list[Cell]:
    return [x for x in cells if x["phase"] == phase and x["kind"] == kind and _ok(x)]


def _rate(cell: Cell) -> float:
    return float(cell["points"]) / float(cell["seconds"])


def _fastest(cells: list[Cell]) -> Cell | None:
    return min(cells, key=lambda x: x["seconds"]) if cells else None


# Targets -------------------------------------------------------------------------------------

def _target(name: str, need: str, got: str, met: bool | None) -> dict[str, Any]:
    return {"target": name, "needed": need, "measured": got, "met": met}


def targets(cells: list[Cell]) -> list[dict[str, Any]]:
    """The comparison's targets, each with what was measured and whether it is met."""
    out: list[dict[str, Any]] = []
    kw1 = _find(cells, "w1", "kittiwake", "w1")
    peer = _fastest(_kind(cells, "w1", "peer"))
    orj = _find(cells, "w1", "orjson")
    if kw1:
        rate = _rate(kw1)
        out.append(_target("W1 ingest", f"≥ {INGEST_TARGET:,} points/s",
                           f"{rate:,.0f} points/s", rate >= INGEST_TARGET))
        if peer:
            factor = rate / _rate(peer)
            out.append(_target("W1 ingest vs the fastest peer", f"≥ {PEER_FACTOR:g}{X}",
                               f"{factor:.1f}{X} ({peer['label']}: {_rate(peer):,.0f} points/s)",
                               factor >= PEER_FACTOR))
        if orj:
            factor = rate / _rate(orj)
            out.append(_target("W1 ingest vs the orjson baseline", f"≥ {ORJSON_FACTOR:g}{X}",
                               f"{factor:.2f}{X} (orjson: {_rate(orj):,.0f} points/s)",
                               factor >= ORJSON_FACTOR))
    for phase, title in (("w2", "W2 read one series"), ("w3-create", "W3 create 1,000 runs"),
                         ("w3-query", "W3 top-10 query")):
        mine = _find(cells, phase, "kittiwake", None if phase != "w3-create" else "w3-create")
        best = _fastest(_kind(cells, phase, "peer"))
        if mine is None or best is None:
            continue
        factor = best["seconds"] / mine["seconds"]
        out.append(_target(f"{title}: faster than every peer", f"> 1{X} the fastest peer",
                           f"{factor:.2f}{X} ({_secs(mine['seconds'])} vs {best['label']} "
                           f"{_secs(best['seconds'])})", factor > 1.0))
    return out


def target_lines(found: list[dict[str, Any]]) -> list[str]:
    """One line per target for the terminal."""
    return [f"{'MET   ' if t['met'] else 'MISSED'} {t['target']}: {t['measured']} "
            f"(needed {t['needed']})" for t in found]


# Formatting ----------------------------------------------------------------------------------

def _secs(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 1.0:
        return f"{seconds * 1000:.3g} ms"
    return f"{seconds:.3g} s"


def _ratio(value: float | None) -> str:
    if value is None:
        return NONE
    if value >= 100:
        return f"{value:,.0f}{X}"
    if value < 0.001:
        return f"<0.001{X}"
    return f"{value:.3g}{X}"


def _mem(cell: Cell) -> str:
    if cell.get("peak_rss_mb") is None:
        return NONE
    text = f"{cell['peak_rss_mb']:.0f}"
    helpers = cell.get("children_peak_rss_mb") or 0.0
    if helpers >= 1.0:
        text += f" (+{helpers:.0f})"
    return text


_TEXT = {"", "Step", "Library", "Target", "Needed", "Measured", "How", "What", "Value", "Package",
         "Version"}


def _disk(cell: Cell) -> str:
    return NONE if cell.get("disk_mb") is None else f"{cell['disk_mb']:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    # Text columns are left-aligned, figures right-aligned.
    rule = [" --- " if name in _TEXT else " ---: " for name in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _order(cells: list[Cell], key: Callable[[Cell], float]) -> list[Cell]:
    """Kittiwake first, then peers fastest first, then baselines, then failures."""
    rank = {"kittiwake": 0, "peer": 1, "baseline": 2}
    return sorted(cells, key=lambda x: (x.get("seconds") is None, rank[x["kind"]],
                                        key(x) if x.get("seconds") is not None else 0.0))


def _failed(cell: Cell) -> str:
    if cell.get("unavailable"):
        return f"not measured: {cell['unavailable']}"
    if cell.get("error"):
        return "failed: " + str(cell["error"])
    return "wrong answer"


# Sections ------------------------------------------------------------------------------------

def _w1(cells: list[Cell], plot: str) -> list[str]:
    mine = [x for x in cells if x["phase"] == "w1"]
    peer = _fastest(_kind(cells, "w1", "peer"))
    sqlite = _find(cells, "w1", "sqlite3")
    orj = _find(cells, "w1", "orjson")
    rows = []
    for x in _order(mine, lambda x: x["seconds"]):
        if not _ok(x):
            rows.append([x["label"], _failed(x)] + [""] * 9)
            continue
        rate = _rate(x)
        rows.append([
            x["label"], _secs(x["seconds"]), f"{rate:,.0f}",
            _ratio(rate / _rate(peer)) if peer else NONE,
            _ratio(rate / _rate(sqlite)) if sqlite else NONE,
            _ratio(rate / _rate(orj)) if orj else NONE,
            _secs(x.get("durable_call_seconds")), _secs(x.get("setup_seconds")),
            _disk(x), _mem(x), str(x["n"]),
        ])
    return [
        f"## W1 — ingest: 10 metrics {X} 20,000 steps, logged step by step",
        "",
        "Time from the first logging call to the return of the call that guarantees the data "
        "is stored (Kittiwake: `await run.flush()`), median of the repetitions. Ratios are "
        "points/s divided by the other row's points/s (above 1 = faster). *Durable call* is "
        "the part of the time spent in that last call; *setup* (opening the store, starting "
        "the run) is not in the ingest time. *On disk*: what the library's directory holds "
        "afterwards (logs and metadata included).",
        "",
        *_table(["Library", "Ingest time", "Points/s", "vs fastest peer", "vs sqlite3",
                 "vs orjson", "Durable call", "Setup", "On disk MiB", "Peak RSS MiB (+child)",
                 "Reps"],
                rows),
        "",
        f"![Ingest points per second, one bar per tracker and baseline]({plot})",
        "",
    ]


def _time_table(cells: list[Cell], phase: str, extra: str | None = None) -> list[str]:
    mine = [x for x in cells if x["phase"] == phase]
    peer = _fastest(_kind(cells, phase, "peer"))
    sqlite = _find(cells, phase, "sqlite3")
    orj = _find(cells, phase, "orjson")
    header = ["Library", "Time", "vs fastest peer", "vs sqlite3", "vs orjson"]
    if extra:
        header += [extra, "On disk MiB"]
    header += ["Peak RSS MiB (+child)", "Reps", "How"]
    rows = []
    for x in _order(mine, lambda x: x["seconds"]):
        if not _ok(x):
            rows.append([x["label"], _failed(x)] + [""] * (len(header) - 2))
            continue
        row = [x["label"], _secs(x["seconds"]),
               _ratio(peer["seconds"] / x["seconds"]) if peer else NONE,
               _ratio(sqlite["seconds"] / x["seconds"]) if sqlite else NONE,
               _ratio(orj["seconds"] / x["seconds"]) if orj else NONE]
        if extra:
            row += [_secs(x.get("index_seconds")) if x.get("index_seconds") else "", _disk(x)]
        check = ""
        if "correct" in x:
            check = " — right answer" if x["correct"] else " — WRONG answer"
        row += [_mem(x), str(x["n"]), f"{x.get('api') or x.get('how') or ''}{check}"]
        rows.append(row)
    return _table(header, rows)


def _w2(cells: list[Cell]) -> list[str]:
    return [
        "## W2 — read back one full series (20,000 points of `m3`)",
        "",
        "Each library's own reading API, in a fresh process that opened the store first "
        "(opening is not timed). Ratios are the other row's time divided by this row's "
        "(above 1 = faster). *Right answer* means all 20,000 steps in step order with the "
        "logged values.",
        "",
        *_time_table(cells, "w2"),
        "",
    ]


def _w3(cells: list[Cell]) -> list[str]:
    kq = _find(cells, "w3-query", "kittiwake")
    path = ("`list_runs(where=…, order_by=…, limit=…)` — the query language"
            if kq and kq.get("query_path") == "where" else
            "`list_runs()` plus filtering and sorting in Python (the query language "
            "`list_runs(where=…, order_by=…, limit=…)` did not exist yet; the worker uses it "
            "as soon as `list_runs` accepts `where`)")
    return [
        f"## W3 — 1,000 runs (5 configs, 3 metrics {X} 10 steps), then a top-10 query",
        "",
        f"The query: runs whose last `m0` is above {c.W3_M0_ABOVE} and whose `lr` config is "
        f"below {c.W3_LR_BELOW}, the {c.W3_TOP} with the highest last `m0`, highest first. "
        "Every library must return the same ten run names in the same order "
        f"(`{', '.join(c.w3_expected()[:3])}`, …).",
        "",
        f"Kittiwake's measured query path: {path}.",
        "",
        "### Creating the runs",
        "",
        *_time_table(cells, "w3-create", extra="Index (Aim)"),
        "",
        "### The query",
        "",
        *_time_table(cells, "w3-query"),
        "",
    ]


def _w4(cells: list[Cell]) -> list[str]:
    rebuild = _find(cells, "w4", "kittiwake")
    ingest = _find(cells, "w1", "kittiwake", "w1")
    if rebuild is None:
        return ["## W4 — rebuild (Kittiwake only)", "", "Not measured.", ""]
    rows = [["Kittiwake `await tracker.rebuild_projections()`", _secs(rebuild["seconds"]),
             f"{c.POINTS / rebuild['seconds']:,.0f}",
             _ratio(ingest["seconds"] / rebuild["seconds"]) if ingest else NONE,
             _mem(rebuild), str(rebuild["n"])]]
    return [
        "## W4 — rebuild the projections from the log (Kittiwake only)",
        "",
        "Over the W1 data (one run, 200,000 points). The other trackers keep no event log "
        "to rebuild from.",
        "",
        *_table(["What", "Time", "Points/s", "vs W1 ingest", "Peak RSS MiB", "Reps"], rows),
        "",
    ]


def _w5(cells: list[Cell]) -> list[str]:
    mine = [x for x in cells if x["phase"] == "w5"]
    if not mine:
        return []
    mlflow = _find(cells, "w5", "mlflow")
    rows = []
    for x in _order(mine, lambda x: x["seconds"]):
        if not _ok(x):
            rows.append([x["label"], _failed(x), "", "", "", "", ""])
            continue
        check = ""
        if "correct" in x:
            check = " — every point stored" if x["correct"] else " — points MISSING"
        rows.append([x["label"], _secs(x["seconds"]), f"{_rate(x):,.0f}",
                     _ratio(mlflow["seconds"] / x["seconds"]) if mlflow else NONE,
                     _mem(x), str(x["n"]), f"{x.get('how', '')}{check}"])
    return [
        "## W5 — W1's 200,000 points through a tracking server",
        "",
        "The server runs on the same machine, in a process of its own started before the "
        "clock (on a SQLite file, as W1's stores are), and the client talks to it over "
        "loopback. The clock stops when the server has confirmed the last point. Peak RSS "
        "is the client's, and in brackets the server's.",
        "",
        *_table(["Library", "Time", "Points/s", "vs MLflow server", "Peak RSS MiB (+child)",
                 "Reps", "How"], rows),
        "",
    ]


def _profile(info: dict[str, Any]) -> list[str]:
    found = info.get("profile")
    if not found:
        return []
    total = found["total_ms"]
    rows = [[label.replace("  ", "&nbsp;&nbsp;"),
             "" if value is None else f"{value:.1f}",
             "" if value is None else f"{100 * value / total:.0f}%"]
            for label, value in found["steps"]]
    return [
        "## Where Kittiwake's ingest time goes",
        "",
        f"W1 again, {found['runs']} runs in one tracker, with the engine's steps timed by "
        "wrapping them from outside (`bench/compare/profile_kittiwake.py --timings`; the "
        "wrappers run a few times per flush, so they cost nothing measurable). Average "
        f"per run: {total:.0f} ms, {found['points_per_second']:,} points/s — a little faster "
        "than the W1 table, whose every figure is the first run of a fresh process. "
        "Sampling profiles of the same loop: `bench/compare/profile_kittiwake.py` with "
        "py-spy.",
        "",
        *_table(["Step", "ms per run", "share"], rows),
        "",
    ]


def _memory(cells: list[Cell]) -> list[str]:
    phases = [("w1", "W1 ingest"), ("w2", "W2 read"), ("w3-create", "W3 create"),
              ("w3-query", "W3 query"), ("w4", "W4 rebuild")]
    names: list[str] = []
    for x in cells:
        if x["name"] not in names:
            names.append(x["name"])
    rows = []
    for name in names:
        row = [name]
        for phase, _ in phases:
            found = next((x for x in cells if x["name"] == name and x["phase"] == phase
                          and x.get("peak_rss_mb") is not None), None)
            row.append(_mem(found) if found else NONE)
        rows.append(row)
    return [
        "## Peak memory",
        "",
        "Maximum resident set size of the worker process (`ru_maxrss`, MiB), which includes "
        "the interpreter, the library's imports and, for W1, the 20,000 prepared dicts "
        "(about 12 MiB, the same for every library). In parentheses: the largest child "
        "process the worker started and waited for (`RUSAGE_CHILDREN`): wandb-core, or a "
        "short-lived command such as `git` that a library runs to record where the code "
        "came from. A child that "
        "was forked counts the pages it shared with the worker at that moment, so this "
        "figure is an upper bound of what the child itself used, not an amount to add. "
        "For W1 the first variant of each library is shown.",
        "",
        *_table(["Library", *[title for _, title in phases]], rows),
        "",
    ]


NOTES: dict[str, str] = {
    "Kittiwake": (
        "`engine.connect(path)` with its defaults: SQLite in WAL mode, durability `full` "
        "(synchronous=FULL, an fsync per commit), group commit. `run.log_metrics(dict, "
        "step=step)` checks and buffers; the W1 loop never awaits, so the 200,000 points "
        "(under `max_pending_points`, 1,000,000) are written inside `await run.flush()`, "
        "which returns once they are durable and readable. The sync facade runs the same "
        "engine on a background thread. W3 starts 50 runs at a time in an anyio task group "
        "(Kittiwake group-commits concurrent appends); the one-at-a-time figure is shown too."),
    "sqlite3": (
        "The standard library's `sqlite3` with SQLite's defaults (rollback journal, "
        "synchronous=FULL): one table `points(run, metric, step, value, ts)`, every point "
        "inserted by one `executemany` in one transaction, no index. W2 scans the table; "
        "W3 is one SQL query over the raw points joined with a `runs` table."),
    "orjson": (
        "One `orjson.dumps` line per logged dict (step, timestamp, the dict) written to a "
        "buffered file, one `fsync` at the end. W2 and W3 parse every line."),
    "wandb": (
        "`WANDB_MODE=offline` (plus `WANDB_SILENT=true`, `WANDB_DIR` in the data directory): "
        "`wandb.init(project=…, name=…, group=…, config=…)`, `run.log(dict, step=step)`, "
        "`run.finish()`. The writing is done by the `wandb-core` helper process (its peak "
        "memory is bounded by the figure in parentheses). W2 and the W3 query are not "
        "measured: the reading API (`wandb.Api()`) talks to the W&B server only, an offline "
        "run reaches it only after `wandb sync`, and the package has no reader for the "
        "local `.wandb` file. W3 measures creating the runs only."),
    "MLflow": (
        "Tracking URI `sqlite:///…/mlflow.db`. Per step: the fluent `mlflow.log_metrics(dict, "
        "step=step)`, synchronous (MLflow's default), one SQLite transaction per call; it "
        "runs once because it takes minutes. Batched: `MlflowClient.log_batch` with 1,000 "
        "`Metric`s per call (the most one request may carry), i.e. a user who buffers by "
        "hand. W2: `MlflowClient.get_metric_history`. W3: `mlflow.start_run` / `log_params` / "
        "`log_metrics` per step, then `MlflowClient.search_runs(filter_string=…, "
        "order_by=['metrics.m0 DESC'], max_results=10)`. MLflow params are strings that a "
        "filter can only compare for (in)equality, so `lr < 0.05` is written "
        "`params.lr != '0.1'` (lr takes the values 0.1, 0.03, 0.01, 0.003, 0.001); "
        "`metrics.m0` in a filter is the latest value."),
    "Aim": (
        "A repository created as `aim init` does, `Run(repo=…, experiment=…)` with its "
        "defaults (system metrics every 10 s, terminal capture on), `run['hparams'] = config`, "
        "`run.track(dict, step=step)`, `run.close()`. Aim 3.29 shows a run to `Repo` queries "
        "only after its index manager has indexed it (`aim up` does that in the background); "
        "the workers index right after writing and report that time separately (W3 *Index* "
        "column), outside the ingest and query times. W2: `repo.query_metrics(\"metric.name == "
        "'m3'\")` then `metric.data.view('val').numpy()` — the getting-started "
        "`metric.values.sparse_numpy()` returns storage keys in key order in 3.29, not steps. "
        "W3: `repo.query_metrics(\"metric.name == 'm0' and metric.last > 0.5 and "
        "run.hparams.lr < 0.05\")`, sorted in Python (the query language has no ORDER BY "
        "or LIMIT)."),
    "trackio": (
        "`TRACKIO_DIR` in the data directory, `trackio.init(project=…, name=…, config=…)`, "
        "`trackio.log(dict, step=step)`, `trackio.finish()` (logs are batched by a "
        "background thread; `finish` waits for them). With psutil present (Aim and "
        "neptune-scale need it) trackio logs CPU metrics in the background by default. "
        "trackio documents reading through its command line; the workers call what "
        "`trackio get metric` and `trackio query project --sql` call "
        "(`SQLiteStorage.get_metric_values`, `SQLiteStorage.query_project`) so that a "
        "process start is not timed. W3 is one SQL query with `json_extract`."),
    "tensorboardX": (
        "`SummaryWriter(logdir)` with its defaults (max_queue=10, flush_secs=120), "
        "`add_scalar(name, value, step)` for each metric, `writer.close()`; W3 configs with "
        "`add_hparams`. Read with TensorBoard's `EventAccumulator` and "
        "`size_guidance={SCALARS: 0}` (the default keeps a sample of 10,000 points per tag). "
        "TensorBoard has no query API: W3 loads each run's event files and filters and sorts "
        "in Python. Scalars are stored as float32."),
    "neptune-scale": (
        "`Run(mode='offline', project=…, log_directory=…)` needs neither a server nor a "
        "token and writes the run's operations to a local SQLite queue for a later "
        "`neptune sync`; `run.log_configs`, `run.log_metrics(data=dict, step=step)`, "
        "`run.close()`, defaults otherwise (console capture, source tracking). Offline, it "
        "starts no sync process. W2 and the W3 query are not measured: Neptune's readers "
        "(neptune-query) fetch from the Neptune server only."),
}

def _notes() -> list[str]:
    lines = ["## How each library is used", "",
             "Each library as its documentation shows, with its defaults; every choice that "
             "could matter is here.", ""]
    for name, text in NOTES.items():
        lines += [f"- **{name}.** {text}"]
    return [*lines, ""]


def _method(info: dict[str, Any]) -> list[str]:
    m = info["machine"]
    return [
        "## Method",
        "",
        "- Every workload of every library runs in a fresh process (`bench/compare/work_*.py`),"
        " with its own temporary directory under `bench/.peers/data` — on the same disk as the"
        " repository — deleted afterwards. W2, W3's query and W4 run in fresh processes on "
        "the data the previous workload left.",
        "- Up to 3 repetitions, median shown (*Reps* column); a workload that has "
        "taken 40 s is not started again (MLflow per step, Aim, wandb's 1,000 runs).",
        "- No timing includes interpreter start, imports or opening the store; W1's also "
        "leaves out starting the run, while W3's creation time covers creating every run. "
        "W1's 20,000 dicts are built before the clock starts and are the same objects for "
        "every library. The page cache is warm for reads (the data was just written).",
        "- Peers run in their own environment `bench/.peers/venv` "
        "(`bench/compare/requirements-peers.txt`), Kittiwake and the baselines in the "
        "project's `.venv`; both on the same Python.",
        "- No network: telemetry is switched off for every library (`DO_NOT_TRACK`, "
        "`MLFLOW_DISABLE_TELEMETRY`, `HF_HUB_OFFLINE`, …) so that no timing includes a "
        "network time-out.",
        f"- Other work on the machine while the comparison ran: "
        f"{m.get('other_load_cores', '?')} cores busy on average, outside the comparison's "
        f"own processes ({m['nproc']} cores in all); load average "
        f"{' '.join(m.get('loadavg_start', []))} at the start, "
        f"{' '.join(m.get('loadavg_end', []))} at the end.",
        "",
    ]


def _machine(info: dict[str, Any]) -> list[str]:
    m = info["machine"]
    d = m["disk"]
    k = info["kittiwake"]
    versions = info["peer_versions"]
    wanted = ["wandb", "mlflow", "aim", "trackio", "tensorboardX", "tensorboard",
              "neptune-scale", "matplotlib", "protobuf", "SQLAlchemy", "numpy"]
    cells = info["cells"]
    sqlite = next((x.get("version") for x in cells if x["library"] == "sqlite3"
                   and x.get("version")), "?")
    orjson = next((x.get("version") for x in cells if x["library"] == "orjson"
                   and x.get("version")), "?")
    changed = " (with uncommitted changes in `engine/`)" if k.get("engine_modified") else ""
    rows = [["Kittiwake", f"0.1.0 at commit `{k.get('commit')}`{changed}"],
            ["Baselines", f"{sqlite}, {orjson}"]]
    rows += [[name, versions[name]] for name in wanted if name in versions]
    return [
        "## Machine and versions",
        "",
        *_table(["What", "Value"], [
            ["CPU", f"{m['cpu_model']}, {m['nproc']} cores (`nproc`)"],
            ["Memory", f"{m['memory_gib']} GiB"],
            ["Disk", f"{d['device']} ({d['fstype']}, {d['size_gib']} GiB, "
                     f"rotational={d['rotational']}) mounted on {d['mount']}"],
            ["OS", m["os"]],
            ["Python", f"{m['python_project']} (project), {m['python_peers']} (peers)"],
        ]),
        "",
        *_table(["Package", "Version"], rows),
        "",
        "Every package of the peers' environment, with its version, is in "
        "`bench/compare/results.json` (`peer_versions`).",
        "",
    ]


def markdown(info: dict[str, Any], plot: str) -> str:
    """The whole of docs/comparison.md."""
    cells = info["cells"]
    found = info["targets"]
    target_rows = [[t["target"], t["needed"], t["measured"],
                    "met" if t["met"] else "**missed**"] for t in found]
    lines = [
        "# Kittiwake compared with the trackers people use today",
        "",
        "<!-- Generated by bench/compare/run.py (make bench-compare); do not edit by hand. -->",
        "",
        f"All figures come from one run of `{info['command']}` on {info['generated'][:10]} "
        f"({info['duration_seconds']:.0f} s in all, installing the peers aside), on the "
        "machine described below. Rerun it to get your own; the raw results are in "
        "`bench/compare/results.json`.",
        "",
        "## Targets",
        "",
        *_table(["Target", "Needed", "Measured", ""], target_rows),
        "",
        *_machine(info),
        *_w1(cells, plot),
        *_w2(cells),
        *_w3(cells),
        *_w4(cells),
        *_w5(cells),
        *_profile(info),
        *_memory(cells),
        *_notes(),
        *_method(info),
        "## Reproduce",
        "",
        "```sh",
        "make bench-compare    # creates .venv and bench/.peers/venv on first use",
        "# a subset, without touching the committed results:",
        ".venv/bin/python bench/compare/run.py --only kittiwake,sqlite3,orjson",
        "```",
        "",
    ]
    return "\n".join(lines)
