// Registry: a project/domain's workflows, tasks and launch plans with their versions and a
// diff between any two, and the schedules with their next runs (activate, deactivate).
import { api, canLaunch, errorBox, fmtTime, h, isAdmin, loaded, projects, replace, select, seg } from "./lib.js";

const main = document.getElementById("main");
const KINDS = [["workflow", "Workflows"], ["task", "Tasks"], ["launch_plan", "Launch plans"]];

function diffView(text) {
  if (!text) return h("p", { class: "muted diff-result" }, "no difference");
  return h("pre", { class: "diff diff-result" }, text.split("\n").map((line) => {
    const cls = line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : line.startsWith("@@") ? "hunk" : null;
    return [h("span", { class: cls }, line), "\n"];
  }));
}

function entity(scope, kind, name, versions) {
  const base = `/projects/${seg(scope.project)}/domains/${seg(scope.domain)}`;
  const result = h("div");
  const options = versions.map((v) => [v.version, v.version]);
  const older = select({ class: "old" }, options, (versions[1] || versions[0]).version);
  const newer = select({ class: "new" }, options, versions[0].version);
  const compare = async () => {
    try {
      const found = await api(`${base}/entities/${kind}/${seg(name)}/diff`, { params: { old: older.value, new: newer.value } });
      replace(result, diffView(found.diff));
    } catch (err) {
      replace(result, errorBox(err));
    }
  };
  const launch = kind === "workflow" && canLaunch
    ? h("a", { class: "button", href: `/console/launch/${seg(scope.project)}/${seg(scope.domain)}/${seg(name)}` }, "Launch…")
    : null;
  return h(
    "details",
    { class: "entity", "data-name": name, "data-kind": kind },
    h("summary", {}, h("strong", {}, name), " ", h("span", { class: "muted" }, `${versions[0].version} · ${versions.length} version${versions.length > 1 ? "s" : ""}`)),
    h("table", { class: "list versions" }, h("tbody", {}, versions.map((v) =>
      h("tr", { "data-version": v.version }, h("td", {}, v.version), h("td", { class: "muted" }, fmtTime(v.created_at)), h("td", {}, h("code", { title: v.digest }, v.digest.slice(0, 12))))))),
    h("p", { class: "actions" }, "Diff ", older, " → ", newer, h("button", { type: "button", class: "compare", onclick: compare }, "Show"), launch),
    result,
  );
}

function schedules(scope, plans, refresh) {
  const base = `/projects/${seg(scope.project)}/domains/${seg(scope.domain)}/launch_plans`;
  const message = h("div");
  const act = async (call) => {
    replace(message);
    try {
      await call();
      await refresh();
    } catch (err) {
      replace(message, errorBox(err));
    }
  };
  if (plans.length === 0) return h("p", { class: "muted" }, "no launch plans");
  return h(
    "div",
    {},
    message,
    h(
      "table",
      { class: "list", id: "schedules" },
      h("thead", {}, h("tr", {}, ["Plan", "Workflow", "Schedule", "Active version", "Next run", "Last slot", ""].map((c) => h("th", {}, c)))),
      h("tbody", {}, plans.map((p) => {
        const version = select({ class: "version" }, p.versions.map((v) => [v, v]), p.active_version || p.versions[0]);
        const buttons = isAdmin
          ? [
              version,
              h("button", { type: "button", class: "activate", onclick: () => act(() => api(`${base}/${seg(p.name)}/activate`, { method: "POST", body: { version: version.value } })) }, "Activate"),
              p.active_version ? h("button", { type: "button", class: "deactivate danger", onclick: () => act(() => api(`${base}/${seg(p.name)}/deactivate`, { method: "POST" })) }, "Deactivate") : null,
            ]
          : null;
        return h(
          "tr",
          { "data-plan": p.name, "data-active": p.active_version || "" },
          h("td", {}, h("strong", {}, p.name)),
          h("td", {}, p.workflow.split(".").pop(), " ", h("span", { class: "muted" }, p.workflow_version)),
          h("td", {}, p.schedule || "none"),
          h("td", { class: "active-version" }, p.active_version || h("span", { class: "muted" }, "inactive")),
          h("td", { class: "next-run" }, p.next_slot ? fmtTime(p.next_slot) : ""),
          h("td", {}, p.last_slot ? fmtTime(p.last_slot) : ""),
          h("td", {}, buttons),
        );
      })),
    ),
  );
}

async function start() {
  const known = await projects();
  const u = new URL(location.href);
  const choices = known.flatMap((p) => p.domains.map((d) => [`${p.name}/${d}`, `${p.name}/${d}`]));
  const where = select({ id: "scope" }, choices, u.searchParams.get("scope") || (choices[0] || [""])[0]);
  const body = h("div", { id: "registry" });
  const show = async () => {
    if (!where.value) return replace(body, h("p", { class: "muted" }, "no projects"));
    const [project, domain] = where.value.split("/");
    const scope = { project, domain };
    const base = `/projects/${seg(project)}/domains/${seg(domain)}`;
    // every kind in one call (?kind= repeated), at the same time as the plans
    const [found, plans] = await Promise.all([
      api(`${base}/entities`, { params: { kind: KINDS.map(([kind]) => kind) } }),
      api(`${base}/launch_plans`),
    ]);
    const sections = KINDS.map(([kind, title]) => {
      const byName = new Map();
      for (const e of found.filter((x) => x.kind === kind)) (byName.get(e.name) || byName.set(e.name, []).get(e.name)).push(e);
      return h("section", { "data-kind": kind }, h("h2", {}, title, " ", h("span", { class: "muted" }, byName.size)),
        byName.size ? [...byName].map(([name, versions]) => entity(scope, kind, name, versions)) : h("p", { class: "muted" }, "none"));
    });
    replace(body, h("h2", {}, "Schedules"), schedules(scope, plans, show), sections);
  };
  where.addEventListener("change", () => {
    u.searchParams.set("scope", where.value);
    history.replaceState(null, "", u);
    show().catch((err) => replace(body, errorBox(err)));
  });
  replace(main, h("div", { class: "title" }, h("h1", {}, "Registry"), h("label", {}, "Project/domain ", where)), body);
  await show();
  loaded();
}

start().catch((err) => replace(main, errorBox(err)));
