// The dashboard's entry: picks the page the URL's hash names and renders it into <main>.
import { api } from "./api.js";
import { clear, errorBox, h } from "./dom.js";
import { session } from "./session.js";
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

function signIn(message) {
  rendering++;
  if (cleanup) { cleanup(); cleanup = null; }
  crumbs([]);
  const input = h("input", { type: "password", id: "token", autocomplete: "current-password",
                             required: true });
  const note = h("p", { class: "error", role: "alert" }, message || "");
  const form = h("form", { class: "card signin", onsubmit: async (e) => {
    e.preventDefault();
    try {
      Object.assign(session, await api.signIn(input.value));
      signedIn();
      route();
    } catch (error) {
      note.textContent = error.message;
      input.focus();
    }
  } }, h("h1", {}, "Sign in"),
  h("p", { class: "muted" }, "This server needs a token (kittiwake tokens create)."),
  h("label", { for: "token" }, "Token"), input, h("button", { type: "submit" }, "Sign in"), note);
  clear(document.getElementById("view")).append(form);
  input.focus();
}

function signedIn() {
  const out = document.getElementById("signout");
  if (!session.auth || out) return;
  document.querySelector(".top").append(h("button", { type: "button", id: "signout",
    class: "small", onclick: async () => {
      await api.signOut();
      Object.assign(session, { auth: false, role: null, project: null });
      document.getElementById("signout").remove();
      signIn("Signed out.");
    } }, `Sign out (${session.project || "every project"}, ${session.role})`));
}

// The page and the question of who is signed in start together (one round trip less
// before the first chart); a page that needs the answer listens for "kittiwake:session".
async function start() {
  const rendered = route();
  try {
    Object.assign(session, await api.session());
  } catch (error) {
    if (error.status === 401) {
      signIn();
      return;
    }
    throw error;
  }
  signedIn();
  window.dispatchEvent(new Event("kittiwake:session"));
  await rendered;
}

window.addEventListener("hashchange", route);
window.addEventListener("kittiwake:signin", () => {
  if (document.getElementById("token")) return; // the form is up already
  signIn(session.role ? "Your token is no longer valid." : "");
});
start();
