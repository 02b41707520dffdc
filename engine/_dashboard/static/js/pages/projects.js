// The first page: every project with runs.
import { api } from "../api.js";
import { h } from "../dom.js";
import { href } from "../router.js";

export async function render(view) {
  view.append(h("h1", {}, "Projects"));
  const found = await api.projects();
  if (!found.length) {
    view.append(h("p", { class: "muted" },
      "No runs yet. Log one from Python (engine.connect(…).start_run()) or try kittiwake demo."));
    return null;
  }
  view.append(h("ul", { class: "projects" }, found.map((p) => h("li", {},
    h("a", { href: href("/runs", { project: p.project }) }, p.project),
    h("span", { class: "muted" }, ` ${p.runs} run${p.runs === 1 ? "" : "s"}`)))));
  return null;
}
