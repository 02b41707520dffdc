// Histograms over steps and confusion matrices as heatmaps. A histogram series is drawn as
// a heatmap of value × step (each step's row scaled to its own largest bin) above the
// chosen step's bars; a confusion matrix is a table whose cells are shaded by their share
// of the true label's row. A slider chooses the step; new steps arrive live.
import { api } from "../api.js";
import { clear, formatNumber, formatValue, h } from "../dom.js";

const ROWS = 200; // at most this many steps in a heatmap; longer series are sampled evenly
const HEAT = [37, 99, 235]; // the accent colour, at full weight

function shade(weight) {
  const mix = (c) => Math.round(255 - (255 - c) * weight);
  return `rgb(${mix(HEAT[0])}, ${mix(HEAT[1])}, ${mix(HEAT[2])})`;
}

/** A tab of one card per key of `kind`, each made by `card(key, entries)`. */
function perKey(ctx, kind, noun, card, eventType, field) {
  const el = h("section", { class: `plots ${kind.replace(" ", "-")}` });
  const cards = new Map();

  async function add(key) {
    const entries = await api.entries(ctx.project, ctx.runId, key);
    const made = card(key, entries, ctx);
    cards.set(key, made);
    const next = [...el.children].find((c) => c.dataset.key > key);
    el.querySelector(":scope > p.muted")?.remove();
    el.insertBefore(made.el, next || null);
  }

  return {
    el,
    async load() {
      const keys = [...ctx.contents].filter(([, c]) => c.kind === kind).map(([k]) => k).sort();
      await Promise.all(keys.map(add));
      if (!keys.length) el.append(h("p", { class: "muted" }, `No ${noun} logged.`));
    },
    event(e) {
      if (e.type !== eventType) return;
      for (const [key, items] of Object.entries(e.data[field])) {
        const found = cards.get(key);
        if (!found) { add(key); continue; }
        found.add(items.map(({ step, timestamp, ...value }) =>
          ({ step, time: timestamp, value })));
      }
    },
    destroy() { for (const c of cards.values()) c.destroy?.(); },
  };
}

/** A step slider over `entries` that calls pick(i); `grow()` after entries were added.
 *  The step chosen is kept in the address through ctx.chose, and `start()` picks the one
 *  the address names (the newest when it names none). */
export function stepSlider(key, entries, pick, ctx) {
  const output = h("output", {});
  const input = h("input", { type: "range", min: "0", step: "1", "aria-label": `Step of ${key}`,
    oninput: () => choose(Number(input.value), true) });
  let following = true; // at the last step: stays there as new steps come
  function choose(i, chosen = false) {
    following = i === entries.length - 1;
    input.value = String(i);
    output.textContent = `step ${formatValue(entries[i].step)}`;
    if (chosen) ctx.chose(key, following ? null : entries[i].step);
    pick(i);
  }
  const el = h("div", { class: "step-slider" }, input, output);
  function grow() {
    input.max = String(entries.length - 1);
    el.hidden = entries.length < 2; // one step: nothing to choose
    if (following) choose(entries.length - 1);
  }
  function start() {
    const at = entries.findIndex((e) => e.step === ctx.steps[key]);
    choose(at < 0 ? entries.length - 1 : at);
  }
  input.max = String(entries.length - 1);
  el.hidden = entries.length < 2;
  return { el, choose: (i) => choose(i, true), grow, start };
}

function merge(entries, items) {
  const last = entries.length ? entries[entries.length - 1].step : -Infinity;
  const fresh = items.filter((e) => e.step > last);
  entries.push(...fresh);
  return fresh.length;
}

// Histograms -------------------------------------------------------------------------------

export function histogramsView(ctx) {
  return perKey(ctx, "histogram", "histograms", histogramCard, "HistogramsLogged",
                "histograms");
}

function histogramCard(key, entries, ctx) {
  const heat = h("canvas", { class: "heatmap", height: "160", role: "img" });
  const bars = h("canvas", { class: "bars", height: "140", role: "img" });
  const stepLabels = h("div", { class: "axis-steps muted" });
  const valueLabels = h("div", { class: "axis-values muted" });
  const summary = h("p", { class: "hist-summary" });
  const barLabels = h("div", { class: "axis-values muted" });
  const bins = h("tbody", {});
  let chosen = entries.length - 1;
  const slider = stepSlider(key, entries, (i) => { chosen = i; drawStep(); drawHeat(); }, ctx);
  const el = h("figure", { class: "card plot-card", dataset: { key } },
    h("figcaption", {}, h("span", { class: "title" }, key)),
    h("div", { class: "heat-wrap" }, stepLabels, heat, h("span", {}), valueLabels),
    slider.el, summary, bars, barLabels,
    h("details", {}, h("summary", {}, "Bins"), h("table", { class: "grid-table bins" },
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "From"),
        h("th", { scope: "col" }, "To"), h("th", { scope: "col", class: "num" }, "Count"))),
      bins)));
  heat.addEventListener("click", (e) => {
    const rows = sampled();
    const row = Math.floor(e.offsetY / (heat.clientHeight / rows.length));
    if (rows[row] !== undefined) slider.choose(rows[row]);
  });

  function range() {
    let lo = Infinity, hi = -Infinity;
    for (const { value } of entries) {
      lo = Math.min(lo, value.edges[0]);
      hi = Math.max(hi, value.edges[value.edges.length - 1]);
    }
    return hi > lo ? [lo, hi] : [lo - 0.5, lo + 0.5];
  }

  function sampled() {
    if (entries.length <= ROWS) return entries.map((_, i) => i);
    const out = [];
    for (let r = 0; r < ROWS; r++) out.push(Math.round(r * (entries.length - 1) / (ROWS - 1)));
    return out;
  }

  function fit(canvas) {
    const width = Math.max(200, Math.floor(canvas.clientWidth || 400));
    const ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio;
    canvas.height = Number(canvas.getAttribute("height")) * ratio;
    const c = canvas.getContext("2d");
    c.scale(ratio, ratio);
    return [c, width, Number(canvas.getAttribute("height"))];
  }

  function drawHeat() {
    const [c, width, height] = fit(heat);
    const [lo, hi] = range();
    const rows = sampled();
    const rowHeight = height / rows.length;
    const x = (v) => ((v - lo) / (hi - lo)) * width;
    c.fillStyle = "#fff";
    c.fillRect(0, 0, width, height);
    rows.forEach((index, r) => {
      const { edges, counts } = entries[index].value;
      const top = Math.max(1, ...counts);
      for (let b = 0; b < counts.length; b++) {
        if (!counts[b]) continue;
        c.fillStyle = shade(0.15 + 0.85 * (counts[b] / top));
        const x0 = x(edges[b]);
        c.fillRect(x0, r * rowHeight, Math.max(1, x(edges[b + 1]) - x0), Math.ceil(rowHeight));
      }
      if (index === chosen) {
        c.strokeStyle = "#d97706";
        c.lineWidth = 2;
        c.strokeRect(1, r * rowHeight + 1, width - 2, Math.max(2, rowHeight - 2));
      }
    });
    heat.setAttribute("aria-label", `${key}: ${entries.length} steps from `
      + `${formatValue(entries[0].step)} to ${formatValue(entries[entries.length - 1].step)}`);
    clear(stepLabels).append(h("span", {}, `step ${formatValue(entries[0].step)}`),
      h("span", {}, `step ${formatValue(entries[entries.length - 1].step)}`));
    clear(valueLabels).append(h("span", {}, formatNumber(lo)),
      h("span", {}, formatNumber((lo + hi) / 2)), h("span", {}, formatNumber(hi)));
  }

  function drawStep() {
    const { step, value } = entries[chosen];
    const { edges, counts } = value;
    const total = counts.reduce((a, b) => a + b, 0);
    let mean = 0;
    for (let b = 0; b < counts.length; b++) mean += counts[b] * (edges[b] + edges[b + 1]) / 2;
    summary.textContent = `step ${formatValue(step)} · ${formatValue(total)} values in `
      + `${counts.length} bins from ${formatNumber(edges[0])} to `
      + `${formatNumber(edges[edges.length - 1])}`
      + (total ? ` · mean ≈ ${formatNumber(mean / total)}` : "");
    // The step's own range: a narrow late histogram is not a sliver of the first one's.
    const [c, width, height] = fit(bars);
    const lo = edges[0], hi = edges[edges.length - 1] > lo ? edges[edges.length - 1] : lo + 1;
    clear(barLabels).append(h("span", {}, formatNumber(lo)),
      h("span", {}, formatNumber((lo + hi) / 2)), h("span", {}, formatNumber(hi)));
    const top = Math.max(1, ...counts);
    const x = (v) => ((v - lo) / (hi - lo)) * width;
    c.clearRect(0, 0, width, height);
    c.fillStyle = shade(0.8);
    for (let b = 0; b < counts.length; b++) {
      const barHeight = (counts[b] / top) * (height - 4);
      const x0 = x(edges[b]);
      c.fillRect(x0 + 0.5, height - barHeight, Math.max(1, x(edges[b + 1]) - x0 - 1), barHeight);
    }
    bars.setAttribute("aria-label", summary.textContent);
    clear(bins).append(...Array.from(counts, (n, b) => h("tr", {},
      h("td", {}, formatNumber(edges[b])), h("td", {}, formatNumber(edges[b + 1])),
      h("td", { class: "num" }, formatValue(n)))));
  }

  const resizer = new ResizeObserver(() => { drawHeat(); drawStep(); });
  requestAnimationFrame(() => resizer.observe(heat));
  slider.start();
  return {
    el,
    add(items) { if (merge(entries, items)) { slider.grow(); drawHeat(); } },
    destroy() { resizer.disconnect(); },
  };
}

// Confusion matrices ---------------------------------------------------------------------

export function matricesView(ctx) {
  return perKey(ctx, "confusion matrix", "confusion matrices", matrixCard,
                "ConfusionMatricesLogged", "matrices");
}

function matrixCard(key, entries, ctx) {
  const table = h("table", { class: "matrix" });
  const summary = h("p", { class: "matrix-summary" });
  const normal = h("input", { type: "checkbox", onchange: () => draw() });
  let chosen = entries.length - 1;
  const slider = stepSlider(key, entries, (i) => { chosen = i; draw(); }, ctx);
  const el = h("figure", { class: "card plot-card", dataset: { key } },
    h("figcaption", {}, h("span", { class: "title" }, key),
      h("label", { class: "check" }, normal, "Share of each true label")),
    slider.el, summary, h("div", { class: "matrix-wrap" }, table));

  function draw() {
    const { step, value } = entries[chosen];
    const labels = value.labels;
    const n = labels.length;
    const cell = (i, j) => value.matrix[i * n + j];
    let total = 0, right = 0;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) total += cell(i, j);
      right += cell(i, i);
    }
    summary.textContent = `step ${formatValue(step)} · ${formatValue(total)} items · `
      + `accuracy ${total ? formatNumber(Math.round((right / total) * 10000) / 100) : "–"}%`;
    const share = normal.checked;
    clear(table).append(
      h("caption", { class: "visually-hidden" }, `${key} at step ${formatValue(step)}: `
        + "rows are true labels, columns predicted labels"),
      h("thead", {}, h("tr", {}, h("th", { class: "corner", scope: "col" }, "true \\ predicted"),
        labels.map((l) => h("th", { scope: "col" }, l)))),
      h("tbody", {}, labels.map((label, i) => {
        let row = 0;
        for (let j = 0; j < n; j++) row += cell(i, j);
        return h("tr", {}, h("th", { scope: "row" }, label), labels.map((_, j) => {
          const weight = row ? cell(i, j) / row : 0;
          return h("td", { class: `num${i === j ? " diagonal" : ""}`,
            style: `background: ${shade(weight)}; color: ${weight > 0.55 ? "#fff" : "inherit"}`,
            title: `true ${label}, predicted ${labels[j]}: ${cell(i, j)}` },
            share ? `${formatNumber(Math.round(weight * 1000) / 10)}%` : formatValue(cell(i, j)));
        }));
      })));
  }

  slider.start();
  return { el, add(items) { if (merge(entries, items)) slider.grow(); } };
}
