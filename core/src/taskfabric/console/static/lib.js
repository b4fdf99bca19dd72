// Shared by every page: API calls with the session's CSRF token, element building,
// formatting, typed value rendering, and polling that pauses while the tab is hidden.

const main = document.getElementById("main");
export const args = JSON.parse((main && main.dataset.args) || "{}");
export const role = document.body.dataset.role || "viewer";
export const canLaunch = role === "launcher" || role === "admin";
export const isAdmin = role === "admin";
const csrf = (document.querySelector('meta[name="csrf"]') || {}).content || "";
export const ENDED = ["SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"];
export const seg = encodeURIComponent;

export class ApiError extends Error {
  constructor(status, body) {
    super(body.detail || `HTTP ${status}`);
    this.status = status;
    this.input = body.input || null;
    // every input at fault (a launch missing several), the first being `input`
    this.inputs = body.inputs || (body.input ? [body.input] : []);
  }
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v === null || v === undefined || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.append(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

// The answers of the page's first calls, asked by the server through this same API when it
// served the page (_inline.py): each is taken once, by the first call to its URL, and every
// later call (a refresh) is fetched.
const firstEl = document.getElementById("tf-initial");
const first = firstEl ? JSON.parse(firstEl.textContent) : {};

// Marks the page drawn with its data (body[data-loaded]: ms since the navigation started),
// once: what the tests wait for and bench/bench_console.py times.
export function loaded() {
  if (!document.body.dataset.loaded) document.body.dataset.loaded = String(Math.round(performance.now()));
}

export async function api(path, { method = "GET", body, params } = {}) {
  const url = `/api/v1${path}${query(params)}`;
  if (method === "GET" && Object.hasOwn(first, url)) {
    const found = first[url];
    delete first[url];
    return found;
  }
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    const next = location.pathname + location.search;
    location.href = `/console/signin?next=${seg(next)}`;
    throw new ApiError(401, { detail: "signed out" });
  }
  const data = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new ApiError(response.status, data || {});
  return data;
}

// Sends a file's bytes as they are (POST .../uploads): the answer's `ref` is then an input.
export async function upload(path, file, params) {
  const response = await fetch(`/api/v1${path}${query(params)}`, {
    method: "POST",
    headers: { Accept: "application/json", "X-CSRF-Token": csrf, "Content-Type": "application/octet-stream" },
    credentials: "same-origin",
    body: file,
  });
  const data = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new ApiError(response.status, data || {});
  return data;
}

// h("a", {href: "/", class: "x", onclick: f}, "text", child, [more])
export function h(tag, attrs, ...children) {
  const svg = ["svg", "g", "rect", "path", "text", "title", "tspan", "defs", "marker"];
  const el = svg.includes(tag)
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  const add = (c) => {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) c.forEach(add);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  };
  children.forEach(add);
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  for (const c of children.flat()) if (c) el.append(c);
}

const pad = (n) => String(n).padStart(2, "0");

export function fmtTime(epoch) {
  if (epoch === null || epoch === undefined) return "";
  const d = new Date(epoch * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function span(startedAt, finishedAt) {
  if (!startedAt) return "";
  return fmtDuration((finishedAt || Date.now() / 1000) - startedAt);
}

export function phaseClass(phase) {
  return `phase-${String(phase || "").toLowerCase().replace(/[^a-z]+/g, "-")}`;
}

export function badge(phase) {
  return h("span", { class: `badge ${phaseClass(phase)}`, "data-phase": phase }, phase);
}

export function errorBox(err) {
  return h("p", { class: "error", role: "alert" }, err instanceof Error ? err.message : String(err));
}

// Calls `fn` now and then every `ms` after each call ends, not while the tab is hidden.
// `fn` returning false stops it.
export function poll(fn, ms) {
  let timer = null;
  let stopped = false;
  const run = async () => {
    timer = null;
    if (stopped) return;
    if (document.hidden) {
      timer = setTimeout(run, ms);
      return;
    }
    let again = true;
    try {
      again = (await fn()) !== false;
    } catch (err) {
      console.error(err);
    }
    if (again && !stopped) timer = setTimeout(run, ms);
  };
  run();
  return {
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
    now() {
      if (timer) clearTimeout(timer);
      run();
    },
  };
}

// Files, directories and dataframes among an execution's values: named by execution, node,
// side, name and place inside the value (never by URI), previewed on demand and downloaded
// through the API.
function valueQuery(where) {
  return query({ node: where.node || "", side: where.side, name: where.name, at: where.at.join("/") });
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function previewBody(p) {
  const parts = [];
  if (p.columns.length) {
    parts.push(h(
      "table",
      { class: "value preview-rows" },
      h("thead", {}, h("tr", {}, p.columns.map((c) => h("th", {}, c)))),
      h("tbody", {}, p.rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c === null ? "null" : String(c)))))),
    ));
    const total = p.total_rows === null ? (p.truncated ? " (there is more)" : "") : ` of ${p.total_rows}`;
    parts.push(h("p", { class: "muted small" }, `first ${p.rows.length} rows${total}`));
  }
  if (p.kind === "file" && !p.columns.length) {
    parts.push(p.binary
      ? h("p", { class: "muted" }, "not text: download it")
      : h("pre", { class: "preview-text" }, p.text));
    if (!p.binary) parts.push(h("p", { class: "muted small" }, `first ${p.lines} lines${p.truncated ? " (there is more)" : ""}`));
  }
  if (p.kind === "dataframe" && p.files.length) {
    parts.push(h("p", { class: "muted small preview-parts" }, `stored as ${p.files.length} part files: the download is a tar of them`));
  }
  if (p.kind === "directory") {
    parts.push(p.files.length ? h("ul", { class: "preview-files" }, p.files.map((f) => h("li", {}, h("code", {}, f)))) : h("p", { class: "muted" }, "empty"));
    if (p.truncated) parts.push(h("p", { class: "muted small" }, "and more files"));
  }
  return parts;
}

function blobValue(value, where) {
  const name = value.uri.replace(/\/+$/, "").split("/").pop();
  const label = value.kind === "dataframe" ? `dataframe (${value.format || "parquet"})` : value.kind || "file";
  const size = value.size_bytes ? `, ${fmtBytes(value.size_bytes)}` : "";
  if (!where) {
    return h("span", { class: "blob" }, h("span", { class: "muted" }, `${label} `), h("code", {}, value.uri));
  }
  const base = `/api/v1/executions/${seg(where.ref)}/values`;
  const body = h("div", { class: "preview-body" }, h("p", { class: "muted" }, "loading…"));
  const details = h("details", { class: "preview", "data-kind": value.kind }, h("summary", {}, "preview"), body);
  let loaded = false;
  details.addEventListener("toggle", () => {
    if (!details.open || loaded) return;
    loaded = true;
    api(`/executions/${seg(where.ref)}/values/preview`, { params: { node: where.node || "", side: where.side, name: where.name, at: where.at.join("/") } })
      .then((p) => replace(body, previewBody(p)))
      .catch((err) => {
        loaded = false;
        replace(body, errorBox(err));
      });
  });
  return h(
    "div",
    { class: "blob", "data-kind": value.kind, title: value.uri },
    h("span", { class: "muted" }, `${label} `),
    h("code", {}, name),
    h("span", { class: "muted" }, size),
    // A directory (and a dataframe stored as part files) comes as one archive of its files.
    value.kind === "directory"
      ? [" ", h("a", { class: "download", "data-archive": "tar", href: `${base}/download${valueQuery(where)}&archive=tar`, download: true }, "download .tar"),
         " ", h("a", { class: "download", "data-archive": "zip", href: `${base}/download${valueQuery(where)}&archive=zip`, download: true }, ".zip")]
      : [" ", h("a", { class: "download", href: `${base}/download${valueQuery(where)}`, download: true }, "download")],
    details,
  );
}

// Typed values: records and lists of records as tables, files, directories and dataframes
// as links with a preview (`where`: which value it is, for the API; null: URIs only).
export function renderValue(value, depth = 0, where = null) {
  const inside = (key) => (where ? { ...where, at: [...where.at, String(key)] } : null);
  if (value === null || value === undefined) return h("span", { class: "muted" }, "null");
  if (typeof value !== "object") return h("code", {}, JSON.stringify(value));
  if (Array.isArray(value)) {
    const shown = value.slice(0, 50);
    const more = value.length > shown.length ? h("li", { class: "muted" }, `… ${value.length - shown.length} more`) : null;
    const blobs = shown.every((v) => v && typeof v === "object" && typeof v.uri === "string");
    const records = !blobs && shown.length > 0 && shown.every((v) => v && typeof v === "object" && !Array.isArray(v));
    if (records && depth < 2) {
      const cols = [...new Set(shown.flatMap((v) => Object.keys(v)))];
      return h(
        "div",
        {},
        h(
          "table",
          { class: "value" },
          h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
          h("tbody", {}, shown.map((v, i) => h("tr", {}, cols.map((c) => h("td", {}, renderValue(v[c], depth + 1, inside(i) && { ...inside(i), at: [...inside(i).at, c] })))))),
        ),
        more ? h("p", { class: "muted" }, more.textContent) : null,
      );
    }
    if (shown.every((v) => v === null || typeof v !== "object")) {
      return h("code", {}, `[${shown.map((v) => JSON.stringify(v)).join(", ")}${more ? ", …" : ""}]` + (more ? ` (${value.length} items)` : ""));
    }
    return h("ol", { class: "value" }, shown.map((v, i) => h("li", {}, renderValue(v, depth + 1, inside(i)))), more);
  }
  if (typeof value.uri === "string") return blobValue(value, where);
  return h(
    "table",
    { class: "value record" },
    h("tbody", {}, Object.entries(value).map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, renderValue(v, depth + 1, inside(k)))))),
  );
}

// `source`: {ref, node} of the values (node "": the execution's own), for file links.
export function parametersTable(params, what, source = null) {
  if (!params || params.length === 0) return h("p", { class: "muted" }, `no ${what}`);
  return h(
    "table",
    { class: "params", "data-what": what },
    h(
      "tbody",
      {},
      params.map((p) =>
        h(
          "tr",
          { "data-name": p.name },
          h("th", {}, p.name, h("div", { class: "type" }, p.type)),
          h("td", {}, p.set ? renderValue(p.value, 0, source ? { ...source, side: what, name: p.name, at: [] } : null) : h("span", { class: "muted" }, "not set")),
        ),
      ),
    ),
  );
}

// Projects and domains this token sees, for the selectors (asked once a page).
let projectsPromise = null;
export function projects() {
  projectsPromise = projectsPromise || api("/projects");
  return projectsPromise;
}

export function select(attrs, options, selected) {
  return h(
    "select",
    attrs,
    options.map(([value, label]) => h("option", { value, selected: value === selected }, label)),
  );
}
