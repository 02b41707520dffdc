// The runs table: the query language in a search box (a bad query shows where it went
// wrong), click-to-sort, a column chooser over configs, metrics and env, status and tag
// chips, a job's worker, selection for comparing, rows that update live, and virtual scrolling so that tens
// of thousands of runs stay smooth.
import { ApiError, api } from "../api.js";
import { clear, errorBox, formatTime, formatValue, h, statusChip, tagChip } from "../dom.js";
import { EVENT_TYPES, follow } from "../live.js";
import { href, list, update } from "../router.js";
import { field, quote } from "../query.js";
import { groupsView } from "./groups.js";

const ROW = 32; // px; every row has this height, which is what makes virtual scrolling exact
const OVERSCAN = 10;
const LIMIT = 50_000;
// The first rows come in a small page, drawn at once; the rest follow in larger pages while
// the table is already in use (10,000 runs take the server seconds to send in one answer).
const FIRST_PAGE = 100;
const PAGE = 2_000;
const REFRESH_MS = 200;
const FIXED = [
  { key: "name", label: "Name", sort: "name" },
  { key: "status", label: "Status", sort: "status" },
  { key: "worker", label: "Worker", sort: "worker" },
  { key: "experiment", label: "Experiment", sort: "experiment" },
  { key: "tags", label: "Tags" },
  { key: "created_at", label: "Created", sort: "created_at" },
];

export async function render(view, params) {
  const project = params.get("project");
  if (!project) throw new Error("no project named in the address");
  const state = {
    project,
    where: params.get("q") || "",
    sort: params.get("sort") || "-created_at",
    columns: params.has("cols") ? list(params, "cols") : null,
    group: params.get("group") || "",
    selected: new Set(list(params, "sel")),
    rows: [],
    index: new Map(),
    active: 0,
    dirty: new Set(),
  };

  const input = h("input", {
    id: "query", type: "search", value: state.where, autocomplete: "off", spellcheck: "false",
    placeholder: "e.g. metrics.train/loss < 0.5 and tags contains 'baseline'",
    "aria-describedby": "query-error",
  });
  const queryError = h("div", { id: "query-error", class: "query-error", role: "alert" });
  const form = h("form", { class: "query", role: "search", onsubmit: (e) => {
    e.preventDefault();
    state.where = input.value.trim();
    update({ q: state.where });
    reload();
    showGroups();
  } }, h("label", { for: "query" }, "Filter"), input, h("button", { type: "submit" }, "Apply"));

  const count = h("span", { class: "muted", "aria-live": "polite" });
  const compareLink = h("a", { class: "button", href: "#", "aria-disabled": "true" }, "Compare");
  const clearSel = h("button", { type: "button", onclick: () => {
    state.selected.clear();
    selectionChanged();
  } }, "Clear selection");
  const chooser = h("details", { class: "chooser" });
  const groupBy = h("select", { id: "group-by", onchange: () => {
    state.group = groupBy.value;
    update({ group: state.group });
    showGroups();
  } });
  const toolbar = h("div", { class: "toolbar" }, count, compareLink, clearSel,
                    h("label", { for: "group-by" }, "Group by"), groupBy, chooser);
  const groups = groupsView(project, (condition) => {
    state.group = "";
    groupBy.value = "";
    update({ group: "" });
    narrow(condition);
    showGroups();
  });

  const thead = h("thead");
  const tbody = h("tbody");
  const table = h("table", {
    class: "runs", role: "grid", tabindex: "0", "aria-label": `Runs of ${project}`,
    "aria-rowcount": "0", onkeydown: keys,
  }, thead, tbody);
  const scroller = h("div", { class: "table-scroll", onscroll: () => schedule() }, table);

  view.append(h("h1", { class: "visually-hidden" }, `Runs of ${project}`), form, queryError,
              toolbar, scroller, groups.el);

  // Grouped, the table gives way to one row per group (the runs still load behind it).
  async function showGroups() {
    scroller.hidden = Boolean(state.group);
    groups.el.hidden = !state.group;
    if (!state.group) {
      fitTags(tbody); // rows drawn while the table was hidden had no width to fit to
      return;
    }
    try {
      await groups.load({ where: state.where, by: state.group,
                          metrics: chosen().filter((k) => k.startsWith("metrics.")) });
    } catch (error) {
      showError(error);
    }
  }

  function drawGroupBy() {
    const { config } = available();
    const fields = ["status", "experiment", ...config.map((k) => field("config", k))];
    if (state.group && !fields.includes(state.group)) fields.push(state.group);
    clear(groupBy).append(h("option", { value: "" }, "nothing"),
      ...fields.map((f) => h("option", { value: f, selected: f === state.group }, f)));
  }

  let columnsChanged = () => {};
  let frame = 0;
  function schedule() {
    if (!frame) frame = requestAnimationFrame(() => { frame = 0; drawRows(); });
  }

  // Columns ------------------------------------------------------------------------------

  function available() {
    const config = new Set(), metrics = new Set(), env = new Set();
    for (const run of state.rows) {
      Object.keys(run.config || {}).forEach((k) => config.add(k));
      Object.keys(run.metrics || {}).forEach((k) => metrics.add(k));
      Object.keys(run.env || {}).forEach((k) => env.add(k));
    }
    return { config: [...config].sort(), metrics: [...metrics].sort(), env: [...env].sort() };
  }

  function chosen() {
    if (state.columns) return state.columns;
    const { metrics } = available();
    return metrics.filter((m) => !m.startsWith("system/")).slice(0, 4).map((m) => `metrics.${m}`);
  }

  function columns() {
    return [...FIXED, ...chosen().map((key) => {
      const dot = key.indexOf(".");
      const kind = key.slice(0, dot), name = key.slice(dot + 1);
      return { key, label: name, kind, name, sort: field(kind, name), numeric: kind === "metrics" };
    })];
  }

  function drawChooser() {
    const { config, metrics, env } = available();
    const picked = new Set(chosen());
    // Drawn again as runs arrive: what was typed in it, and where, stays.
    const before = chooser.querySelector("input[type=search]");
    const filter = h("input", { type: "search", placeholder: "Find a column",
                                "aria-label": "Find a column", value: before?.value || "" });
    const groups = [["Config", "config", config], ["Metrics", "metrics", metrics],
                    ["Env", "env", env]].filter(([, , names]) => names.length);
    const boxes = h("div", { class: "chooser-list" }, groups.map(([label, kind, names]) =>
      h("fieldset", {}, h("legend", {}, label), names.map((name) => {
        const key = `${kind}.${name}`;
        return h("label", { class: "check", dataset: { name: name.toLowerCase() } },
          h("input", { type: "checkbox", checked: picked.has(key), onchange: (e) => {
            const next = chosen().filter((k) => k !== key);
            if (e.target.checked) next.push(key);
            state.columns = next;
            update({ cols: next.join(",") || "," });
            drawHead();
            drawRows();
            showGroups();
            columnsChanged();
          } }), name);
      }))));
    const narrowList = () => {
      const text = filter.value.toLowerCase();
      boxes.querySelectorAll("label.check").forEach((label) => {
        label.hidden = !label.dataset.name.includes(text);
      });
    };
    filter.addEventListener("input", narrowList);
    narrowList();
    drawGroupBy();
    const focused = before !== null && document.activeElement === before;
    clear(chooser).append(h("summary", {}, "Columns"),
                          h("div", { class: "chooser-panel" }, filter, boxes));
    if (focused) filter.focus();
  }

  // Header and rows ----------------------------------------------------------------------

  function sortOf(col) {
    if (!col.sort) return null;
    if (state.sort === col.sort) return "ascending";
    if (state.sort === `-${col.sort}`) return "descending";
    return null;
  }

  function drawHead() {
    const all = h("input", { type: "checkbox", "aria-label": "Select every run shown",
      checked: state.rows.length > 0 && state.rows.every((r) => state.selected.has(r.run_id)),
      onchange: (e) => {
        for (const run of state.rows) {
          if (e.target.checked) state.selected.add(run.run_id);
          else state.selected.delete(run.run_id);
        }
        selectionChanged();
      } });
    clear(thead).append(h("tr", {}, h("th", { class: "select", scope: "col" }, all),
      columns().map((col) => {
        const sorted = sortOf(col);
        const label = col.kind ? h("span", {}, h("span", { class: "kind" }, col.kind), " ",
                                   col.label) : col.label;
        return h("th", { scope: "col", "aria-sort": sorted || (col.sort ? "none" : null),
                         class: col.numeric ? "num" : null, title: col.key },
          col.sort ? h("button", { type: "button", class: "sort", onclick: () => {
            state.sort = sorted === "ascending" ? `-${col.sort}` : col.sort;
            update({ sort: state.sort });
            reload();
          } }, label, h("span", { class: "arrow", "aria-hidden": "true" },
                        sorted === "ascending" ? " ▲" : sorted === "descending" ? " ▼" : ""))
            : label);
      })));
  }

  function cell(col, run) {
    switch (col.key) {
      case "name":
        return h("td", { class: "name" }, h("a", { href: runHref(run.run_id), tabindex: "-1" },
          run.name), h("span", { class: "muted id" }, run.run_id));
      case "status":
        return h("td", {}, h("button", { type: "button", class: "chip-button", tabindex: "-1",
          title: `Show ${run.status} runs`, onclick: () => narrow(`status = ${quote(run.status)}`),
        }, statusChip(run.status)));
      case "worker": // a job's: the worker that claimed it last
        return h("td", {}, run.worker ? h("button", { type: "button", class: "chip-button",
          tabindex: "-1", title: `Show the jobs of ${run.worker}`,
          onclick: () => narrow(`worker = ${quote(run.worker)}`) }, run.worker) : "");
      case "experiment":
        return h("td", {}, run.experiment ? h("a", { tabindex: "-1", href: href("/experiment", {
          project, name: run.experiment }) }, run.experiment) : "");
      case "tags": // on one line, fitted to the column once drawn (fitTags)
        return h("td", { class: "tag-cell" }, h("div", { class: "tag-list" },
          [...run.tags].sort().map((tag) => tagChip(tag, () =>
            narrow(`tags contains ${quote(tag)}`)))));
      case "created_at":
        return h("td", { class: "time" }, formatTime(run.created_at));
      default: {
        if (col.kind === "metrics") {
          const m = run.metrics[col.name];
          return h("td", { class: "num" }, m ? formatValue(m[0]) : "");
        }
        const source = col.kind === "config" ? run.config : run.env || {};
        return h("td", {}, formatValue(source[col.name]));
      }
    }
  }

  function drawRows() {
    const total = state.rows.length;
    const height = scroller.clientHeight || 600;
    const first = Math.max(0, Math.floor(scroller.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(total, Math.ceil((scroller.scrollTop + height) / ROW) + OVERSCAN);
    const cols = columns();
    const spacer = (rows) => h("tr", { class: "spacer", "aria-hidden": "true" },
      h("td", { colspan: String(cols.length + 1), style: `height:${rows * ROW}px` }));
    const out = [spacer(first)];
    for (let i = first; i < last; i++) {
      const run = state.rows[i];
      const selected = state.selected.has(run.run_id);
      out.push(h("tr", {
        id: `row-${i}`, class: `${i === state.active ? "active" : ""} ${selected ? "selected" : ""}`,
        "aria-rowindex": String(i + 2), "aria-selected": String(selected),
        dataset: { runId: run.run_id },
      }, h("td", { class: "select" }, h("input", {
        type: "checkbox", tabindex: "-1", checked: selected,
        "aria-label": `Select run ${run.name} (${run.run_id})`,
        onchange: (e) => toggle(run.run_id, e.target.checked),
      })), cols.map((col) => cell(col, run))));
    }
    out.push(spacer(total - last));
    clear(tbody).append(...out);
    fitTags(tbody);
    table.setAttribute("aria-rowcount", String(total + 1));
    if (total) table.setAttribute("aria-activedescendant", `row-${state.active}`);
    else table.removeAttribute("aria-activedescendant");
  }

  // A row has one height (virtual scrolling counts on it), so a run's tags stay on one line.
  // Those that do not fit in the column give way, from the last, to a "+N" chip whose
  // tooltip names every tag; the run's page lists them all.
  function fitTags(root) {
    for (const list of root.querySelectorAll(".tag-list")) {
      if (list.clientWidth === 0 || list.scrollWidth <= list.clientWidth) continue;
      const chips = [...list.querySelectorAll(".chip.tag")];
      const all = chips.map((chip) => chip.textContent);
      const more = h("span", { class: "chip more", title: all.join(", "),
                               "aria-label": `${all.length} tags: ${all.join(", ")}` });
      list.append(more);
      for (let n = 1; n < chips.length; n++) {
        chips[chips.length - n].style.display = "none";
        more.textContent = `+${n}`;
        if (list.scrollWidth <= list.clientWidth) break;
      }
    }
  }

  function runHref(runId) {
    return href("/run", { project, id: runId });
  }

  // Selection ----------------------------------------------------------------------------

  function toggle(runId, on) {
    if (on) state.selected.add(runId);
    else state.selected.delete(runId);
    selectionChanged();
  }

  function selectionChanged() {
    const ids = [...state.selected];
    update({ sel: ids.join(",") });
    const n = ids.length;
    compareLink.textContent = n ? `Compare ${n} run${n === 1 ? "" : "s"}` : "Compare";
    compareLink.setAttribute("href", n ? href("/compare", { project, runs: ids }) : "#");
    compareLink.setAttribute("aria-disabled", String(n === 0));
    clearSel.disabled = n === 0;
    drawHead();
    drawRows();
  }

  function narrow(condition) {
    state.where = state.where ? `(${state.where}) and ${condition}` : condition;
    input.value = state.where;
    update({ q: state.where });
    reload();
  }

  // Keyboard -----------------------------------------------------------------------------

  function keys(event) {
    if (event.target !== table) return;
    const total = state.rows.length;
    if (!total) return;
    const screen = Math.max(1, Math.floor(scroller.clientHeight / ROW) - 1);
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: screen, PageUp: -screen,
                    Home: -total, End: total };
    if (event.key in moves) {
      event.preventDefault();
      setActive(Math.min(total - 1, Math.max(0, state.active + moves[event.key])));
    } else if (event.key === "Enter") {
      event.preventDefault();
      location.hash = runHref(state.rows[state.active].run_id);
    } else if (event.key === " " || event.key === "x") {
      event.preventDefault();
      const id = state.rows[state.active].run_id;
      toggle(id, !state.selected.has(id));
    }
  }

  function setActive(i) {
    state.active = i;
    const top = i * ROW, headH = thead.offsetHeight;
    if (top < scroller.scrollTop) scroller.scrollTop = top;
    else if (top + ROW > scroller.scrollTop + scroller.clientHeight - headH) {
      scroller.scrollTop = top + ROW - scroller.clientHeight + headH;
    }
    drawRows();
  }

  // Loading and live updates ---------------------------------------------------------------

  function reindex() {
    state.index = new Map(state.rows.map((r, i) => [r.run_id, i]));
  }

  function showCount() {
    const n = state.rows.length;
    count.textContent = `${n.toLocaleString("en")} run${n === 1 ? "" : "s"}`
      + (!state.complete ? ", loading more…" : "")
      + (n >= LIMIT ? ` (the first ${LIMIT.toLocaleString("en")})` : "");
  }

  function showError(error) {
    clear(queryError);
    input.removeAttribute("aria-invalid");
    if (!error) return;
    if (error instanceof ApiError && error.type === "QuerySyntaxError") {
      const query = error.query ?? state.where;
      const at = Math.min(error.position ?? 0, query.length);
      input.setAttribute("aria-invalid", "true");
      queryError.append(
        h("span", { class: "message" }, error.message),
        h("code", { class: "pointed" }, query.slice(0, at),
          h("mark", { title: `position ${at}` }, query.slice(at, at + 1) || " "),
          query.slice(at + 1)),
        h("span", { class: "muted" }, ` at position ${at}`));
      input.focus();
      input.setSelectionRange(at, at);
    } else {
      queryError.append(errorBox(error));
    }
  }

  let loading = 0;
  const page = (limit, offset) => api.runs(project, {
    where: state.where || undefined, order_by: state.sort || undefined, limit, offset });

  async function reload() {
    const token = ++loading;
    state.complete = false;
    try {
      const rows = await page(FIRST_PAGE, 0);
      if (token !== loading) return;
      showError(null);
      state.rows = rows;
      state.complete = rows.length < FIRST_PAGE;
      state.active = Math.min(state.active, Math.max(0, rows.length - 1));
      reindex();
    } catch (error) {
      if (token !== loading) return;
      showError(error);
      if (!(error instanceof ApiError)) throw error;
      // The rows of the last good query stay, under the error, until the query is fixed.
      state.complete = true;
    }
    showCount();
    drawChooser();
    drawHead();
    drawRows();
    performance.mark("kittiwake:runs", { detail: { rows: state.rows.length } });
    if (!state.complete) loadRest(token);
  }

  async function loadRest(token) {
    let offset = state.rows.length;
    while (token === loading && offset < LIMIT) {
      let rows;
      try {
        rows = await page(Math.min(PAGE, LIMIT - offset), offset);
      } catch (error) {
        console.warn(error);
        break;
      }
      if (token !== loading) return;
      offset += rows.length;
      // A run created meanwhile moves the pages by one: keep each run once.
      for (const run of rows) if (!state.index.has(run.run_id)) state.rows.push(run);
      reindex();
      showCount();
      schedule();
      if (rows.length < PAGE) break;
    }
    if (token !== loading) return;
    state.complete = true;
    showCount();
    drawChooser();
    drawHead();
    performance.mark("kittiwake:runs-all", { detail: { rows: state.rows.length } });
  }

  async function refresh() {
    if (!state.dirty.size) return;
    if (state.group) showGroups();
    const ids = [...state.dirty];
    state.dirty.clear();
    const only = `run_id in (${ids.map(quote).join(", ")})`;
    let found;
    try {
      found = await api.runs(project, { where: state.where ? `(${state.where}) and ${only}`
        : only, order_by: state.sort || undefined });
    } catch (error) {
      console.warn(error);
      return;
    }
    const byId = new Map(found.map((r) => [r.run_id, r]));
    let changed = false;
    for (const id of ids) {
      const at = state.index.get(id), run = byId.get(id);
      if (run && at !== undefined) {
        state.rows[at] = run;
      } else if (run) {
        insert(run);
        changed = true;
      } else if (at !== undefined) {
        state.rows.splice(at, 1);
        changed = true;
      }
      if (changed) reindex();
    }
    if (changed) {
      showCount();
      drawChooser();
      drawHead();
    }
    drawRows();
  }

  function insert(run) {
    const key = state.sort.replace(/^-/, ""), desc = state.sort.startsWith("-");
    const value = (r) => sortValue(r, key);
    const v = value(run);
    let at = state.rows.findIndex((r) => before(v, value(r), desc));
    if (at < 0) at = state.rows.length;
    state.rows.splice(at, 0, run);
    if (at <= state.active && state.rows.length > 1) state.active += 1;
  }

  const head = await api.head();
  await reload();
  selectionChanged();
  showGroups();
  // Two streams: every change but points, and the points of the metric columns shown only
  // (a busy project logs far more points than a table of last values needs).
  const dirty = (event) => state.dirty.add(event.run_id);
  const stop = follow(project, head, {
    types: EVENT_TYPES.filter((t) => t !== "MetricsLogged") }, dirty);
  let points = null, followed = "";
  function followMetrics(from) {
    const names = chosen().filter((k) => k.startsWith("metrics.")).map((k) => k.slice(8));
    if (names.join("\n") === followed) return;
    followed = names.join("\n");
    if (points) points();
    points = names.length ? follow(project, from, { types: ["MetricsLogged"], metrics: names,
                                                    quiet: true }, dirty) : null;
  }
  followMetrics(head);
  columnsChanged = async () => {
    const now = await api.head();
    await reload(); // the new columns' values as of now, then their points from now on
    followMetrics(now);
  };
  const timer = setInterval(refresh, REFRESH_MS);
  const resize = () => schedule();
  window.addEventListener("resize", resize);
  return () => {
    stop();
    if (points) points();
    clearInterval(timer);
    window.removeEventListener("resize", resize);
    cancelAnimationFrame(frame);
  };
}

function sortValue(run, key) {
  if (key === "created_at" || key === "ended_at") return run[key] ? run[key].getTime() : null;
  if (key.startsWith("metrics.")) {
    const m = run.metrics[key.slice(8).replace(/^`|`$/g, "")];
    return m ? m[0] : null;
  }
  if (key.startsWith("config.")) return run.config[key.slice(7).replace(/^`|`$/g, "")] ?? null;
  return run[key] ?? null;
}

// Whether a row whose sort value is `a` goes before one whose value is `b`. Missing values
// go last either way, as the server sorts them.
function before(a, b, desc) {
  if (a === null || a === undefined) return false;
  if (b === null || b === undefined) return true;
  if (typeof a !== "number" || typeof b !== "number") [a, b] = [String(a), String(b)];
  return desc ? a > b : a < b;
}
