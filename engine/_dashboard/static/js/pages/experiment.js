// The experiment page: its head (the newest run created in it) and its history, oldest first.
import { api } from "../api.js";
import { clear, formatTime, formatValue, h, statusChip } from "../dom.js";
import { follow } from "../live.js";
import { href } from "../router.js";
import { quote } from "../query.js";

export async function render(view, params, { crumbs }) {
  const project = params.get("project");
  const name = params.get("name");
  if (!project || !name) throw new Error("no experiment named in the address");
  crumbs([["Projects", href("/")], [project, href("/runs", { project })],
          [`Experiment ${name}`, null]]);
  const head = await api.head();
  const body = h("div");
  view.append(h("h1", {}, "Experiment ", h("span", { class: "name" }, name)), body);

  async function draw() {
    const [experiment, runs] = await Promise.all([
      api.experiment(project, name),
      api.runs(project, { where: `experiment = ${quote(name)}`, include_deleted: "true" }),
    ]);
    const byId = new Map(runs.map((r) => [r.run_id, r]));
    const headRun = experiment.head ? byId.get(experiment.head) : null;
    const metrics = headRun ? Object.keys(headRun.metrics).sort().slice(0, 6) : [];
    const history = experiment.history;
    clear(body).append(
      h("section", { class: "card", "aria-labelledby": "head-h" },
        h("h2", { id: "head-h" }, "Head"),
        headRun ? h("p", {}, h("a", { href: href("/run", { project, id: headRun.run_id }) },
          headRun.name), " ", h("code", {}, headRun.run_id), " ", statusChip(headRun.status),
          h("span", { class: "muted" }, ` created ${formatTime(headRun.created_at)}`))
          : h("p", { class: "muted" }, "No head: every run of it was deleted.")),
      h("section", { class: "card", "aria-labelledby": "history-h" },
        h("div", { class: "section-head" }, h("h2", { id: "history-h" },
          `History (${history.length} run${history.length === 1 ? "" : "s"}, oldest first)`),
          history.length > 1 ? h("a", { class: "button", href: href("/compare", {
            project, runs: history.slice(-12) }) }, "Compare the latest runs") : null),
        h("table", { class: "grid-table" },
          h("thead", {}, h("tr", {}, ["#", "Run", "Status", "Created",
            ...metrics].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, history.map((id, i) => {
            const run = byId.get(id);
            return h("tr", { class: id === experiment.head ? "head" : null },
              h("td", { class: "num" }, String(i + 1)),
              h("td", {}, h("a", { href: href("/run", { project, id }) }, run ? run.name : id),
                id === experiment.head ? h("span", { class: "chip head" }, "head") : null,
                run && run.deleted ? h("span", { class: "chip" }, "deleted") : null),
              h("td", {}, run ? statusChip(run.status) : ""),
              h("td", { class: "time" }, run ? formatTime(run.created_at) : ""),
              metrics.map((m) => h("td", { class: "num" }, run && run.metrics[m]
                ? formatValue(run.metrics[m][0]) : "")));
          })))));
  }

  await draw();
  let pending = null;
  const stop = follow(project, head, { types: ["RunCreated", "StatusChanged", "RunDeleted"] },
    () => {
      if (!pending) pending = setTimeout(() => { pending = null; draw().catch(console.warn); }, 300);
    });
  return () => {
    stop();
    clearTimeout(pending);
  };
}
