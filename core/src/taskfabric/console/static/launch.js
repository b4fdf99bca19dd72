// Launch: pick a workflow, then a form generated from its typed interface. Each field is
// sent as the text `taskfabric launch -i NAME=TEXT` takes; the server parses it the same way
// and a value that does not fit comes back with the command line's message, shown under it.
import { ApiError, api, args, canLaunch, errorBox, fmtTime, h, loaded, projects, replace, select, seg, upload } from "./lib.js";

const main = document.getElementById("main");

function simple(t) {
  return t.simple ? t.simple.replace("SIMPLE_TYPE_", "") : null;
}

// The widget of one input: a select for booleans and enums, a textarea of JSON for lists,
// maps, records and unions, a text field otherwise. `optional`: empty means "not given".
function widget(p) {
  let t = p.literal_type;
  const variants = (t.union_type && t.union_type.variants) || [];
  const nullable = variants.some((v) => simple(v) === "NONE");
  const others = variants.filter((v) => simple(v) !== "NONE");
  if (nullable && others.length === 1) t = others[0];
  const attrs = { id: `input-${p.name}`, name: p.name, "data-input": p.name };
  const empty = p.required ? "choose…" : "(default)";
  if (t.blob && t.blob.dimensionality === "BLOB_DIMENSIONALITY_MULTIPART") {
    // A folder (its files keep their paths inside it), or several files side by side: sent
    // as one tar, as `taskfabric launch -i NAME=DIR` sends a directory.
    const folder = h("input", { type: "file", id: `input-${p.name}-folder`, webkitdirectory: true, multiple: true, "data-part": "folder" });
    const files = h("input", { type: "file", id: `input-${p.name}-files`, multiple: true, "data-part": "files" });
    const chosen = h("span", { class: "muted chosen" }, "nothing chosen");
    const box = h(
      "div",
      { ...attrs, id: `input-${p.name}`, class: "directory-input", "data-upload": "directory", tabindex: -1 },
      h("label", { class: "part" }, "a folder ", folder),
      h("label", { class: "part" }, "or files ", files),
      chosen,
    );
    const pick = (from, other) => () => {
      other.value = "";
      const n = from.files.length;
      chosen.textContent = n ? `${n} file${n === 1 ? "" : "s"} chosen` : "nothing chosen";
    };
    folder.addEventListener("change", pick(folder, files));
    files.addEventListener("change", pick(files, folder));
    return box;
  }
  if (t.blob || t.dataframe) {
    return h("input", { ...attrs, type: "file", "data-upload": "file", accept: t.dataframe ? ".csv,.parquet" : null });
  }
  if (simple(t) === "BOOLEAN") return select(attrs, [["", empty], ["true", "true"], ["false", "false"]], "");
  if (t.enum_type) return select(attrs, [["", empty], ...t.enum_type.values.map((v) => [v, v])], "");
  if (t.list_type || t.map_value_type || t.record || t.union_type) {
    return h("textarea", { ...attrs, placeholder: p.type, rows: t.record ? 3 : 2 });
  }
  return h("input", { ...attrs, placeholder: p.type, autocomplete: "off" });
}

// An upload's name follows the server's name rule: other characters become '-'.
function uploadName(text) {
  const name = text.replace(/[^A-Za-z0-9_.:+-]/g, "-").replace(/^[^A-Za-z0-9_]+/, "").slice(0, 255);
  return name || "upload";
}

// A POSIX (ustar) tar of [path, File] pairs: the format `taskfabric launch` uploads a
// directory in (the server checks and unpacks it with Python's tarfile).
const enc = new TextEncoder();

function tarHeader(path, size) {
  const head = new Uint8Array(512);
  const put = (text, at, len) => head.set(enc.encode(text).slice(0, len), at);
  const octal = (n, len) => `${n.toString(8).padStart(len - 1, "0")}\0`;
  let name = path;
  let prefix = "";
  if (enc.encode(name).length > 100) {
    const cut = path.lastIndexOf("/", path.length - 1);
    prefix = path.slice(0, cut);
    name = path.slice(cut + 1);
    if (cut < 0 || enc.encode(name).length > 100 || enc.encode(prefix).length > 155) {
      throw new Error(`the path ${path} is too long to upload from the browser: use taskfabric launch`);
    }
  }
  put(name, 0, 100);
  put(octal(0o644, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(size, 12), 124, 12);
  put(octal(Math.floor(Date.now() / 1000), 12), 136, 12);
  put("        ", 148, 8);
  put("0", 156, 1);
  put("ustar\0", 257, 6);
  put("00", 263, 2);
  put(prefix, 345, 155);
  const sum = head.reduce((a, b) => a + b, 0);
  put(`${sum.toString(8).padStart(6, "0")}\0 `, 148, 8);
  return head;
}

async function tarOf(entries) {
  if (!entries.length) throw new Error("the folder is empty: choose a folder with files");
  const parts = [];
  for (const [path, file] of entries) {
    if (!path || path.split("/").some((p) => p === "" || p === "." || p === "..")) {
      throw new Error(`cannot upload the path ${JSON.stringify(path)}`);
    }
    parts.push(tarHeader(path, file.size), new Uint8Array(await file.arrayBuffer()));
    const pad = (512 - (file.size % 512)) % 512;
    if (pad) parts.push(new Uint8Array(pad));
  }
  parts.push(new Uint8Array(1024));
  return new Blob(parts, { type: "application/x-tar" });
}

async function form(project, domain, name, version) {
  const wf = await api(`/projects/${seg(project)}/domains/${seg(domain)}/workflows/${seg(name)}`, { params: { version } });
  const top = h("div", { id: "form-error" });
  const fields = wf.inputs.map((p) =>
    h(
      "div",
      { class: "field", "data-field": p.name },
      h("label", { for: `input-${p.name}` }, p.name, p.required ? " *" : ""),
      widget(p),
      h("div", { class: "hint" }, h("code", {}, p.type), p.required ? " required" : ` default: ${JSON.stringify(p.default)}`),
      h("div", { class: "field-error", role: "alert" }),
    ),
  );
  const versions = select({ name: "version", id: "version" }, wf.versions.map((v) => [v, v]), wf.version);
  versions.addEventListener("change", () => {
    location.href = `/console/launch/${seg(project)}/${seg(domain)}/${seg(name)}?version=${seg(versions.value)}`;
  });
  const submit = canLaunch
    ? h("button", { type: "submit", class: "primary", id: "submit" }, "Launch")
    : h("p", { class: "muted", id: "viewer-note" }, "This token is a viewer: it cannot launch.");
  const el = h(
    "form",
    { class: "launch card", id: "launch-form", novalidate: true },
    h("div", { class: "field" }, h("label", { for: "version" }, "Version"), versions, h("div", { class: "hint" }, `registered ${fmtTime(wf.created_at)}`)),
    fields,
    h("div", { class: "field" }, h("label", { for: "exec-name" }, "Execution name"), h("input", { id: "exec-name", name: "__name", placeholder: "(random)", autocomplete: "off" }), h("div", { class: "hint" }, "launching again with the same name and inputs returns the same execution")),
    top,
    submit,
  );
  el.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    for (const f of el.querySelectorAll(".field")) {
      f.classList.remove("invalid");
      const e = f.querySelector(".field-error");
      if (e) e.textContent = "";
    }
    replace(top);
    const inputs = {};
    const files = [];
    const folders = [];
    for (const p of wf.inputs) {
      const box = el.querySelector(`[data-input="${CSS.escape(p.name)}"][data-upload=directory]`);
      if (box) {
        const picked = [...box.querySelectorAll("input[type=file]")].find((i) => i.files.length);
        if (picked) folders.push([p.name, picked]);
        continue;
      }
      const field = el.elements[p.name];
      if (field.dataset.upload) {
        if (field.files.length) files.push([p.name, field.files[0]]);
      } else if (field.value.trim() !== "") {
        inputs[p.name] = field.value;
      }
    }
    const body = { workflow: name, version: versions.value, inputs, uploads: {} };
    const given = el.elements.__name.value.trim();
    if (given) body.name = given;
    const button = el.querySelector("#submit");
    button.disabled = true;
    try {
      const scope = `/projects/${seg(project)}/domains/${seg(domain)}`;
      for (const [input, file] of files) {
        try {
          const staged = await upload(`${scope}/uploads`, file, { name: file.name, kind: "file" });
          body.uploads[input] = staged.ref;
        } catch (err) {
          throw new ApiError(err.status, { detail: `uploading ${file.name}: ${err.message}`, input });
        }
      }
      for (const [input, picker] of folders) {
        const folder = picker.dataset.part === "folder";
        const entries = [...picker.files].map((f) => [folder ? f.webkitRelativePath.split("/").slice(1).join("/") : f.name, f]);
        const top = folder && picker.files[0].webkitRelativePath.split("/")[0];
        const name = uploadName(top || input);
        try {
          const staged = await upload(`${scope}/uploads`, await tarOf(entries), { name, kind: "directory" });
          body.uploads[input] = staged.ref;
        } catch (err) {
          throw new ApiError(err.status, { detail: `uploading ${top ? `folder ${top}` : `${entries.length} files`}: ${err.message}`, input });
        }
      }
      const done = await api(`${scope}/executions/from_text`, { method: "POST", body });
      location.href = `/console/executions/${seg(done.execution.id)}`;
    } catch (err) {
      button.disabled = false;
      // The message under each field at fault (every missing input), as the command line
      // says it; on top only when it is about no input of the form.
      const at = (err.inputs || []).map((i) => el.querySelector(`.field[data-field="${CSS.escape(i)}"]`)).filter(Boolean);
      for (const field of at) {
        field.classList.add("invalid");
        field.querySelector(".field-error").textContent = err.message;
      }
      if (at.length) at[0].querySelector("[data-input]").focus();
      else replace(top, errorBox(err));
    }
  });
  replace(
    main,
    h("h1", {}, "Launch ", h("code", {}, name)),
    h("p", { class: "muted" }, `${project}/${domain} · `, wf.tasks.length, " tasks"),
    el,
  );
  loaded();
}

async function pick() {
  const known = await projects();
  const u = new URL(location.href);
  const list = h("div", { id: "workflows" });
  const choices = known.flatMap((p) => p.domains.map((d) => [`${p.name}/${d}`, `${p.name}/${d}`]));
  const where = select({ id: "scope" }, choices, u.searchParams.get("scope") || (choices[0] || [""])[0]);
  const show = async () => {
    if (!where.value) return replace(list, h("p", { class: "muted" }, "no projects"));
    const [project, domain] = where.value.split("/");
    const found = await api(`/projects/${seg(project)}/domains/${seg(domain)}/entities`, { params: { kind: "workflow" } });
    const names = [...new Set(found.map((e) => e.name))];
    replace(
      list,
      names.length === 0 ? h("p", { class: "muted" }, "no workflows registered here") : null,
      h("table", { class: "list" }, h("tbody", {}, names.map((n) => {
        const latest = found.find((e) => e.name === n);
        return h("tr", {}, h("td", {}, h("a", { href: `/console/launch/${seg(project)}/${seg(domain)}/${seg(n)}` }, n)), h("td", { class: "muted" }, latest.version), h("td", { class: "muted" }, fmtTime(latest.created_at)));
      }))),
    );
  };
  where.addEventListener("change", () => {
    u.searchParams.set("scope", where.value);
    history.replaceState(null, "", u);
    show().catch((err) => replace(list, errorBox(err)));
  });
  replace(main, h("h1", {}, "Launch a workflow"), h("label", {}, "Project/domain ", where), list);
  await show();
  loaded();
}

(args.workflow ? form(args.project, args.domain, args.workflow, args.version) : pick()).catch((err) => replace(main, errorBox(err)));
