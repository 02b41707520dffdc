// The dashboard's entry: picks the page the URL's hash names and renders it into <main>.
import { clear, errorBox, h } from "./dom.js";
import { current, href } from "./router.js";
import * as projects from "./pages/projects.js";
import * as runs from "./pages/runs.js";
import * as run from "./pages/run.js";
import * as compare from "./pages/compare.js";
import * as experiment from "./pages/experiment.js";

const PAGES = { "/": projects, "/runs": runs, "/run": run, "/compare": compare,
                "/experiment": experiment };

let cleanup = null;
let rendering = 0;

function crumbs(items) {
  const nav = clear(document.getElementById("crumbs"));
  items.forEach(([label, link], i) => {
    if (i) nav.append(h("span", { class: "sep", "aria-hidden": "true" }, "/"));
    nav.append(link ? h("a", { href: link }, label) : h("span", { "aria-current": "page" },
                                                          label));
  });
}

async function route() {
  const token = ++rendering;
  if (cleanup) {
    try { cleanup(); } catch (error) { console.error(error); }
    cleanup = null;
  }
  const { path, params } = current();
  const page = PAGES[path];
  const view = clear(document.getElementById("view"));
  const project = params.get("project");
  crumbs([["Projects", href("/")], ...(project ? [[project, href("/runs", { project })]] : [])]);
  if (!page) {
    view.append(h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/" }, "All projects")));
    return;
  }
  try {
    const done = await page.render(view, params, { crumbs, alive: () => token === rendering });
    if (token === rendering) cleanup = done || null;
    else if (done) done();
  } catch (error) {
    if (token !== rendering) return;
    console.warn(error);
    view.append(errorBox(error));
  }
}

window.addEventListener("hashchange", route);
route();
