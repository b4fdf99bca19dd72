// One execution: facts, actions, the DAG (laid out here: columns by longest path from the
// inputs) with nodes coloured by phase and refreshed every second while it runs, and a
// panel with the selected node's attempts, typed inputs and outputs, items and logs.
import {
  ENDED, api, args, badge, canLaunch, errorBox, fmtDuration, fmtTime, h, parametersTable,
  loaded, phaseClass, poll, replace, seg, span,
} from "./lib.js";

const main = document.getElementById("main");
const W = 176;
const H = 62;
const GAP_X = 48;
const GAP_Y = 22;
const PAD = 12;
const ORDER = ["SUCCEEDED", "RUNNING", "WAITING", "QUEUED", "FAILED", "TIMED_OUT", "ABORTED", "SKIPPED", "NOT STARTED", "NOT TAKEN"];

let graph = null;
let selected = null;
let lastGraph = "";
let lastDetail = "";
const facts = h("div", { id: "facts" });
const actions = h("div", { class: "actions", id: "actions" });
const message = h("div", { id: "message" });
const dag = h("div", { class: "card dag", id: "dag" });
const values = h("div", { id: "values" });
const detailArea = h("div", { id: "node-detail" }, h("p", { class: "muted" }, "Select a node to see its attempts, inputs, outputs and logs."));
const logArea = h("div", { id: "log-area" });
const valuesArea = h("div", { id: "node-values" });
const panel = h("div", { class: "card", id: "panel" }, detailArea, logArea, valuesArea);
// Streams one attempt's log from the API: the next bytes from `offset` every second until
// the attempt has ended and all of it was read.
const LOG_LIMIT = 2 * 1024 * 1024;
let follower = null;

function followLog(nodeId, attempt, auto = false) {
  if (follower) follower.stop();
  const key = `${nodeId}#${attempt}`;
  const pre = h("pre", { class: "log", id: "log", "data-node": nodeId, "data-attempt": attempt });
  const state = h("span", { class: "muted", id: "log-state" }, "loading…");
  replace(logArea, h("h3", {}, `Log of attempt ${attempt} `, state), pre);
  let offset = 0;
  let shown = 0;
  const path = `/executions/${seg(graph.execution.id)}/logs/${nodeId.split("/").map(seg).join("/")}`;
  const self = poll(async () => {
    let piece;
    try {
      piece = await api(path, { params: { attempt, offset } });
    } catch (err) {
      if (err.status === 404) {
        state.textContent = "no log for this attempt";
        return false;
      }
      throw err;
    }
    if (piece.text && shown < LOG_LIMIT) {
      const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.append(piece.text);
      shown += piece.text.length;
      if (atBottom) pre.scrollTop = pre.scrollHeight;
    }
    offset = piece.next_offset;
    state.textContent = piece.complete ? `(${piece.source}, complete)` : `(${piece.source}, following…)`;
    pre.dataset.complete = piece.complete ? "true" : "false";
    return !piece.complete;
  }, 1000);
  follower = { key, auto, stop: self.stop };
}


// Sub-workflows and branches are drawn collapsed (their nodes counted by phase) until
// their toggle is clicked; expanded, their own nodes are laid out inside them.
const HEAD = 30;
const expanded = new Set();

function composite(n) {
  return (n.kind === "workflow" || n.kind === "branch") && n.nodes && n.nodes.length > 0;
}

// Columns by longest path from the inputs; a column is as wide as its widest box and its
// boxes are stacked, so an expanded node makes room for its nodes.
function layout(nodes) {
  const byId = new Map(nodes.map((n) => [n.node_id, n]));
  const rank = new Map();
  const rankOf = (n, seen = new Set()) => {
    if (rank.has(n.node_id)) return rank.get(n.node_id);
    if (seen.has(n.node_id)) return 0;
    seen.add(n.node_id);
    const ups = n.upstream.map((u) => byId.get(u)).filter(Boolean);
    const r = ups.length ? 1 + Math.max(...ups.map((u) => rankOf(u, seen))) : 0;
    rank.set(n.node_id, r);
    return r;
  };
  const columns = [];
  const inner = new Map();
  const size = new Map();
  for (const n of nodes) {
    const r = rankOf(n);
    (columns[r] = columns[r] || []).push(n);
    if (composite(n) && expanded.has(n.node_id)) {
      const sub = layout(n.nodes);
      inner.set(n.node_id, sub);
      size.set(n.node_id, { w: Math.max(W, sub.width), h: HEAD + sub.height });
    } else {
      size.set(n.node_id, { w: W, h: H });
    }
  }
  const at = new Map();
  let x = PAD;
  let height = 0;
  columns.forEach((col) => {
    let y = PAD;
    let widest = W;
    for (const n of col) {
      const { w, h: ht } = size.get(n.node_id);
      at.set(n.node_id, { x, y, w, h: ht });
      y += ht + GAP_Y;
      widest = Math.max(widest, w);
    }
    height = Math.max(height, y);
    x += widest + GAP_X;
  });
  return { at, inner, width: Math.max(PAD * 2 + W, x - GAP_X + PAD), height: Math.max(height + PAD, PAD * 2 + H + GAP_Y) };
}

function clip(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}

function counts(children) {
  return ORDER.filter((p) => children[p]).map((p) => [p, children[p]]);
}

function nodeText(n) {
  const parts = [n.phase === "NOT STARTED" ? "not started" : n.phase.toLowerCase()];
  if (n.attempts > 1) parts.push(`${n.attempts} attempts`);
  if (["hit", "miss", "written"].includes(n.cache_status)) parts.push(`cache ${n.cache_status === "hit" ? "hit" : "miss"}`);
  if (n.started_at) parts.push(span(n.started_at, n.finished_at));
  return parts.join(" · ");
}

function edgesOf(nodes, at) {
  const edges = [];
  for (const n of nodes) {
    const b = at.get(n.node_id);
    for (const u of n.upstream) {
      const a = at.get(u);
      if (!a) continue;
      let d;
      if (b.x - (a.x + a.w) > GAP_X) {
        // It skips a column: under the boxes of its row, bottom to bottom, so it is never
        // hidden behind (or mistaken for an edge of) the nodes in between.
        const below = Math.max(a.y + a.h, b.y + b.h) + GAP_Y * 0.75;
        const xa = a.x + a.w / 2;
        const xb = b.x + b.w / 2;
        d = `M${xa},${a.y + a.h} C${xa},${below} ${xb},${below} ${xb},${b.y + b.h + 4}`;
      } else {
        const x1 = a.x + a.w;
        const y1 = a.y + Math.min(a.h, H) / 2;
        const x2 = b.x;
        const y2 = b.y + Math.min(b.h, H) / 2;
        d = `M${x1},${y1} C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2 - 4},${y2}`;
      }
      edges.push(h("path", { class: "edge", d, "marker-end": "url(#arrow)" }));
    }
  }
  return edges;
}

function toggle(n, w) {
  const open = expanded.has(n.node_id);
  const flip = (ev) => {
    ev.stopPropagation();
    if (open) expanded.delete(n.node_id);
    else expanded.add(n.node_id);
    drawDag();
  };
  return h(
    "g",
    {
      class: "toggle", transform: `translate(${w - 26},6)`, role: "button", tabindex: 0,
      "data-toggle": n.node_id, "aria-expanded": open ? "true" : "false",
      "aria-label": `${open ? "collapse" : "expand"} ${n.name}`,
      onclick: flip, onkeydown: (ev) => (ev.key === "Enter" ? flip(ev) : null),
    },
    h("title", {}, open ? "collapse" : `expand: its ${n.kind === "branch" ? "cases" : "nodes"}`),
    h("rect", { width: 20, height: 18, rx: 3 }),
    h("text", { x: 10, y: 13.5, "text-anchor": "middle" }, open ? "−" : "+"),
  );
}

function drawNodes(nodes, l) {
  const boxes = nodes.map((n) => {
    const { x, y, w, h: ht } = l.at.get(n.node_id);
    const kids = counts(n.children);
    const total = kids.reduce((s, [, c]) => s + c, 0);
    const open = l.inner.has(n.node_id);
    let offset = 0;
    const bar = open ? [] : kids.map(([p, c]) => {
      const bw = ((W - 16) * c) / total;
      const r = h("rect", { class: `bar ${phaseClass(p)}`, x: 8 + offset, y: H - 12, width: bw, height: 6 });
      offset += bw;
      return r;
    });
    const summary = kids.map(([p, c]) => `${c} ${p.toLowerCase()}`).join(" · ");
    const unit = n.kind === "map" ? "item" : n.kind === "branch" ? "case" : "node";
    const label = `${n.case ? `${n.case}: ` : ""}${n.name.split(".").pop()}${n.kind === "task" ? "" : ` (${n.kind})`}`;
    const pick = (ev) => {
      ev.stopPropagation();
      select(n.node_id);
    };
    return h(
      "g",
      {
        class: `node ${phaseClass(n.phase)}${selected === n.node_id ? " selected" : ""}${open ? " expanded" : ""}`,
        transform: `translate(${x},${y})`,
        "data-node-id": n.node_id,
        "data-phase": n.phase,
        "data-kind": n.kind,
        "data-name": n.name,
        "data-case": n.case || null,
        "data-counts": summary,
        tabindex: 0,
        role: "button",
        onclick: pick,
        onkeydown: (ev) => (ev.key === "Enter" && ev.target === ev.currentTarget ? pick(ev) : null),
      },
      h("title", {}, `${n.name} (${n.kind}) ${n.phase}${summary ? `: ${summary}` : ""}`),
      h("rect", { class: "box", width: w, height: ht }),
      h("text", { x: 10, y: 19 }, clip(label, composite(n) ? 22 : 26)),
      open
        ? h("g", { class: "inner", transform: `translate(0,${HEAD})` }, drawNodes(n.nodes, l.inner.get(n.node_id)))
        : h("text", { class: "sub", x: 10, y: 36 }, clip(kids.length ? `${total} ${unit}${total === 1 ? "" : "s"}: ${summary}` : nodeText(n), 30)),
      bar,
      composite(n) ? toggle(n, w) : null,
    );
  });
  return [edgesOf(nodes, l.at), boxes];
}

function drawDag() {
  const l = layout(graph.nodes);
  const svg = h(
    "svg",
    { class: "dag-svg", width: l.width, height: l.height, viewBox: `0 0 ${l.width} ${l.height}`, role: "img", "aria-label": "workflow graph" },
    h("defs", {}, h("marker", { id: "arrow", viewBox: "0 0 8 8", refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto" }, h("path", { d: "M0,0 L8,4 L0,8 z", class: "arrowhead" }))),
    drawNodes(graph.nodes, l),
  );
  replace(dag, svg);
}

async function act(label, call) {
  replace(message);
  try {
    const result = await call();
    if (result && result.execution && result.execution.id && result.execution.id !== graph.execution.id) {
      location.href = `/console/executions/${result.execution.id}`;
      return;
    }
    replace(message, h("p", { class: "muted" }, `${label}: done`));
    lastGraph = "";
    poller.now();
  } catch (err) {
    replace(message, errorBox(err));
  }
}

function drawFacts() {
  const e = graph.execution;
  const ref = seg(e.id);
  replace(
    facts,
    h("div", { class: "title" }, h("h1", {}, e.name, " ", badge(e.phase))),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Id"), h("dd", {}, h("code", {}, e.id)),
      h("dt", {}, "Workflow"), h("dd", {}, `${e.workflow} `, h("span", { class: "muted" }, e.workflow_version)),
      h("dt", {}, "Project/domain"), h("dd", {}, `${e.project}/${e.domain}`),
      e.launch_plan ? [h("dt", {}, "Launch plan"), h("dd", {}, e.launch_plan)] : null,
      h("dt", {}, "Created"), h("dd", {}, fmtTime(e.created_at)),
      h("dt", {}, "Duration"), h("dd", { id: "duration" }, span(e.started_at, e.finished_at) || "not started"),
      e.error ? [h("dt", {}, "Error"), h("dd", {}, h("span", { class: "error", id: "execution-error" }, `${e.error.code}: ${e.error.message}`))] : null,
    ),
  );
  const buttons = [];
  if (canLaunch && !ENDED.includes(e.phase)) {
    buttons.push(h("button", { type: "button", class: "danger", id: "cancel", onclick: () => {
      if (confirm(`Cancel execution ${e.name}?`)) act("cancel", () => api(`/executions/${ref}/cancel`, { method: "POST", body: { reason: "cancelled in the console" } }));
    } }, "Cancel"));
  }
  if (canLaunch && ENDED.includes(e.phase)) {
    buttons.push(h("button", { type: "button", id: "relaunch", onclick: () => act("relaunch", () => api(`/executions/${ref}/relaunch`, { method: "POST", body: {} })) }, "Relaunch"));
  }
  if (canLaunch && ["FAILED", "ABORTED", "TIMED_OUT"].includes(e.phase)) {
    buttons.push(h("button", { type: "button", id: "resume", onclick: () => act("resume", () => api(`/executions/${ref}/recover`, { method: "POST" })) }, "Resume"));
  }
  replace(actions, buttons);
}

function drawValues() {
  replace(
    values,
    h("h2", {}, "Inputs"), parametersTable(graph.inputs, "inputs", { ref: graph.execution.id, node: "" }),
    h("h2", {}, "Outputs"), parametersTable(graph.outputs, "outputs", { ref: graph.execution.id, node: "" }),
  );
}

function logLinks(links) {
  if (!links || links.length === 0) return null;
  return h("ul", { class: "logs" }, links.map((l) => {
    const web = /^https?:/.test(l.uri);
    return h("li", {}, web ? h("a", { href: l.uri, target: "_blank", rel: "noopener", class: "log-link" }, l.name || l.uri) : [h("span", { class: "log-link" }, `${l.name || "log"}: `), h("code", {}, l.uri)]);
  }));
}

function attemptsTable(node) {
  if (!node.attempt_details.length) return h("p", { class: "muted" }, "no attempts yet");
  return h(
    "table",
    { class: "list", id: "attempts" },
    h("thead", {}, h("tr", {}, ["#", "Phase", "Backend", "Started", "Duration", ""].map((c) => h("th", {}, c)))),
    h("tbody", {}, node.attempt_details.map((a) => [
      h("tr", { "data-attempt": a.attempt },
        h("td", {}, a.attempt), h("td", {}, badge(a.phase)), h("td", {}, a.backend),
        h("td", { title: fmtTime(a.started_at) }, fmtTime(a.started_at).slice(11)), h("td", {}, span(a.started_at, a.finished_at)),
        h("td", {}, h("button", { type: "button", class: "show-log", onclick: () => followLog(node.node_id, a.attempt) }, "log"))),
      a.log_links && a.log_links.length ? h("tr", { "data-attempt": a.attempt, class: "links" }, h("td", { colspan: 6 }, logLinks(a.log_links))) : null,
      a.error ? h("tr", {}, h("td", { colspan: 6 }, h("pre", { class: "error" }, `${a.error.code || a.error.kind || "error"}: ${a.error.message || ""}${a.error.traceback ? `\n\n${a.error.traceback}` : ""}`))) : null,
    ])),
  );
}

async function drawPanel() {
  if (!selected) return;
  const id = graph.execution.id;
  const detail = await api(`/executions/${seg(id)}/nodes/${selected.split("/").map(seg).join("/")}/detail`);
  const text = JSON.stringify(detail);
  if (text === lastDetail) return;
  lastDetail = text;
  const n = detail.node;
  const attempts = n.attempt_details.map((a) => a.attempt);
  const latest = `${n.node_id}#${attempts[attempts.length - 1]}`;
  const other = !follower || !follower.key.startsWith(`${n.node_id}#`);
  if (attempts.length && (other || (follower.auto && follower.key !== latest))) {
    // a new node, or a retry of the node whose latest attempt was followed: follow the latest
    followLog(n.node_id, attempts[attempts.length - 1], true);
  } else if (!attempts.length) {
    if (follower) follower.stop();
    follower = null;
    replace(logArea);
  }
  const up = n.parent_id ? h("button", { type: "button", id: "node-up", onclick: () => select(n.parent_id) }, `↑ ${n.parent_id}`) : null;
  replace(
    detailArea,
    h("div", { class: "title" }, h("h2", { id: "node-title" }, n.name || n.node_id), badge(n.phase), up),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Node"), h("dd", {}, h("code", {}, n.node_id), ` ${n.kind}`),
      n.task_name ? [h("dt", {}, "Task"), h("dd", {}, n.task_name)] : null,
      h("dt", {}, "Cache"), h("dd", { id: "cache-status", "data-cache": n.cache_status }, cacheText(n.cache_status, detail.cache_source)),
      h("dt", {}, "Duration"), h("dd", {}, span(n.started_at, n.finished_at)),
      n.message ? [h("dt", {}, "Message"), h("dd", {}, n.message)] : null,
    ),
    n.error ? h("pre", { class: "error", id: "node-error" }, `${n.error.code || n.error.kind || "error"}: ${n.error.message || ""}${n.error.traceback ? `\n\n${n.error.traceback}` : ""}`) : null,
    poolWaits(detail.pool_waits),
    h("h3", {}, "Attempts"), attemptsTable(n),
  );
  replace(
    valuesArea,
    h("h3", {}, "Inputs"), parametersTable(detail.inputs, "inputs", { ref: id, node: n.node_id }),
    h("h3", {}, "Outputs"), parametersTable(detail.outputs, "outputs", { ref: id, node: n.node_id }),
    itemsArea,
  );
  await drawItems(n, detail);
}

// A node's map items (or nodes), a page at a time, filtered by phase: the first page comes
// with the panel; other pages and filters from GET .../items (a keyset: `after` the last
// item of the page before; the cursors of the pages before are kept for "← Previous").
const ITEMS_PAGE = 50;
const itemsArea = h("div", { id: "items-area" });
let items = { node: null, phases: [], cursors: [""] };

async function drawItems(n, detail) {
  if (items.node !== n.node_id) items = { node: n.node_id, phases: [], cursors: [""] };
  const counts = detail.children_counts || {};
  const all = Object.values(counts).reduce((a, b) => a + b, 0);
  if (!all) return replace(itemsArea);
  const after = items.cursors[items.cursors.length - 1];
  let page;
  if (!items.phases.length && !after) {
    page = { items: detail.children, total: all, next_after: detail.children_next };
  } else {
    const path = `/executions/${seg(graph.execution.id)}/nodes/${n.node_id.split("/").map(seg).join("/")}/items`;
    page = await api(path, { params: { phase: items.phases, after, limit: ITEMS_PAGE } });
  }
  const first = (items.cursors.length - 1) * ITEMS_PAGE;
  const again = () => drawItems(n, detail).catch((err) => replace(itemsArea, errorBox(err)));
  const filter = (phase) => {
    const on = items.phases.includes(phase);
    items.phases = phase === null ? [] : on ? items.phases.filter((p) => p !== phase) : [...items.phases, phase];
    items.cursors = [""];
    again();
  };
  const unit = n.kind === "map" ? "Items" : "Nodes";
  replace(
    itemsArea,
    h("h3", {}, unit),
    h(
      "div",
      { class: "item-phases", id: "item-phases" },
      h("button", { type: "button", class: items.phases.length ? "chip" : "chip on", "data-phase": "", onclick: () => filter(null) }, `all ${all}`),
      counts ? ORDER.filter((p) => counts[p]).map((p) => h(
        "button",
        { type: "button", class: `chip ${phaseClass(p)}${items.phases.includes(p) ? " on" : ""}`, "data-phase": p, "aria-pressed": items.phases.includes(p) ? "true" : "false", onclick: () => filter(p) },
        `${p.toLowerCase()} ${counts[p]}`,
      )) : null,
    ),
    page.items.length
      ? h("table", { class: "list", id: "items" }, h("tbody", {}, page.items.map((c) =>
          h("tr", { "data-node-id": c.node_id }, h("td", {}, h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); select(c.node_id); } }, c.name || c.node_id)),
            h("td", {}, badge(c.phase)), h("td", {}, span(c.started_at, c.finished_at))))))
      : h("p", { class: "muted" }, "none in these phases"),
    h(
      "div",
      { class: "pager", id: "items-pager" },
      h("button", { type: "button", id: "items-previous", disabled: items.cursors.length === 1, onclick: () => { items.cursors.pop(); again(); } }, "← Previous"),
      h("span", { class: "page", id: "items-range" }, page.items.length ? `${first + 1}–${first + page.items.length} of ${page.total}` : `0 of ${page.total}`),
      h("button", { type: "button", id: "items-next", disabled: !page.next_after, onclick: () => { items.cursors.push(page.next_after); again(); } }, "Next →"),
    ),
  );
}

function cacheText(status, source) {
  if (status === "hit") {
    return ["hit", source ? [": computed by execution ", h("a", { href: `/console/executions/${seg(source)}`, id: "cache-source" }, source)] : ""];
  }
  if (status === "written") return "miss: computed, then stored in the cache";
  if (status === "miss") return "miss";
  return "not cached";
}

// The pools its attempt waits for, with its place in each queue (read when the panel is).
function poolWaits(waits) {
  if (!waits || !waits.length) return null;
  const now = Date.now() / 1000;
  return [
    h("h3", {}, "Waiting for pools"),
    h("table", { class: "list", id: "pool-waits" }, h("tbody", {}, waits.map((w) => h(
      "tr",
      { "data-pool": w.pool },
      h("td", {}, h("a", { href: "/console/pools" }, w.pool)),
      h("td", { class: "position" }, `position ${w.position} of ${w.queue}`),
      h("td", {}, `${w.weight} slot${w.weight > 1 ? "s" : ""}`),
      h("td", { class: "muted" }, `waiting ${fmtDuration(now - w.enqueued_at)}`),
    )))),
  ];
}

function select(nodeId) {
  selected = nodeId;
  lastDetail = "";
  for (const g of dag.querySelectorAll("g.node")) g.classList.toggle("selected", g.dataset.nodeId === nodeId);
  drawPanel().catch((err) => replace(detailArea, errorBox(err)));
}

async function refresh() {
  const first = !graph;
  const path = `/executions/${seg(args.ref)}/graph`;
  const found = await api(path, { params: { values: first ? "true" : "false" } });
  const ended = ENDED.includes(found.execution.phase);
  if (!first) {
    if (ended) {
      // one last look, with the outputs
      const last = await api(path);
      found.inputs = last.inputs;
      found.outputs = last.outputs;
    } else {
      found.inputs = graph.inputs;
      found.outputs = graph.outputs;
    }
  }
  graph = found;
  const text = JSON.stringify([found.execution, found.nodes]);
  if (text !== lastGraph) {
    lastGraph = text;
    drawFacts();
    drawDag();
    drawValues();
    loaded();
  }
  if (selected) await drawPanel();
  return !ended;
}

let poller = null;
replace(
  main,
  facts,
  actions,
  message,
  h("div", { class: "split" }, h("div", {}, dag, values), panel),
);
poller = poll(async () => {
  try {
    return await refresh();
  } catch (err) {
    replace(message, errorBox(err));
    return err.status !== 404;
  }
}, 1000);
