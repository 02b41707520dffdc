// The runs table grouped by a field: one row per value, with the count of runs and the
// mean, min and max of the metric columns shown. Picking a group narrows the query to it.
import { get, projectPath } from "../api.js";
import { clear, formatValue, h } from "../dom.js";
import { quote } from "../query.js";

export function groupsView(project, onPick) {
  const el = h("div", { class: "groups card", hidden: true });

  async function load({ where, by, metrics }) {
    const found = await get(`/api/v1/projects/${projectPath(project)}/groups`, {
      by, where: where || undefined, aggregates: metrics.join(", "),
    });
    const groups = found.groups;
    clear(el).append(h("table", { class: "grid-table", "aria-label": `Runs grouped by ${by}` },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, by),
        h("th", { scope: "col", class: "num" }, "Runs"),
        metrics.map((m) => h("th", { scope: "col", class: "num" },
                             `${m.replace(/^metrics\./, "")} mean (min – max)`)))),
      h("tbody", {}, groups.map((g) => {
        const value = g.key[by];
        return h("tr", { dataset: { group: JSON.stringify(value ?? null) } },
          h("th", { scope: "row" }, h("button", { type: "button", class: "link",
            title: "Show these runs", onclick: () => onPick(condition(by, value)) },
            value === null || value === undefined ? "(none)" : formatValue(value))),
          h("td", { class: "num" }, String(g.count)),
          metrics.map((m) => {
            const stats = g.metrics[`${m}.last`] || g.metrics[m];
            return h("td", { class: "num" }, stats && stats[0]
              ? `${formatValue(stats[1])} (${formatValue(stats[2])} – ${formatValue(stats[3])})`
              : "");
          }));
      }))));
    return groups.length;
  }

  return { el, load };
}

function condition(field, value) {
  if (value === null || value === undefined) return `not ${field} exists`;
  if (typeof value === "number" || typeof value === "boolean") return `${field} = ${value}`;
  return `${field} = ${quote(value)}`;
}
