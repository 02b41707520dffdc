// The run's files: its file attributes (uploads) and file series, with sizes and downloads;
// images shown as previews, a series of them with a slider through its steps.
import { api, blobUrl } from "../api.js";
import { clear, formatTime, formatValue, h } from "../dom.js";
import { stepSlider } from "./plots.js";

// Shown inline: raster images, which a browser decodes without running anything.
const PREVIEW = new Set(["image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"]);

export function formatSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes, unit = -1;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A file attribute as the run's state lists it. */
function attribute([key, step, name, digest, size, media_type, timestamp, caption, width,
                   height]) {
  return { key, step, name, digest, size, media_type, timestamp, caption, width, height };
}

const EXTENSIONS = { "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
                     "image/webp": ".webp", "text/plain": ".txt", "application/json": ".json" };

/** The file's own name, or one made of its key and step (bytes logged have no name). */
function fileName(ref, key, step) {
  if (ref.name) return ref.name;
  return key.replace(/[^\w.-]+/g, "_") + (step === null || step === undefined ? ""
    : `-${step}`) + (EXTENSIONS[ref.media_type] || ".bin");
}

function downloadLink(ref, key, step) {
  const name = fileName(ref, key, step);
  return h("a", { href: blobUrl(ref.digest), download: name, title: `Download ${name}` },
           "Download");
}

function fileRow(key, ref, step) {
  return h("tr", { dataset: { key } },
    h("th", { scope: "row" }, key),
    h("td", { class: "num" }, step === null ? "" : formatValue(step)),
    h("td", {}, ref.name || h("span", { class: "muted" }, fileName(ref, key, step))),
    h("td", { class: "muted" }, ref.media_type || ""),
    h("td", { class: "num", title: `${ref.size} bytes` }, formatSize(ref.size)),
    h("td", {}, downloadLink(ref, key, step)));
}

/** One image series: the image at a step, chosen with a slider (the newest first). */
function gallery(key, entries, ctx) {
  const figure = h("figure", { class: "image-card card", dataset: { key } });
  const img = h("img", { alt: "" });
  const caption = h("figcaption", {});
  function show(i) {
    const { step, time, value } = entries[i];
    img.src = blobUrl(value.digest);
    img.alt = value.caption || `${key} at step ${formatValue(step)}`;
    if (value.width) { img.width = value.width; img.height = value.height; }
    clear(caption).append(h("strong", {}, key), step === null ? "" : ` · step ${formatValue(step)}`,
      value.caption ? ` · ${value.caption}` : "", " · ",
      h("span", { class: "muted" }, formatTime(new Date(time * 1000))), " · ",
      downloadLink(value, key, step));
  }
  const slider = stepSlider(key, entries, show, ctx);
  figure.append(h("div", { class: "image-box" }, img), caption, slider.el);
  slider.start();
  return figure;
}

export function filesView(ctx) {
  const { project, runId } = ctx;
  const images = h("div", { class: "image-grid" });
  const table = h("div", {});
  const el = h("section", { class: "files", "aria-label": "Files" },
    h("h2", {}, "Images"), images, h("section", { class: "card" }, h("h2", {}, "Files"), table));
  let loading = null, again = false;

  async function load() {
    const keys = [...ctx.contents].filter(([, c]) => c.kind === "file").map(([k]) => k).sort();
    const [run, ...series] = await Promise.all([api.run(project, runId), ...keys.map(
      (k) => api.entries(project, runId, k))]);
    const rows = [];
    clear(images);
    keys.forEach((key, i) => {
      const entries = series[i];
      const pictures = entries.filter((e) => PREVIEW.has(e.value.media_type));
      if (pictures.length) images.append(gallery(key, pictures, ctx));
      for (const e of entries) rows.push(fileRow(key, e.value, e.step));
    });
    for (const key of Object.keys(run?.files || {}).sort()) {
      const ref = attribute(run.files[key]);
      rows.push(fileRow(key, ref, null));
      if (PREVIEW.has(ref.media_type)) {
        images.append(gallery(key, [{ step: null, time: ref.timestamp.getTime() / 1000,
                                      value: ref }], ctx));
      }
    }
    if (!images.children.length) images.append(h("p", { class: "muted" }, "No images."));
    clear(table).append(rows.length ? h("table", { class: "grid-table" },
      h("thead", {}, h("tr", {}, ["Key", "Step", "Name", "Type", "Size", ""].map((c, i) =>
        h("th", { scope: "col", class: i === 1 || i === 4 ? "num" : null }, c)))),
      h("tbody", {}, rows)) : h("p", { class: "muted" }, "No files logged."));
  }

  // Live: reload when files arrive, once at a time (a burst of events is one reload).
  function reload() {
    if (loading) { again = true; return; }
    loading = new Promise((r) => setTimeout(r, 200)).then(load).finally(() => {
      loading = null;
      if (again) { again = false; reload(); }
    });
  }

  return {
    el, load,
    event(e) {
      if (e.type === "FilesLogged" || e.type === "FilesUploaded") reload();
    },
  };
}
