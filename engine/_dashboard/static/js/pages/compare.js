// Compare: the chosen runs' metrics overlaid, one chart per metric, and their configs side
// by side with the rows that differ marked.
import { api } from "../api.js";
import { append, clear, formatValue, h, statusChip } from "../dom.js";
import { follow } from "../live.js";
import { href, list, update } from "../router.js";
import { Chart, PALETTE, settings as chartSettings } from "../chart.js";
import { chartControls, lazily, place } from "./charts.js";

export async function render(view, params, { crumbs }) {
  const project = params.get("project");
  const ids = [...new Set(list(params, "runs"))];
  if (!project || !ids.length) throw new Error("no runs to compare in the address");
  crumbs([["Projects", href("/")], [project, href("/runs", { project, sel: ids })],
          [`Compare ${ids.length} runs`, null]]);
  const head = await api.head();
  let runs = await load();
  const settings = chartSettings(params);
  let onlyDiff = params.get("diff") === "1";
  const colors = new Map(ids.map((id, i) => [id, PALETTE[i % PALETTE.length]]));
  const charts = new Map();
  const groups = new Map();
  const observer = lazily((chart) => chart.load().catch((e) => console.warn(e)));
  const starts = new Map(runs.map((r) => [r.run_id, r.created_at.getTime() / 1000]));

  async function load() {
    const found = await Promise.all(ids.map((id) => api.run(project, id)));
    return found.filter(Boolean);
  }

  const missing = h("p", { class: "muted" });
  const legend = h("ul", { class: "legend" });
  const table = h("div", { class: "diff-table" });
  const diffToggle = h("input", { type: "checkbox", id: "only-diff", checked: onlyDiff,
    onchange: () => { onlyDiff = diffToggle.checked; update({ diff: onlyDiff ? "1" : "" });
                      drawConfig(); } });
  const chartArea = h("div", { class: "chart-groups" });
  const controls = chartControls(settings, () => {
    update({ smooth: settings.smoothing || "", log: settings.log ? "1" : "",
             x: settings.x === "step" ? "" : settings.x });
    for (const chart of charts.values()) if (chart.loaded) chart.draw(true);
  });
  view.append(h("h1", {}, `Comparing ${ids.length} runs`), missing, legend,
    h("section", { "aria-labelledby": "charts-h" },
      h("div", { class: "section-head" }, h("h2", { id: "charts-h" }, "Charts"), controls),
      chartArea),
    h("section", { class: "card", "aria-labelledby": "config-h" },
      h("div", { class: "section-head" }, h("h2", { id: "config-h" }, "Config"),
        h("label", { class: "check" }, diffToggle, "Only differences")),
      table));

  function drawLegend() {
    const gone = ids.filter((id) => !runs.some((r) => r.run_id === id));
    missing.textContent = gone.length ? `Not found: ${gone.join(", ")}` : "";
    append(clear(legend), runs.map((r) => h("li", {},
      h("span", { class: "swatch", style: `background:${colors.get(r.run_id)}`,
                  "aria-hidden": "true" }),
      h("a", { href: href("/run", { project, id: r.run_id }) }, r.name), " ",
      h("span", { class: "muted" }, r.run_id), " ", statusChip(r.status))));
  }

  function drawConfig() {
    const keys = [...new Set(runs.flatMap((r) => Object.keys(r.config)))].sort();
    const rows = keys.map((key) => {
      const cells = runs.map((r) => (key in r.config ? formatValue(r.config[key]) : null));
      const differs = cells.some((c) => c !== cells[0]);
      return { key, cells, differs };
    }).filter((row) => !onlyDiff || row.differs);
    const differing = rows.filter((r) => r.differs).length;
    clear(table).append(
      h("p", { class: "muted" }, `${differing} of ${keys.length} config values differ.`),
      h("table", { class: "grid-table compare" },
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Key"),
          runs.map((r) => h("th", { scope: "col" }, h("span", { class: "swatch",
            style: `background:${colors.get(r.run_id)}`, "aria-hidden": "true" }), r.name)))),
        h("tbody", {}, rows.map((row) => h("tr", { class: row.differs ? "differs" : null },
          h("th", { scope: "row" }, row.differs ? h("span", { class: "marker",
            title: "differs", "aria-label": "differs" }, "≠ ") : null, row.key),
          row.cells.map((c) => h("td", {}, c === null ? h("span", { class: "muted" }, "—")
            : c)))))));
  }

  function addChart(metric) {
    if (charts.has(metric)) return charts.get(metric);
    const lines = runs.filter((r) => metric in r.metrics).map((r) => ({
      key: r.run_id, label: r.name, color: colors.get(r.run_id) }));
    const chart = new Chart(metric, lines, (line, range) => api.series(project, line.key,
                                                                       metric, range),
                            { settings, starts });
    charts.set(metric, chart);
    place(chartArea, groups, chart);
    observer.observe(chart);
    return chart;
  }

  drawLegend();
  drawConfig();
  [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))].sort().forEach(addChart);
  observer.now();

  let refetch = null;
  const stop = follow(project, head, { runs: ids }, (event) => {
    if (event.type === "MetricsLogged") {
      for (const [metric, column] of Object.entries(event.data.metrics)) {
        const chart = charts.get(metric);
        if (chart && chart.lines.some((l) => l.key === event.run_id)) {
          chart.append(event.run_id, column.steps, column.values, column.timestamps);
        }
      }
    }
    if (refetch) return;
    refetch = setTimeout(async () => {
      refetch = null;
      runs = await load();
      drawLegend();
      drawConfig();
      for (const r of runs) {
        for (const metric of Object.keys(r.metrics)) {
          const chart = charts.get(metric);
          if (!chart) addChart(metric);
          else if (!chart.lines.some((l) => l.key === r.run_id)) {
            chart.lines.push({ key: r.run_id, label: r.name, color: colors.get(r.run_id) });
            if (chart.loaded) chart.load(chart.zoom);
          }
        }
      }
    }, 300);
  });
  return () => {
    stop();
    clearTimeout(refetch);
    observer.disconnect();
    for (const chart of charts.values()) chart.destroy();
  };
}
