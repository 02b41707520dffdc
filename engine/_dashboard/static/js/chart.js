// One chart of one metric, for one run or several overlaid, drawn with uPlot.
//
// Points come from the server already downsampled to the chart's width (each bucket keeps
// its first, last, min and max point, so spikes show). Dragging across the chart zooms: the
// finer points of that range are fetched; a double click goes back to the whole series.
// Live points are appended to the data uPlot already holds, and the long series is fetched
// again only once it has grown well past what the width needs.
import uPlot from "../vendor/uplot/uPlot.esm.js";
import { download, formatNumber, h } from "./dom.js";

export const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2",
                        "#db2777", "#65a30d", "#ea580c", "#4f46e5", "#0d9488", "#9333ea"];
const HEIGHT = 220;
const PER_PIXEL = 4; // a bucket per pixel, four points per bucket

/** Chart settings shared by every chart of a page: smoothing, log scale and the x axis. */
export function settings(params) {
  const smoothing = Number(params.get("smooth") || 0);
  return {
    smoothing: Number.isFinite(smoothing) ? Math.min(0.99, Math.max(0, smoothing)) : 0,
    log: params.get("log") === "1",
    x: ["step", "relative", "wall"].includes(params.get("x")) ? params.get("x") : "step",
  };
}

export class Chart {
  /**
   * @param metric the metric's name (the chart's title)
   * @param lines [{key, label, color}] one per run
   * @param fetch async (line, {low, high, maxPoints}) => {steps, values, times} | null
   * @param options {settings, starts: Map(key -> seconds the run started)}
   */
  constructor(metric, lines, fetch, options) {
    this.metric = metric;
    this.lines = lines;
    this.fetch = fetch;
    this.settings = options.settings;
    this.starts = options.starts || new Map();
    this.data = new Map();
    this.zoom = null;
    this.plot = null;
    this.frame = 0;
    this.refetching = false;
    this.loaded = false;
    this.note = h("span", { class: "muted zoom-note" });
    this.canvasBox = h("div", { class: "plot", role: "img",
                                "aria-label": `Chart of ${metric}` },
                       h("p", { class: "muted" }, "Loading…"));
    this.el = h("figure", { class: "chart", dataset: { metric } },
      h("figcaption", {}, h("span", { class: "title" }, metric), this.note,
        h("span", { class: "actions" },
          h("button", { type: "button", class: "small", onclick: () => this.csv(),
                        title: `Download the points of ${metric} as CSV` }, "CSV"),
          h("button", { type: "button", class: "small", onclick: () => this.png(),
                        title: `Download ${metric} as a PNG image` }, "PNG"))),
      this.canvasBox);
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(this.canvasBox);
  }

  width() {
    return Math.max(200, Math.floor(this.canvasBox.clientWidth || this.el.clientWidth || 400));
  }

  maxPoints() {
    return this.width() * PER_PIXEL;
  }

  /** Fetch every line at this chart's width (within `range`, [lowStep, highStep], if given). */
  async load(range = null) {
    const maxPoints = this.maxPoints();
    const found = await Promise.all(this.lines.map((line) => this.fetch(line, {
      low: range ? range[0] : undefined, high: range ? range[1] : undefined, maxPoints,
    })));
    this.lines.forEach((line, i) => {
      const s = found[i];
      const fresh = s ? { steps: Array.from(s.steps), values: Array.from(s.values),
                          times: Array.from(s.times) } : { steps: [], values: [], times: [] };
      // Live points that arrived while this was fetched, and that it does not hold yet.
      const old = this.data.get(line.key);
      if (!range && old) {
        const last = fresh.steps.length ? fresh.steps[fresh.steps.length - 1] : -Infinity;
        for (let j = 0; j < old.steps.length; j++) {
          if (old.steps[j] <= last) continue;
          fresh.steps.push(old.steps[j]);
          fresh.values.push(old.values[j]);
          fresh.times.push(old.times[j]);
        }
      }
      this.data.set(line.key, fresh);
    });
    this.zoom = range;
    this.loaded = true;
    this.note.textContent = range ? `steps ${formatNumber(range[0])}–${formatNumber(range[1])}`
      + " · double-click to reset" : "";
    this.draw(true);
  }

  /** Append live points of one line (steps at or below its last one are already here). */
  append(key, steps, values, times) {
    if (!this.lines.some((l) => l.key === key)) return;
    if (!this.data.has(key)) this.data.set(key, { steps: [], values: [], times: [] });
    const line = this.data.get(key); // before the first load too: load() keeps what is newer
    const last = line.steps.length ? line.steps[line.steps.length - 1] : -Infinity;
    let added = 0;
    for (let i = 0; i < steps.length; i++) {
      if (steps[i] <= last) continue;
      if (this.zoom && steps[i] > this.zoom[1]) continue;
      line.steps.push(steps[i]);
      line.values.push(values[i]);
      line.times.push(times[i]);
      added++;
    }
    if (!added || !this.loaded) return;
    if (!this.zoom && line.steps.length > 2 * this.maxPoints() && !this.refetching) {
      this.refetching = true;
      this.load(null).finally(() => { this.refetching = false; });
      return;
    }
    if (!this.frame) {
      this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(false); });
    }
  }

  xs(key, line) {
    if (this.settings.x === "step") return line.steps;
    if (this.settings.x === "wall") return line.times;
    const start = this.starts.get(key) ?? (line.times.length ? line.times[0] : 0);
    return line.times.map((t) => t - start);
  }

  ys(values) {
    const log = this.settings.log;
    return values.map((v) => (Number.isFinite(v) && (!log || v > 0) ? v : null));
  }

  tables() {
    const w = this.settings.smoothing;
    return this.lines.map((line) => {
      const d = this.data.get(line.key) || { steps: [], values: [], times: [] };
      const y = this.ys(d.values);
      return { x: this.xs(line.key, d), raw: y, smooth: w > 0 ? smooth(y, w) : null };
    });
  }

  alignedData(tables) {
    if (tables.length === 1) {
      const t = tables[0];
      return t.smooth ? [t.x, t.raw, t.smooth] : [t.x, t.raw];
    }
    return uPlot.join(tables.map((t) => [t.x, t.smooth || t.raw]));
  }

  options(smoothed) {
    const s = this.settings;
    const series = [{ label: s.x === "step" ? "step" : s.x === "wall" ? "time" : "seconds",
                      value: s.x === "wall" ? (u, v) => (v === null ? "–" : wallTime(v, 0.001))
                        : undefined }];
    if (this.lines.length === 1) {
      const color = this.lines[0].color || PALETTE[0];
      series.push({ label: smoothed ? "raw" : this.lines[0].label, stroke: smoothed
        ? `${color}55` : color, width: 1, value: (u, v) => fmt(v) });
      if (smoothed) series.push({ label: "smoothed", stroke: color, width: 1.5,
                                  value: (u, v) => fmt(v) });
    } else {
      this.lines.forEach((line, i) => series.push({
        label: line.label, stroke: line.color || PALETTE[i % PALETTE.length], width: 1.5,
        spanGaps: true, value: (u, v) => fmt(v) }));
    }
    return {
      width: this.width(), height: HEIGHT, series,
      scales: { x: { time: s.x === "wall" }, y: s.log ? { distr: 3 } : {} },
      axes: [s.x === "wall" ? { size: 36, space: wallSpace, values: wallTicks } : { size: 36 },
             { size: axisWidth, values: (u, ticks) => ticks.map(tick) }],
      legend: { live: true },
      cursor: { drag: { x: true, y: false, setScale: false },
                bind: { dblclick: () => () => null } },
      hooks: { setSelect: [(u) => this.selected(u)], draw: [() => this.painted()] },
    };
  }

  draw(fresh) {
    // What is drawn, for whoever watches the page (tests, benchmarks): the points and the
    // highest step.
    let points = 0, lastStep = -Infinity;
    for (const d of this.data.values()) {
      points += d.steps.length;
      if (d.steps.length) lastStep = Math.max(lastStep, d.steps[d.steps.length - 1]);
    }
    this.el.dataset.points = String(points);
    this.el.dataset.lastStep = Number.isFinite(lastStep) ? String(lastStep) : "";
    const tables = this.tables();
    const smoothed = this.lines.length === 1 && tables[0].smooth !== null;
    const data = this.alignedData(tables);
    if (this.plot && !fresh && this.plot.series.length === data.length) {
      this.plot.setData(data); // the same uPlot instance, its data grown: no new chart
      return;
    }
    if (this.plot) this.plot.destroy();
    this.canvasBox.replaceChildren();
    this.plot = new uPlot(this.options(smoothed), data, this.canvasBox);
    this.plot.over.addEventListener("dblclick", () => { if (this.zoom) this.load(null); });
  }

  /** Each time the canvas is drawn: a performance mark, for benchmarks to time. */
  painted() {
    performance.mark("kittiwake:chart-drawn", { detail: {
      metric: this.metric, points: Number(this.el.dataset.points),
      lastStep: Number(this.el.dataset.lastStep) } });
  }

  selected(u) {
    const { left, width } = u.select;
    if (width < 3) return;
    u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
    const lo = u.posToVal(left, "x"), hi = u.posToVal(left + width, "x");
    const steps = [];
    for (const line of this.lines) {
      const d = this.data.get(line.key);
      if (!d) continue;
      const xs = this.xs(line.key, d);
      for (let i = 0; i < xs.length; i++) if (xs[i] >= lo && xs[i] <= hi) steps.push(d.steps[i]);
    }
    if (!steps.length) return;
    this.load([Math.min(...steps), Math.max(...steps)]);
  }

  resize() {
    if (this.plot) this.plot.setSize({ width: this.width(), height: HEIGHT });
  }

  /** Every point of the shown range at full resolution, as CSV. */
  async csv() {
    const rows = [["run", "step", "value", "timestamp"]];
    for (const line of this.lines) {
      const s = await this.fetch(line, { low: this.zoom?.[0], high: this.zoom?.[1] });
      if (!s) continue;
      for (let i = 0; i < s.steps.length; i++) {
        rows.push([line.label, s.steps[i], csvNumber(s.values[i]),
                   new Date(s.times[i] * 1000).toISOString()]);
      }
    }
    const text = rows.map((r) => r.map(csvCell).join(",")).join("\n") + "\n";
    download(`${fileName(this.metric)}.csv`, new Blob([text], { type: "text/csv" }));
  }

  png() {
    if (!this.plot) return;
    this.plot.ctx.canvas.toBlob((blob) => download(`${fileName(this.metric)}.png`, blob),
                                "image/png");
  }

  destroy() {
    this.resizer.disconnect();
    cancelAnimationFrame(this.frame);
    if (this.plot) this.plot.destroy();
    this.plot = null;
  }
}

/** Exponential moving average with TensorBoard's debiasing; gaps stay gaps. */
export function smooth(values, weight) {
  const out = new Array(values.length);
  let last = 0, n = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null) { out[i] = null; continue; }
    last = last * weight + (1 - weight) * v;
    n++;
    out[i] = last / (1 - weight ** n);
  }
  return out;
}

// Tick labels: short (three significant digits), and the axis as wide as its longest one.
function tick(v) {
  if (v === null || v === undefined) return "";
  const abs = Math.abs(v);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return Number(v.toPrecision(3)).toExponential();
  return String(Number(v.toPrecision(4)));
}

// Wall-time ticks on one line, as precise as their spacing: "14:05" a few minutes apart,
// "14:05:09" seconds apart, "14:05:09.25" within a second (a fast run's points are
// milliseconds apart). The date is added where it changes, and on the first tick.
export function wallTicks(u, splits, axis, space, increment) {
  let day = null;
  return splits.map((v) => {
    if (v === null || v === undefined) return "";
    const d = new Date(v * 1000);
    const today = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    const text = increment >= 86400 ? today : wallTime(v, increment);
    const label = increment < 86400 && today !== day && increment >= 60 ? `${today} ${text}`
      : text;
    day = today;
    return label;
  });
}

/** A time of day, down to the digits `increment` (seconds) needs. */
export function wallTime(v, increment) {
  const d = new Date(v * 1000);
  const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
  if (increment >= 60) return hm;
  const digits = increment >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(increment) - 1e-9));
  const ms = String(d.getMilliseconds()).padStart(3, "0").slice(0, digits);
  return `${hm}:${pad(d.getSeconds())}${digits ? `.${ms}` : ""}`;
}

// Room per tick: enough for the longest label the range will need.
function wallSpace(u, axis, min, max) {
  return max - min < 60 ? 110 : max - min < 86400 ? 90 : 70;
}

function pad(n) {
  return String(n).padStart(2, "0");
}

function axisWidth(u, values) {
  const longest = Math.max(0, ...(values || []).map((s) => String(s).length));
  return Math.max(40, 14 + longest * 7);
}

function fmt(v) {
  return v === null || v === undefined ? "–" : formatNumber(v);
}

function csvNumber(v) {
  return Number.isNaN(v) ? "nan" : v === Infinity ? "inf" : v === -Infinity ? "-inf" : String(v);
}

function csvCell(value) {
  const text = String(value);
  // A cell a spreadsheet would run as a formula is prefixed with a quote.
  const safe = /^[=+\-@\t\r]/.test(text) && !/^-?[\d.]+(e[+-]?\d+)?$|^-inf$/i.test(text)
    ? `'${text}` : text;
  return /[",\n\r]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

function fileName(metric) {
  return metric.replace(/[^\w.-]+/g, "_");
}
