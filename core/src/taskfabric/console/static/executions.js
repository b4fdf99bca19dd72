// Executions: filters kept in the URL, pages of PAGE (a keyset: `before` the last execution
// of the page before, so a far page costs what the first does), refreshed every 2 s.
import { api, badge, canLaunch, errorBox, fmtTime, h, loaded, poll, projects, replace, select, span } from "./lib.js";

const PAGE = 50;
const PHASES = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT"];
const main = document.getElementById("main");
const url = new URL(location.href);
const state = {
  project: url.searchParams.get("project") || "",
  domain: url.searchParams.get("domain") || "",
  workflow: url.searchParams.get("workflow") || "",
  launch_plan: url.searchParams.get("launch_plan") || "",
  phase: url.searchParams.getAll("phase"),
  before: url.searchParams.get("before") || "",
};
// The `before` of the pages this tab came through, for "← Newer"; the page's number when
// known (a bookmarked page of older executions does not know it).
const newer = [];
let pageNumber = state.before ? null : 1;

function keepInUrl() {
  const u = new URL(location.href);
  u.search = "";
  for (const k of ["project", "domain", "workflow", "launch_plan"]) if (state[k]) u.searchParams.set(k, state[k]);
  for (const p of state.phase) u.searchParams.append("phase", p);
  if (state.before) u.searchParams.set("before", state.before);
  history.replaceState(null, "", u);
}

const table = h("tbody", { id: "executions" });
const pager = h("div", { class: "pager" });
const status = h("p", { class: "muted", id: "status" });
let last = "";
let drawn = null;
const firstDrawn = new Promise((resolve) => { drawn = resolve; });

async function refresh() {
  const params = { ...state, limit: PAGE + 1 };
  const rows = await api("/executions", { params });
  const text = JSON.stringify(rows);
  status.textContent = `updated ${fmtTime(Date.now() / 1000)}`;
  if (text === last) return;
  last = text;
  drawn();
  const shown = rows.slice(0, PAGE);
  replace(
    table,
    shown.length === 0 ? h("tr", {}, h("td", { colspan: 7, class: "muted" }, "no executions")) : null,
    shown.map((e) =>
      h(
        "tr",
        { "data-id": e.id, "data-name": e.name, "data-phase": e.phase },
        h("td", {}, h("a", { href: `/console/executions/${e.id}` }, e.name), h("div", { class: "muted small" }, e.id)),
        h("td", {}, badge(e.phase)),
        h("td", {}, `${e.project}/${e.domain}`),
        h("td", { title: `${e.workflow} ${e.workflow_version}` }, e.workflow.split(".").pop(), h("div", { class: "muted small" }, e.workflow_version)),
        h("td", {}, e.launch_plan ? e.launch_plan.split(":")[0] : ""),
        h("td", {}, fmtTime(e.created_at)),
        h("td", {}, span(e.started_at, e.finished_at)),
      ),
    ),
  );
  const lastId = shown.length ? shown[shown.length - 1].id : "";
  replace(
    pager,
    h("button", { type: "button", disabled: !state.before, onclick: () => move(newer.pop() || ""), id: "newer" }, "← Newer"),
    h("span", { class: "page", id: "page" }, pageNumber ? `page ${pageNumber}` : "older executions"),
    h("button", { type: "button", disabled: rows.length <= PAGE, onclick: () => { newer.push(state.before); move(lastId, true); }, id: "older" }, "Older →"),
  );
}

let poller = null;
function move(before, older = false) {
  state.before = before;
  if (!before) pageNumber = 1;
  else if (pageNumber) pageNumber += older ? 1 : -1;
  keepInUrl();
  last = "";
  poller.now();
}

async function start() {
  const first = poll(refresh, 2000); // the list's first page is asked for with the projects
  poller = first;
  const known = await projects();
  const projectOptions = [["", "all projects"], ...known.map((p) => [p.name, p.name])];
  const domains = [...new Set(known.flatMap((p) => p.domains))].sort();
  const form = h(
    "form",
    { class: "filters", id: "filters" },
    h("label", {}, "Project ", select({ name: "project" }, projectOptions, state.project)),
    h("label", {}, "Domain ", select({ name: "domain" }, [["", "all"], ...domains.map((d) => [d, d])], state.domain)),
    h("label", {}, "Workflow ", h("input", { name: "workflow", value: state.workflow, placeholder: "name contains" })),
    h("label", {}, "Launch plan ", h("input", { name: "launch_plan", value: state.launch_plan, placeholder: "plan name" })),
    h(
      "fieldset",
      { class: "phases" },
      PHASES.map((p) => h("label", {}, h("input", { type: "checkbox", name: "phase", value: p, checked: state.phase.includes(p) }), ` ${p.toLowerCase()}`)),
    ),
  );
  const apply = () => {
    const data = new FormData(form);
    for (const k of ["project", "domain", "workflow", "launch_plan"]) state[k] = String(data.get(k) || "").trim();
    state.phase = data.getAll("phase").map(String);
    state.before = "";
    newer.length = 0;
    pageNumber = 1;
    keepInUrl();
    last = "";
    poller.now();
  };
  form.addEventListener("change", apply);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    apply();
  });
  replace(
    main,
    h(
      "div",
      { class: "title" },
      h("h1", {}, "Executions"),
      canLaunch ? h("a", { class: "button primary", href: "/console/launch", id: "launch" }, "Launch…") : null,
    ),
    form,
    h(
      "table",
      { class: "list" },
      h("thead", {}, h("tr", {}, ["Name", "Phase", "Project/domain", "Workflow", "Launch plan", "Created", "Duration"].map((c) => h("th", {}, c)))),
      table,
    ),
    pager,
    status,
  );
  await firstDrawn;
  loaded();
}

start().catch((err) => replace(main, errorBox(err)));
