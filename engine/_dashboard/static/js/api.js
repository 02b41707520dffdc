// Calls to the server's HTTP API. Errors come back as ApiError, with the engine's error
// type, the bad field and, for a query, the position of the problem.
import { fromWire } from "./wire.js";

export class ApiError extends Error {
  constructor(status, info) {
    super(info.message || `the server answered ${status}`);
    this.status = status;
    this.type = info.type || "HTTPError";
    this.field = info.field ?? null;
    this.position = info.position ?? null;
    this.query = info.query ?? null;
  }
}

/** The project as a path segment: each part escaped, its slashes kept. */
export function projectPath(project) {
  return project.split("/").map(encodeURIComponent).join("/");
}

async function call(method, path, { params, body } = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null) continue;
    if (Array.isArray(value)) value.forEach((v) => url.searchParams.append(key, v));
    else url.searchParams.set(key, String(value));
  }
  const init = { method, headers: { accept: "application/json" } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const response = await fetch(url, init);
  let data = null;
  try {
    data = fromWire(await response.json());
  } catch {
    data = null;
  }
  if (response.status === 401 && path !== "/api/v1/session") {
    window.dispatchEvent(new Event("kittiwake:signin"));
  }
  if (!response.ok) throw new ApiError(response.status, (data && data.error) || {});
  return data;
}

/** Where a stored file's bytes are read (the token's cookie goes with the request). */
export function blobUrl(digest) {
  return `/api/v1/blobs/${encodeURIComponent(digest)}`;
}

export const get = (path, params) => call("GET", path, { params });
export const post = (path, body) => call("POST", path, { body });

export const api = {
  projects: () => get("/api/v1/projects").then((d) => Object.entries(d.projects)
    .map(([project, runs]) => ({ project, runs }))),
  head: () => get("/api/v1/head").then((d) => d.head),
  runs: (project, params) =>
    get(`/api/v1/projects/${projectPath(project)}/runs`, params).then((d) => d.runs),
  run: (project, runId) =>
    get(`/api/v1/projects/${projectPath(project)}/run`, { run_id: runId }).then((d) => d.run),
  lineage: (project, runId) =>
    get(`/api/v1/projects/${projectPath(project)}/lineage`, { run_id: runId })
      .then((d) => d.lineage),
  experiment: (project, name) =>
    get(`/api/v1/projects/${projectPath(project)}/experiment`, { name }),
  series: (project, runId, metric, { low, high, maxPoints } = {}) =>
    get(`/api/v1/projects/${projectPath(project)}/series`, {
      run_id: runId, metric, low, high, max_points: maxPoints,
    }).then((d) => d.series && { steps: d.series[0], values: d.series[1], times: d.series[2] }),
  session: () => get("/api/v1/session"),
  signIn: (token) => post("/api/v1/session", { token }),
  signOut: () => call("DELETE", "/api/v1/session"),
  tags: (project, runId, { add = [], remove = [] }) =>
    post(`/api/v1/projects/${projectPath(project)}/tags`, { run_id: runId, add, remove }),
  notes: (project, runId, notes) =>
    post(`/api/v1/projects/${projectPath(project)}/notes`, { run_id: runId, notes }),
  /** Each key the run records besides metrics: Map(key -> {kind, last}). */
  contents: (project, runId) =>
    get(`/api/v1/projects/${projectPath(project)}/contents`, { run_id: runId })
      .then((d) => new Map(Object.entries(d.contents || {}).map(
        ([key, [kind, last]]) => [key, { kind, last }]))),
  /** A text, file, histogram or confusion-matrix series: [{step, time, value}] in step
   *  order (the last `tail` of them when given). */
  entries: (project, runId, key, tail) =>
    get(`/api/v1/projects/${projectPath(project)}/entries`, { run_id: runId, key, tail })
      .then((d) => (d.entries ? d.entries[1] : []).map(([step, time, value]) =>
        ({ step, time, value }))),
  abort: (project, runId, reason) =>
    post(`/api/v1/projects/${projectPath(project)}/abort`, { run_id: runId, reason }),
};
