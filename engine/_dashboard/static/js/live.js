// The project's log, live: one EventSource per view, on the server-sent events route. The
// browser resumes a dropped stream by itself with Last-Event-ID (each event's id is its log
// position), so nothing is skipped or repeated; a stream the server refused is opened again
// from the last position seen.
import { projectPath } from "./api.js";
import { fromWire } from "./wire.js";

export const EVENT_TYPES = [
  "RunCreated", "RunResumed", "ConfigsLogged", "MetricsLogged", "TagsAdded", "TagsRemoved",
  "StatusChanged", "AbortRequested", "RunDeleted", "NotesSet", "TextLogged", "FilesLogged",
  "FilesUploaded", "HistogramsLogged", "ConfusionMatricesLogged", "EnvCaptured",
];

const indicator = () => document.getElementById("live");

function show(state) {
  const el = indicator();
  if (!el) return;
  el.dataset.state = state;
  el.textContent = state === "live" ? "● live" : state === "connecting" ? "○ connecting…"
    : state === "off" ? "" : "○ reconnecting…";
}

/**
 * Follow the project's events after `from` (a position), calling onEvent(event) for each.
 * Returns a function that stops following.
 */
export function follow(project, from, filters, onEvent) {
  let last = from;
  let source = null;
  let stopped = false;
  let retry = null;
  const state = filters.quiet ? () => {} : show;

  const open = () => {
    const params = new URLSearchParams({ from: String(last) });
    for (const key of ["runs", "types", "metrics"]) {
      for (const value of filters[key] || []) params.append(key, value);
    }
    source = new EventSource(`/api/v1/projects/${projectPath(project)}/events?${params}`);
    state("connecting");
    const handle = (message) => {
      const event = fromWire(JSON.parse(message.data));
      if (event.position <= last) return;
      last = event.position;
      onEvent(event);
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, handle);
    source.onopen = () => state("live");
    source.onerror = () => {
      if (stopped) return;
      if (source.readyState === EventSource.CLOSED) {
        // Refused (not a dropped connection, which the browser retries itself).
        state("reconnecting");
        source.close();
        retry = setTimeout(open, 2000);
      } else {
        state("reconnecting");
      }
    };
  };
  open();
  return () => {
    stopped = true;
    clearTimeout(retry);
    if (source) source.close();
    state("off");
  };
}
