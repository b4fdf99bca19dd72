// Pools: slots in use, rate and tokens, pause after a pushback, per-project caps and
// weights, holders and the queue in order, recent pushbacks. Refreshed every 2 s.
import { api, errorBox, fmtDuration, fmtTime, h, loaded, poll, replace } from "./lib.js";

const main = document.getElementById("main");
const body = h("div", { id: "pools" });
let last = "";

function rate(p) {
  if (p.rate_per_second === null) return "no rate limit";
  const r = p.rate_per_second < 1 ? `${+(p.rate_per_second * 60).toFixed(2)}/min` : `${+p.rate_per_second.toFixed(2)}/s`;
  return `${r}, burst ${p.burst}${p.tokens === null ? "" : `, ${p.tokens.toFixed(1)} tokens left`}`;
}

function pairs(map) {
  const items = Object.entries(map);
  return items.length ? items.map(([k, v]) => `${k} ${v}`).join(", ") : "none";
}

function pool(p, now) {
  const used = Math.min(100, (100 * p.in_use) / p.slots);
  const meter = h("span", { class: "meter" }, h("span"));
  meter.firstChild.style.width = `${used}%`; // CSSOM: allowed by the page's CSP
  return h(
    "section",
    { class: "card pool", "data-pool": p.name },
    h("h2", {}, p.name, " ", p.paused_until && p.paused_until > now ? h("span", { class: "badge phase-waiting pushback" }, `paused ${fmtDuration(p.paused_until - now)} (pushback)`) : null),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "In use"), h("dd", { class: "in-use" }, meter, ` ${p.in_use} of ${p.slots} slots`),
      h("dt", {}, "Rate"), h("dd", {}, rate(p)),
      h("dt", {}, "Lease"), h("dd", {}, fmtDuration(p.lease_ttl)),
      h("dt", {}, "Project caps"), h("dd", {}, pairs(p.project_caps)),
      h("dt", {}, "Project weights"), h("dd", {}, pairs(p.project_weights)),
      h("dt", {}, "Domain caps"), h("dd", {}, pairs(p.domain_caps)),
    ),
    h("h3", {}, `Holders (${p.holders.length + p.hidden_holders})`),
    p.holders.length
      ? h("table", { class: "list holders" }, h("tbody", {}, p.holders.map((x) => h("tr", {},
          h("td", {}, h("a", { href: `/console/executions/${x.execution_id}` }, x.execution_id)), h("td", {}, x.node_id), h("td", {}, `${x.project}/${x.domain}`),
          h("td", {}, `${x.weight} slot${x.weight > 1 ? "s" : ""}`), h("td", {}, `held ${fmtDuration(now - x.acquired_at)}`), h("td", { class: "muted" }, `expires ${fmtTime(x.expires_at)}`)))))
      : null,
    p.hidden_holders ? h("p", { class: "muted" }, `${p.hidden_holders} in projects this token cannot see`) : null,
    h("h3", {}, `Queue (${p.waiters.length + p.hidden_waiters})`),
    p.waiters.length
      ? h("table", { class: "list waiters" }, h("tbody", {}, p.waiters.map((w) => h("tr", {},
          h("td", {}, `#${w.position}`), h("td", {}, h("a", { href: `/console/executions/${w.execution_id}` }, w.execution_id)), h("td", {}, w.node_id),
          h("td", {}, `${w.project}/${w.domain}`), h("td", {}, `priority ${w.priority}`), h("td", {}, `waiting ${fmtDuration(now - w.enqueued_at)}`)))))
      : null,
    p.hidden_waiters ? h("p", { class: "muted" }, `${p.hidden_waiters} in projects this token cannot see`) : null,
    h("h3", {}, "Recent pushbacks"),
    p.pushbacks.length
      ? h("table", { class: "list pushbacks" }, h("tbody", {}, p.pushbacks.map((b) => h("tr", {},
          h("td", { title: fmtTime(b.at) }, fmtTime(b.at)),
          h("td", { class: "pause" }, `paused ${fmtDuration(b.seconds)}`),
          h("td", {}, b.execution_id
            ? [h("a", { href: `/console/executions/${b.execution_id}` }, b.execution_id), ` ${b.node_id}`]
            : h("span", { class: "muted" }, b.hidden ? "a project this token cannot see" : "a backend's call")),
          h("td", { class: "muted" }, b.project ? `${b.project}/${b.domain}` : ""),
          h("td", { class: "muted" }, `until ${fmtTime(b.paused_until).slice(11)}`)))))
      : h("p", { class: "muted no-pushbacks" }, "none"),
  );
}

async function refresh() {
  const found = await api("/pools");
  const text = JSON.stringify(found);
  if (text === last) return;
  last = text;
  const now = Date.now() / 1000;
  replace(body, found.length ? found.map((p) => pool(p, now)) : h("p", { class: "muted" }, "no pools configured ([pools.<name>] in the server's config)"));
  loaded();
}

replace(main, h("h1", {}, "Pools"), body);
poll(() => refresh().catch((err) => replace(body, errorBox(err))), 2000);
