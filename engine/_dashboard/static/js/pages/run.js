// The run page: its overview (status, times, notes, tags, lineage, an abort button), its
// config, env and metric summaries, and a chart for every metric grouped by namespace; in
// tabs beside it, what else the run records (logs, files, histograms, confusion matrices).
// All live.
import { api } from "../api.js";
import {
  append, clear, formatDuration, formatTime, formatValue, h, statusChip, tagChip,
} from "../dom.js";
import { follow } from "../live.js";
import { href, update } from "../router.js";
import { canWrite } from "../session.js";
import { Chart, settings as chartSettings } from "../chart.js";
import { chartControls, lazily, place } from "./charts.js";
import { notesEditor } from "./notes.js";
import { contentTabs } from "./tabs.js";

export async function render(view, params, { crumbs }) {
  const project = params.get("project");
  const runId = params.get("id");
  if (!project || !runId) throw new Error("no run named in the address");
  let [run, lineage, contents] = await Promise.all([
    api.run(project, runId), api.lineage(project, runId), api.contents(project, runId)]);
  if (!run) {
    view.append(h("h1", {}, "No such run"), h("p", {}, `There is no run ${runId} in ${project}.`));
    return null;
  }
  crumbs([["Projects", href("/")], [project, href("/runs", { project })], [run.name, null]]);

  const settings = chartSettings(params);
  const charts = new Map();
  const groups = new Map();
  const starts = new Map([[runId, run.created_at.getTime() / 1000]]);
  const fetchSeries = (line, range) => api.series(project, runId, lineMetric(line), range);
  const observer = lazily((chart) => chart.load().catch(showChartError(chart)));

  const title = h("h1", {});
  const overview = h("dl", { class: "overview" });
  const aborting = h("div", { class: "abort" });
  const tags = h("div", { class: "tags" });
  const config = h("div", { class: "config" });
  const env = h("div", { class: "env" });
  const notes = notesEditor(project, runId, () => refreshState());
  const summaries = h("div", { class: "summaries" });
  const chartArea = h("div", { class: "chart-groups" });
  const controls = chartControls(settings, () => {
    update({ smooth: settings.smoothing || "", log: settings.log ? "1" : "",
             x: settings.x === "step" ? "" : settings.x });
    for (const chart of charts.values()) if (chart.loaded) chart.draw(true);
  });

  const main = h("div", {},
    h("div", { class: "columns three" },
      h("section", { class: "card", "aria-labelledby": "overview-h" },
        h("h2", { id: "overview-h" }, "Overview"), overview, tags, notes.el),
      h("section", { class: "card", "aria-labelledby": "config-h" },
        h("h2", { id: "config-h" }, "Config"), config),
      h("section", { class: "card", "aria-labelledby": "env-h" },
        h("h2", { id: "env-h" }, "Environment"), env)),
    h("section", { "aria-labelledby": "charts-h" },
      h("div", { class: "section-head" }, h("h2", { id: "charts-h" }, "Charts"), controls),
      chartArea),
    h("section", { class: "card", "aria-labelledby": "summaries-h" },
      h("h2", { id: "summaries-h" }, "Metric summaries"), summaries),
  );
  const tabs = contentTabs(main, { project, runId, contents, params,
                                  run: () => run });
  view.append(h("div", { class: "run-head" }, title, aborting), tabs.el);

  function drawOverview() {
    clear(title).append(run.name, " ", statusChip(run.status));
    const rows = [["Run id", h("code", {}, run.run_id)],
                  ["Project", project]];
    if (run.experiment) {
      rows.push(["Experiment", h("a", { href: href("/experiment", {
        project, name: run.experiment }) }, run.experiment)]);
    }
    rows.push(["Created", formatTime(run.created_at)]);
    if (run.ended_at) {
      rows.push(["Ended", formatTime(run.ended_at)]);
      rows.push(["Duration", formatDuration((run.ended_at - run.created_at) / 1000)]);
    }
    if (run.status_reason) rows.push(["Reason", run.status_reason]);
    if (run.fork) {
      rows.push(["Forked from", h("span", {}, runLink(run.fork[0]),
                                  ` at step ${formatValue(run.fork[1])}`)]);
    }
    if (lineage && lineage.children.length) {
      rows.push(["Forks", h("span", { class: "links" }, lineage.children.map(([child, step]) =>
        h("span", {}, runLink(child), ` at step ${formatValue(step)}`)))]);
    }
    if (lineage && lineage.ancestors.length > 1) {
      rows.push(["Ancestors", h("span", { class: "links" },
        lineage.ancestors.map(([ancestor]) => runLink(ancestor)))]);
    }
    clear(overview).append(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    drawTags();
    drawAbort();
    notes.show(run.notes);
    clear(config).append(keyValues(run.config, "No config logged."));
    clear(env).append(keyValues(run.env || {}, "No environment captured."));
    const metrics = Object.keys(run.metrics).sort();
    clear(summaries).append(metrics.length ? h("table", { class: "grid-table" },
      h("thead", {}, h("tr", {}, ["Metric", "Last", "Min", "Max", "Points", "Last step"].map(
        (c, i) => h("th", { scope: "col", class: i ? "num" : null }, c)))),
      h("tbody", {}, metrics.map((m) => {
        const [last, lastStep, min, max, count] = run.metrics[m];
        return h("tr", {}, h("th", { scope: "row" }, m),
          [last, min, max, count, lastStep].map((v) => h("td", { class: "num" },
                                                         formatValue(v))));
      }))) : h("p", { class: "muted" }, "No metrics logged."));
  }

  // Tags, with remove buttons and an add field for a token that may write.
  // Redrawn only when what they show changes: a live run refreshes the overview several
  // times a second, and that must not wipe a tag or a reason being typed.
  let tagsShown = null, abortShown = null;

  function drawTags() {
    const editable = canWrite();
    const shown = JSON.stringify([editable, [...run.tags].sort()]);
    if (shown === tagsShown) return;
    tagsShown = shown;
    const sorted = [...run.tags].sort();
    const note = h("span", { class: "error", role: "alert" });
    const change = (what) => api.tags(project, runId, what).then(refreshState, (error) => {
      note.textContent = error.message;
    });
    const input = h("input", { type: "text", id: "new-tag", placeholder: "new tag",
                               size: "12" });
    append(clear(tags), h("span", { class: "label" }, "Tags "),
      sorted.length ? sorted.map((t) => h("span", { class: "tag-edit" }, tagChip(t),
        editable ? h("button", { type: "button", class: "remove",
          "aria-label": `Remove tag ${t}`, title: `Remove tag ${t}`,
          onclick: () => change({ remove: [t] }) }, "×") : null))
        : h("span", { class: "muted" }, "none"),
      editable ? h("form", { class: "add-tag", onsubmit: (e) => {
        e.preventDefault();
        const tag = input.value.trim();
        if (tag) change({ add: [tag] }).then(() => { input.value = ""; });
      } }, h("label", { for: "new-tag", class: "visually-hidden" }, "Add a tag"), input,
        h("button", { type: "submit", class: "small" }, "Add")) : null,
      note);
  }

  function runLink(id) {
    return h("a", { href: href("/run", { project, id }) }, id);
  }

  function drawAbort() {
    const shown = JSON.stringify([run.status, canWrite()]);
    if (shown === abortShown) return;
    abortShown = shown;
    clear(aborting);
    if (run.status !== "running" || !canWrite()) return;
    const reason = h("input", { type: "text", id: "abort-reason", placeholder: "why (optional)" });
    const confirm = h("form", { class: "confirm", hidden: true, onsubmit: async (e) => {
      e.preventDefault();
      confirm.querySelector("button[type=submit]").disabled = true;
      try {
        await api.abort(project, runId, reason.value.trim() || null);
        clear(aborting).append(h("span", { class: "muted", role: "status" },
                                 "Abort requested…"));
      } catch (error) {
        aborting.append(h("span", { class: "error", role: "alert" }, error.message));
      }
    } }, h("label", { for: "abort-reason" }, "Reason"), reason,
      h("button", { type: "submit", class: "danger" }, "Abort run"),
      h("button", { type: "button", onclick: () => { confirm.hidden = true; ask.hidden = false; } },
        "Cancel"));
    const ask = h("button", { type: "button", class: "danger", onclick: () => {
      ask.hidden = true;
      confirm.hidden = false;
      reason.focus();
    } }, "Abort…");
    aborting.append(ask, confirm);
  }

  function addChart(metric) {
    if (charts.has(metric)) return charts.get(metric);
    const chart = new Chart(metric, [{ key: runId, label: run.name, metric }], fetchSeries,
                            { settings, starts });
    charts.set(metric, chart);
    place(chartArea, groups, chart);
    observer.observe(chart);
    return chart;
  }

  drawOverview();
  const names = Object.keys(run.metrics).sort();
  names.forEach(addChart);
  observer.now();
  if (!names.length) chartArea.append(h("p", { class: "muted empty" }, "No metrics yet."));

  let refetch = null;
  const refreshState = () => {
    if (refetch) return;
    refetch = setTimeout(async () => {
      refetch = null;
      try {
        run = await api.run(project, runId) || run;
        if (run.fork || lineage.children.length) lineage = await api.lineage(project, runId);
        drawOverview();
      } catch (error) {
        console.warn(error);
      }
    }, 150);
  };
  let forks = null;
  // The run's own events after the state read above: none is missed, none applied twice.
  const stop = follow(project, run.position, { runs: [runId] }, (event) => {
    tabs.event(event);
    if (event.type === "MetricsLogged") {
      chartArea.querySelector(".empty")?.remove();
      for (const [metric, column] of Object.entries(event.data.metrics)) {
        addChart(metric).append(runId, column.steps, column.values, column.timestamps);
      }
    }
    refreshState();
  });
  // A fork of this run is another stream: watch for runs created with it as the parent
  // (forks made before the state was read came with the lineage read beside it).
  forks = follow(project, run.position, { types: ["RunCreated"], quiet: true }, (event) => {
    if (event.data.fork && event.data.fork.run_id === runId) {
      api.lineage(project, runId).then((found) => { lineage = found; drawOverview(); });
    }
  });
  const sessionKnown = () => { drawAbort(); drawTags(); notes.show(run.notes); };
  window.addEventListener("kittiwake:session", sessionKnown);
  return () => {
    window.removeEventListener("kittiwake:session", sessionKnown);
    stop();
    forks();
    tabs.destroy();
    clearTimeout(refetch);
    observer.disconnect();
    for (const chart of charts.values()) chart.destroy();
  };
}

function keyValues(values, none) {
  const keys = Object.keys(values).sort();
  if (!keys.length) return h("p", { class: "muted" }, none);
  return h("table", { class: "kv" }, h("tbody", {}, keys.map((k) => h("tr", {},
    h("th", { scope: "row" }, k), h("td", {}, Array.isArray(values[k])
      ? values[k].map(formatValue).join(" ") : formatValue(values[k]))))));
}

function lineMetric(line) {
  return line.metric;
}

function showChartError(chart) {
  return (error) => {
    console.warn(error);
    chart.canvasBox.replaceChildren(h("p", { class: "error" }, error.message));
  };
}
