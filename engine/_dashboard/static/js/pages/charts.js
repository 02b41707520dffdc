// What the run and compare pages share about charts: their controls, how metrics group
// into sections, and loading a chart only once it scrolls into view.
import { h } from "../dom.js";

/** The namespace a metric is shown under: the part before its first "/". */
export function groupOf(metric) {
  const at = metric.indexOf("/");
  return at > 0 ? metric.slice(0, at) : "General";
}

function compareGroups(a, b) {
  // Top-level metrics first, system metrics last, the rest by name.
  const rank = (g) => (g === "General" ? 0 : g === "system" ? 2 : 1);
  return rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
}

/** Put a chart into its namespace's section of `area` (made when missing), in name order. */
export function place(area, groups, chart) {
  const group = groupOf(chart.metric);
  if (!groups.has(group)) {
    const grid = h("div", { class: "chart-grid" });
    const section = h("section", { class: "chart-group", dataset: { group } },
                      h("h3", {}, group), grid);
    groups.set(group, grid);
    const after = [...area.children].find((s) => s.dataset.group
                                          && compareGroups(s.dataset.group, group) > 0);
    area.insertBefore(section, after || null);
  }
  const grid = groups.get(group);
  const next = [...grid.children].find((el) => el.dataset.metric > chart.metric);
  grid.insertBefore(chart.el, next || null);
}

/** Smoothing, log scale and the x axis; `changed()` after each change to `settings`. */
export function chartControls(settings, changed) {
  const value = h("output", { for: "smoothing" }, settings.smoothing.toFixed(2));
  const slider = h("input", { type: "range", id: "smoothing", min: "0", max: "0.99",
                              step: "0.01", value: String(settings.smoothing) });
  slider.addEventListener("input", () => {
    settings.smoothing = Number(slider.value);
    value.textContent = settings.smoothing.toFixed(2);
    changed();
  });
  const log = h("input", { type: "checkbox", id: "log-scale", checked: settings.log,
    onchange: () => { settings.log = log.checked; changed(); } });
  const x = h("select", { id: "x-axis", onchange: () => { settings.x = x.value; changed(); } },
    [["step", "Step"], ["relative", "Relative time (s)"], ["wall", "Wall time"]].map(
      ([v, label]) => h("option", { value: v, selected: settings.x === v }, label)));
  return h("div", { class: "chart-controls" },
    h("label", { for: "smoothing" }, "Smoothing"), slider, value,
    h("label", { class: "check" }, log, "Log scale"),
    h("label", { for: "x-axis" }, "X axis"), x);
}

/** An observer that calls load(chart) the first time each chart comes near the viewport. */
export function lazily(load) {
  const charts = new Map();
  const io = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      const chart = charts.get(entry.target);
      io.unobserve(entry.target);
      charts.delete(entry.target);
      if (chart) load(chart);
    }
  }, { rootMargin: "300px" });
  return {
    observe(chart) {
      charts.set(chart.el, chart);
      io.observe(chart.el);
    },
    /** Load at once the charts already near the viewport (the observer would wait for the
     *  next frame): one layout for all of them. */
    now() {
      const near = [...charts.entries()].filter(([el]) =>
        el.getBoundingClientRect().top < window.innerHeight + 300);
      for (const [el, chart] of near) {
        io.unobserve(el);
        charts.delete(el);
        load(chart);
      }
    },
    disconnect() {
      io.disconnect();
    },
  };
}
