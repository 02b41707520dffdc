// The run page's tabs: the overview and charts, then what else the run records, one tab per
// kind (logs, files, histograms, confusion matrices). The tab is in the address, so a link
// opens it; a tab's content is built the first time it is shown and follows the run live.
import { clear, h } from "../dom.js";
import { update } from "../router.js";

// A tab's module is loaded when the tab is first opened: the charts, which most visits are
// for, do not wait for code they do not use.
const TABS = [
  { id: "overview", label: "Overview" },
  { id: "logs", label: "Logs", kinds: ["text"],
    make: () => import("./logs.js").then((m) => m.logsView) },
  { id: "files", label: "Files", kinds: ["file", "file attribute"],
    make: () => import("./files.js").then((m) => m.filesView) },
  { id: "histograms", label: "Histograms", kinds: ["histogram"],
    make: () => import("./plots.js").then((m) => m.histogramsView) },
  { id: "matrices", label: "Confusion matrices", kinds: ["confusion matrix"],
    make: () => import("./plots.js").then((m) => m.matricesView) },
];

// Which event logs which kind of key, and the payload field that holds the keys.
const CONTENT_EVENTS = {
  TextLogged: ["text", "text"], FilesLogged: ["files", "file"],
  FilesUploaded: ["files", "file attribute"], HistogramsLogged: ["histograms", "histogram"],
  ConfusionMatricesLogged: ["matrices", "confusion matrix"],
};

/**
 * @param overview the overview tab's content
 * @param ctx {project, runId, contents: Map(key -> {kind, last}), params, run: () => state}
 */
export function contentTabs(overview, ctx) {
  const asked = ctx.params.get("tab");
  // The step chosen in each histogram, matrix or image series (a key left out follows the
  // newest), in the address as `at={"key": step}`, so that a link shows the same steps.
  try {
    const at = JSON.parse(ctx.params.get("at") || "{}");
    ctx.steps = at && typeof at === "object" && !Array.isArray(at) ? at : {};
  } catch {
    ctx.steps = {};
  }
  ctx.chose = (key, step) => {
    if (step === null) delete ctx.steps[key];
    else ctx.steps[key] = step;
    update({ at: Object.keys(ctx.steps).length ? JSON.stringify(ctx.steps) : "" });
  };
  let active = TABS.some((t) => t.id === asked) ? asked : "overview";
  const views = new Map();
  const panels = new Map([["overview", overview]]);
  const buttons = new Map();
  const bar = h("div", { class: "tabs", role: "tablist", "aria-label": "Run sections" });
  const el = h("div", {}, bar);

  for (const tab of TABS) {
    const button = h("button", { type: "button", role: "tab", id: `tab-${tab.id}`,
      "aria-controls": `panel-${tab.id}`, onclick: () => select(tab.id),
      onkeydown: (e) => move(e, tab.id) }, tab.label, " ", h("span", { class: "count" }));
    buttons.set(tab.id, button);
    bar.append(button);
    if (!panels.has(tab.id)) panels.set(tab.id, h("div", {}));
    el.append(Object.assign(panels.get(tab.id), { id: `panel-${tab.id}` }));
    panels.get(tab.id).setAttribute("role", "tabpanel");
    panels.get(tab.id).setAttribute("aria-labelledby", `tab-${tab.id}`);
  }

  function counts() {
    for (const tab of TABS) {
      if (!tab.kinds) continue;
      const n = [...ctx.contents.values()].filter((c) => tab.kinds.includes(c.kind)).length;
      buttons.get(tab.id).querySelector(".count").textContent = n ? String(n) : "";
    }
  }

  function select(id, focus = false) {
    active = id;
    update({ tab: id === "overview" ? "" : id });
    for (const tab of TABS) {
      const on = tab.id === id;
      const button = buttons.get(tab.id);
      button.setAttribute("aria-selected", String(on));
      button.tabIndex = on ? 0 : -1;
      panels.get(tab.id).hidden = !on;
      if (on && tab.make && !views.has(tab.id)) open(tab);
    }
    if (focus) buttons.get(id).focus();
  }

  function open(tab) {
    const panel = panels.get(tab.id);
    // Events that come while the module loads wait for it, in order.
    const waiting = [];
    views.set(tab.id, { event: (e) => waiting.push(e) });
    clear(panel).append(h("p", { class: "muted" }, "Loading…"));
    tab.make().then((make) => {
      const made = make(ctx);
      views.set(tab.id, made);
      clear(panel).append(made.el);
      return made.load().then(() => waiting.forEach((e) => made.event(e)));
    }).catch((error) => {
      console.warn(error);
      panel.append(h("p", { class: "error", role: "alert" }, error.message));
    });
  }

  // Arrow keys move between tabs, as in any tab list.
  function move(e, id) {
    const at = TABS.findIndex((t) => t.id === id);
    const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: TABS.length - 1 }[e.key];
    if (to === undefined) return;
    e.preventDefault();
    select(TABS[(to + TABS.length) % TABS.length].id, true);
  }

  function event(e) {
    const logged = CONTENT_EVENTS[e.type];
    if (!logged) return;
    const [field, kind] = logged;
    for (const [key, value] of Object.entries(e.data[field] || {})) {
      const steps = kind === "text" ? value.steps : Array.isArray(value)
        ? value.map((v) => v.step) : [null];
      const last = steps.length ? steps[steps.length - 1] : null;
      ctx.contents.set(key, { kind, last });
    }
    counts();
    for (const view of views.values()) view.event(e);
  }

  counts();
  select(active);
  return {
    el, event,
    destroy() { for (const view of views.values()) view.destroy?.(); },
  };
}
