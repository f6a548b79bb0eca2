// God mode on a world page (templates/_god.html): possession through the operator routes, and the puppet master's
// commands through POST /api/god/<command>. Each form shows its answer, or the API's {code, detail}, in its own
// <output>; only the forms the server rendered for this role are wired (the API enforces the role regardless).

import { ApiError, getJson, postJson } from "./api.js";

const instance = document.body.dataset.instance;
const base = `/api/instances/${encodeURIComponent(instance)}`;
const $ = (id) => document.getElementById(id);

function show(id, text, failed = false) {
  const out = $(id);
  out.textContent = text;
  out.className = `god-result ${failed ? "error" : "ok"}`;
}

// Run a command; its answer (a line of text) or its error (the API's detail, code and status) goes to `out`.
async function run(out, action) {
  show(out, "\u2026");
  try {
    show(out, await action());
  } catch (error) {
    show(out, error instanceof ApiError ? error.message : `failed: ${error.message ?? error}`, true);
  }
}

// A JSON list typed into a textarea (empty: none); a mistake is this page's error, shown like the API's.
function jsonList(text, what) {
  const trimmed = text.trim();
  if (!trimmed) return [];
  let parsed;
  try {
    parsed = JSON.parse(trimmed);
  } catch (error) {
    throw new ApiError(0, "bad_json", `${what}: not JSON (${error.message})`);
  }
  if (!Array.isArray(parsed)) throw new ApiError(0, "bad_json", `${what}: a JSON list of input objects, [...]`);
  return parsed;
}

const words = (text) =>
  text
    .split(",")
    .map((w) => w.trim())
    .filter(Boolean);

function optionalInt(value) {
  return value === "" ? undefined : Number(value);
}

function submitted(id, handler) {
  $(id)?.addEventListener("submit", (event) => {
    event.preventDefault();
    handler(event.currentTarget);
  });
}

// -- possession (operators and up) ----------------------------------------------------------------------------

function agentPath(form, verb) {
  const agent = form.agent.value.trim();
  if (!agent) throw new ApiError(0, "no_agent", "name the agent to possess first");
  return `${base}/agents/${encodeURIComponent(agent)}/${verb}`;
}

const ack = (what, reply) => `${what}: input ${reply.seq}, applies at tick ${reply.tick}`;

function wirePossession() {
  const form = $("possess-form");
  if (!form) return;
  submitted("possess-form", (f) =>
    run("possess-result", async () =>
      ack(`possessed ${f.agent.value}`, await postJson(agentPath(f, "possess"), { operator: f.operator.value })),
    ),
  );
  $("release-button").addEventListener("click", () =>
    run("possess-result", async () => ack(`released ${form.agent.value}`, await postJson(agentPath(form, "release")))),
  );
  submitted("act-form", (f) =>
    run("possess-result", async () => {
      const body = { action: f.action.value };
      for (const name of ["text", "topic", "name"]) if (f[name].value.trim()) body[name] = f[name].value.trim();
      for (const name of ["ritual", "task"]) if (f[name].value !== "") body[name] = Number(f[name].value);
      const reply = await postJson(agentPath(form, "act"), body);
      return ack(`${form.agent.value} will ${body.action}`, reply);
    }),
  );
}

// -- the puppet master's commands -----------------------------------------------------------------------------

const god = (command, body) => postJson(`/api/god/${command}`, body);

function wireClone() {
  submitted("clone-form", (f) =>
    run("clone-result", async () => {
      const body = { source: instance, modifications: jsonList(f.modifications.value, "modifications") };
      if (f.id.value.trim()) body.id = f.id.value.trim();
      if (f.tick.value !== "") body.tick = Number(f.tick.value);
      const reply = await god("clone", body);
      return `cloned at tick ${reply.tick} as ${reply.id} (${reply.modifications} modifications)`;
    }),
  );
}

function forkRows() {
  const rows = $("fork-rows");
  const count = Math.max(1, Math.min(64, Number($("fork-count").value) || 1));
  while (rows.childElementCount > count) rows.lastElementChild.remove();
  while (rows.childElementCount < count) {
    const n = rows.childElementCount + 1;
    const row = document.createElement("fieldset");
    row.className = "fork-row";
    const legend = document.createElement("legend");
    legend.textContent = `Fork ${n}`;
    const id = document.createElement("input");
    id.className = "fork-id";
    id.placeholder = "id (optional)";
    id.setAttribute("aria-label", `fork ${n} id`);
    const mods = document.createElement("textarea");
    mods.className = "fork-mods";
    mods.rows = 2;
    mods.placeholder = '[{"type": "intervene", "kind": "personality", "agent": "arty", "traits": {"warmth": "0.9"}}]';
    mods.setAttribute("aria-label", `fork ${n} modifications`);
    row.append(legend, id, mods);
    rows.append(row);
  }
}

function wireFork() {
  if (!$("fork-form")) return;
  forkRows();
  $("fork-count").addEventListener("input", forkRows);
  submitted("fork-form", (f) =>
    run("fork-result", async () => {
      const forks = [...$("fork-rows").querySelectorAll(".fork-row")].map((row, n) => {
        const spec = { modifications: jsonList(row.querySelector(".fork-mods").value, `fork ${n + 1}`) };
        const id = row.querySelector(".fork-id").value.trim();
        if (id) spec.id = id;
        return spec;
      });
      const body = { source: instance, forks };
      if (f.tick.value !== "") body.tick = Number(f.tick.value);
      const reply = await god("fork", body);
      return `forked at tick ${reply.tick}: ${reply.forks.map((made) => made.id).join(", ")}`;
    }),
  );
}

function traits(text) {
  const out = {};
  for (const pair of words(text)) {
    const [name, value] = pair.split("=").map((s) => s.trim());
    if (!name || value === undefined) throw new ApiError(0, "bad_traits", `traits are name=value pairs: ${pair}`);
    out[name] = value; // decimals as strings: the world reads them exactly
  }
  return out;
}

function interventionBody(f) {
  const kind = f.kind.value;
  const body = { instance, kind };
  if (kind === "vibe") {
    Object.assign(body, { condition: f.condition.value, intensity: f.intensity.value, duration: Number(f.duration.value) });
  } else if (kind === "personality") {
    Object.assign(body, { agent: f.agent.value.trim(), traits: traits(f.traits.value) });
  } else if (kind === "ritual") {
    Object.assign(body, { name: f.name.value.trim(), participants: words(f.participants.value), blessed: f.blessed.checked });
  } else {
    body.from_tick = optionalInt(f.from_tick.value);
    body.drop = words(f.drop.value).map(Number);
    body.add = jsonList(f.add.value, "inputs to add");
    if (f.id.value.trim()) body.id = f.id.value.trim();
  }
  return body;
}

function wireIntervene() {
  const form = $("intervene-form");
  if (!form) return;
  const showKind = () => {
    for (const fields of form.querySelectorAll(".kind-fields")) {
      fields.hidden = fields.dataset.kind !== form.kind.value;
      fields.disabled = fields.hidden; // hidden fields are not the command's
    }
  };
  form.kind.addEventListener("change", showKind);
  showKind();
  submitted("intervene-form", (f) =>
    run("intervene-result", async () => {
      const reply = await god("intervene", interventionBody(f));
      if (reply.kind === "rewrite") {
        return `rewritten from tick ${reply.from_tick} as ${reply.branch}: ${reply.dropped} dropped, ${reply.added} added, now at tick ${reply.tick}`;
      }
      return ack(`${reply.kind} intervention accepted`, reply.ack);
    }),
  );
}

async function fillInstances() {
  const select = $("link-target");
  try {
    const listed = await getJson("/api/instances");
    for (const row of listed.instances) {
      if (row.id !== instance && row.status !== "abandoned") select.add(new Option(row.id, row.id));
    }
  } catch (error) {
    show("link-result", error instanceof ApiError ? error.message : `failed: ${error}`, true);
  }
}

function wireLinks() {
  if (!$("link-form")) return;
  fillInstances();
  submitted("link-form", (f) =>
    run("link-result", async () => {
      const body = { action: f.action.value, source: instance, target: f.target.value };
      if (body.action === "whisper" || body.action === "post") {
        Object.assign(body, { agent: f.agent.value.trim(), text: f.text.value, tone: f.tone.value, to: f.to.value || "*" });
        if (body.action === "post") body.thread = optionalInt(f.thread.value);
      }
      const reply = await god("communicate", body);
      if (reply.links) return `linked to ${reply.target}; links: ${reply.links.join(", ")}`;
      if ("removed" in reply) return reply.removed ? `unlinked from ${reply.target}` : `was not linked to ${reply.target}`;
      return ack(`${reply.action} sent to ${reply.target}`, reply.ack);
    }),
  );
}

wirePossession();
wireClone();
wireFork();
wireIntervene();
wireLinks();
