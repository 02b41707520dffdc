// Views live in the URL's hash (#/runs?project=…&q=…), so any view can be shared, bookmarked
// and reloaded as it was. Changing a view's state (a sort, a query) replaces the entry
// rather than piling up history; opening another page adds one.

export function current() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const at = hash.indexOf("?");
  const path = at < 0 ? hash : hash.slice(0, at);
  const params = new URLSearchParams(at < 0 ? "" : hash.slice(at + 1));
  return { path: path || "/", params };
}

export function href(path, params = {}) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    if (Array.isArray(value)) {
      if (value.length) search.set(key, value.join(","));
    } else {
      search.set(key, String(value));
    }
  }
  const qs = search.toString();
  return `#${path}${qs ? `?${qs}` : ""}`;
}

/** Update the current view's parameters in place (no new history entry, no re-render). */
export function update(changes) {
  const { path, params } = current();
  const merged = Object.fromEntries(params.entries());
  Object.assign(merged, changes);
  history.replaceState(history.state, "", href(path, merged));
}

export function list(params, key) {
  const raw = params.get(key);
  return raw ? raw.split(",").filter(Boolean) : [];
}
