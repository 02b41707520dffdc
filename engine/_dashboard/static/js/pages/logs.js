// The logs viewer: a run's text series (its captured stdout and stderr, and any other text
// it logged), one key at a time, following new lines as they are logged.
import { api } from "../api.js";
import { clear, download, formatTime, h } from "../dom.js";
import { update } from "../router.js";

const TAIL = 5000; // lines read when a key is opened; the whole series is a download away
const OUTPUT = ["logs/stdout", "logs/stderr"];

/** Text keys, captured output first. */
export function textKeys(contents) {
  const keys = [...contents].filter(([, c]) => c.kind === "text").map(([k]) => k);
  const rank = (k) => (OUTPUT.includes(k) ? OUTPUT.indexOf(k) : OUTPUT.length);
  return keys.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0));
}

export function logsView(ctx) {
  const { project, runId } = ctx;
  let key = null, lines = [], follow = true, filterText = "";
  const picker = h("select", { id: "log-key", onchange: () => open(picker.value) });
  const filter = h("input", { type: "search", id: "log-filter", placeholder: "only lines with…",
    oninput: () => { filterText = filter.value; draw(); } });
  const following = h("input", { type: "checkbox", id: "log-follow", checked: true,
    onchange: () => { follow = following.checked; if (follow) toEnd(); } });
  const note = h("span", { class: "muted log-note" });
  const box = h("div", { class: "log", role: "log", tabindex: "0",
                         "aria-label": "Log lines" });
  const el = h("section", { class: "card logs", "aria-label": "Logs" },
    h("div", { class: "section-head" },
      h("label", { for: "log-key" }, "Series"), picker,
      h("label", { for: "log-filter", class: "visually-hidden" }, "Filter lines"), filter,
      h("label", { class: "check" }, following, "Follow"),
      h("button", { type: "button", class: "small", onclick: () => save() }, "Download"),
      note),
    box);
  // Scrolling up stops following; scrolling back to the end follows again.
  box.addEventListener("scroll", () => {
    const atEnd = box.scrollHeight - box.scrollTop - box.clientHeight < 4;
    if (atEnd !== follow) { follow = atEnd; following.checked = atEnd; }
  });

  function keys() {
    const found = textKeys(ctx.contents);
    const shown = [...picker.options].map((o) => o.value);
    if (JSON.stringify(found) !== JSON.stringify(shown)) {
      clear(picker).append(...found.map((k) => h("option", { value: k, selected: k === key },
                                                 k)));
    }
    return found;
  }

  async function open(which) {
    key = which;
    picker.value = which;
    update({ log: which });
    lines = [];
    draw();
    const found = await api.entries(project, runId, which, TAIL);
    if (key !== which) return;
    // Lines that arrived live while this was read are kept after it.
    const last = found.length ? found[found.length - 1].step : -Infinity;
    lines = [...found, ...lines.filter((l) => l.step > last)];
    draw();
  }

  function lineEl(line) {
    return h("div", { class: "line" }, h("span", { class: "n", title: formatTime(
      new Date(line.time * 1000)) }, String(line.step)), h("span", { class: "t" }, line.value));
  }

  function matches(line) {
    return !filterText || line.value.includes(filterText);
  }

  function draw() {
    box.classList.toggle("stderr", key === "logs/stderr");
    const shown = lines.filter(matches);
    clear(box).append(...shown.map(lineEl));
    if (!shown.length) box.append(h("p", { class: "muted" }, lines.length
      ? "No line matches the filter." : key ? "No lines yet." : "No text logged."));
    const total = key && ctx.contents.get(key);
    const cut = lines.length >= TAIL;
    note.textContent = cut ? `the last ${TAIL.toLocaleString()} lines`
      + (total && total.last !== null ? ` (up to line ${total.last})` : "") : "";
    if (follow) toEnd();
  }

  function toEnd() {
    box.scrollTop = box.scrollHeight;
  }

  async function save() {
    if (!key) return;
    const all = await api.entries(project, runId, key);
    download(`${runId}-${key.replace(/[^\w.-]+/g, "_")}.txt`,
             new Blob([all.map((l) => `${l.value}\n`).join("")], { type: "text/plain" }));
  }

  return {
    el,
    async load() {
      const found = keys();
      const asked = ctx.params.get("log");
      if (found.length) await open(found.includes(asked) ? asked : found[0]);
      else draw();
    },
    event(e) {
      if (e.type !== "TextLogged") return;
      const found = keys();
      if (!key && found.length) { open(found[0]); return; }
      const logged = e.data.text[key];
      if (!logged) return;
      const last = lines.length ? lines[lines.length - 1].step : -Infinity;
      const fresh = [];
      logged.steps.forEach((step, i) => {
        if (step > last) fresh.push({ step, time: logged.timestamps[i], value: logged.values[i] });
      });
      if (!fresh.length) return;
      lines.push(...fresh);
      if (lines.length > 2 * TAIL) {
        lines = lines.slice(-TAIL);
        draw();
        return;
      }
      // New lines are appended, not redrawn: a long log follows at no cost.
      const empty = box.querySelector("p.muted");
      if (empty) empty.remove();
      box.append(...fresh.filter(matches).map(lineEl));
      if (follow) toEnd();
    },
  };
}
