// The world page's chronicle panels: the ritual timeline, loop seals and the next loop's seed, mirror anomalies,
// unified snapshots and the protocol's counts with its latest violations. Read from the JSON API once, then kept live from the events world.js
// passes on (a "soulfra:event" per stream event), so a new item shows within a second of its tick.

import { getJson } from "./api.js";

const instance = document.body.dataset.instance;
const base = `/api/instances/${encodeURIComponent(instance)}`;
const $ = (id) => document.getElementById(id);

const KEEP = 120; // items kept in each list
const STAGES = {
  ritual_proposed: "proposed",
  ritual_joined: "gathering",
  ritual_gathered: "gathering",
  ritual_blessed: "blessed",
  ritual_refused: "refused",
  ritual_performed: "performed",
  ritual_sealed: "sealed",
  ritual_lapsed: "lapsed",
  ritual_injected: "proposed",
};
const seen = new Set(); // items already shown (the stream replays the last events the traces hold too)
const names = new Map(); // ritual id -> its name, from the events that carry it (proposed, performed, sealed)

// One list entry: a label (its tick, or a number), a title and any lines of text under it.
function entry(label, title, lines, className) {
  const li = document.createElement("li");
  li.className = `feed-item ${className}`;
  const at = document.createElement("span");
  at.className = "feed-tick";
  at.textContent = label;
  const strong = document.createElement("strong");
  strong.textContent = title;
  li.append(at, strong);
  for (const line of lines) {
    const text = document.createElement("span");
    text.className = "feed-text";
    text.textContent = line;
    li.append(text);
  }
  return li;
}

// What an empty list says.
function none(text) {
  const li = document.createElement("li");
  li.className = "muted none";
  li.textContent = text;
  return li;
}

function item(key, tick, title, body, className) {
  if (seen.has(key)) return null;
  seen.add(key);
  const li = entry(`t${tick}`, title, body ? [body] : [], className);
  li.dataset.tick = String(tick);
  return li;
}

// Newest first: an item goes above the first one older than it, so replayed and live items keep tick order.
function place(listId, li) {
  if (!li) return;
  const list = $(listId);
  const tick = Number(li.dataset.tick);
  const after = [...list.children].find((other) => Number(other.dataset.tick) < tick);
  list.insertBefore(li, after ?? null);
  while (list.childElementCount > KEEP) list.lastElementChild.remove();
}

function ritual(trace) {
  const stage = STAGES[trace.kind];
  if (!stage) return;
  if (trace.name) names.set(trace.ritual, trace.name);
  const people = trace.participants ?? trace.invited;
  const body = [names.get(trace.ritual), trace.agent, people && `${people.length} taking part`]
    .filter(Boolean)
    .join(" · ");
  const key = `${trace.kind}:${trace.ritual}:${trace.tick}:${trace.agent ?? ""}`;
  place("ritual-timeline", item(key, trace.tick, `ritual ${trace.ritual} ${stage}`, body, `stage-${stage}`));
}

function sealed(trace) {
  const body = `ticks ${trace.start}\u2013${trace.end} · ${trace.state_hash ?? trace.digest ?? ""}`;
  place("loop-seals", item(`loop:${trace.loop}`, trace.tick, `loop ${trace.loop} sealed`, body, "loop-sealed"));
}

function anomaly(found) {
  const what = found.anomaly ?? found.kind ?? "anomaly";
  const tick = Number(found.tick ?? 0);
  const body = found.detail ?? "";
  place("anomalies", item(`anomaly:${what}:${tick}:${body}`, tick, what.replaceAll("_", " "), body, "anomaly"));
}

function definitions(target, pairs) {
  const items = [];
  for (const [term, value] of pairs) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    items.push(dt, dd);
  }
  target.replaceChildren(...items);
}

async function loadTraces() {
  const reply = await getJson(`${base}/ritual/traces?limit=512`);
  for (const trace of reply.traces ?? []) {
    if (trace.kind === "loop_sealed") sealed(trace);
    else ritual(trace);
  }
}

async function loadSeeds() {
  const reply = await getJson(`${base}/mirror/seeds`);
  const seeds = reply.seeds ?? [];
  for (const seed of seeds) {
    // each seed names the loop whose seal made it (the surface keeps too few traces to hold every seal)
    const body = `themes ${(seed.themes ?? []).join(", ")} · ${seed.performed} rituals performed`;
    const li = item(`loop:${seed.from_loop}`, seed.tick, `loop ${seed.from_loop} sealed`, body, "loop-sealed");
    place("loop-seals", li);
  }
  const next = seeds[seeds.length - 1];
  if (!next) {
    definitions($("next-seed"), [["seed", "none yet (the first loop has not sealed)"]]);
    return;
  }
  definitions($("next-seed"), [
    ["loop", `${next.loop} (from loop ${next.from_loop}, sealed at t${next.tick})`],
    ["themes", (next.themes ?? []).join(", ")],
    ["intentions", (next.intentions ?? []).join(", ")],
    ["last loop", `${next.posts} posts · ${next.performed} rituals performed · ${next.refused} refused`],
  ]);
}

async function loadAnomalies() {
  const reply = await getJson(`${base}/mirror/anomalies`);
  for (const found of reply.anomalies ?? []) anomaly(found);
  if (!$("anomalies").childElementCount) $("anomalies").append(none("none detected"));
}

function unifiedItem(row) {
  const conflicts = row.conflicts ? `${row.conflicts.length} conflicts · ` : "";
  const li = entry(`t${row.tick}`, `unified ${row.id}`, [
    `${conflicts}system ${String(row.system_hash ?? "").slice(0, 16)}`,
  ], "unified");
  li.dataset.id = String(row.id);
  return li;
}

// A unified snapshot's event names it (id, tick, system hash): shown at once, then the list is read for the rest.
function unifiedTaken(note) {
  const list = $("unified");
  list.querySelector(".none")?.remove();
  if (!list.querySelector(`li[data-id="${Number(note.id)}"]`)) list.prepend(unifiedItem(note));
  loadUnified().catch(failed);
}

async function loadUnified() {
  const reply = await getJson(`${base}/unified-snapshots`);
  const rows = [...(reply.unified ?? [])].sort((a, b) => Number(b.id) - Number(a.id)); // latest first
  const items = rows.map(unifiedItem);
  if (!items.length) items.push(none("none taken"));
  $("unified").replaceChildren(...items);
}

// One validation that found violations: its number, subject and instance, then each rule broken and why.
function foundItem(found) {
  const li = entry(`#${found.validation}`, `${found.subject} of ${found.instance}`,
    found.violations.map((v) => `${v.rule}: ${v.detail}`), "protocol-found");
  li.dataset.validation = String(found.validation);
  li.querySelectorAll(".feed-text").forEach((text, i) => {
    text.dataset.rule = found.violations[i].rule;
  });
  return li;
}

async function loadProtocol() {
  const [found, rules] = await Promise.all([
    getJson(`${base}/protocol/violations`),
    getJson(`${base}/protocol/rules`),
  ]);
  $("protocol-validations").textContent = String(found.validations);
  const violations = $("protocol-violations");
  violations.textContent = String(found.violations);
  violations.className = found.violations > 0 ? "error" : "";
  const list = $("protocol-found");
  if (list.dataset.newest !== String(found.recent[0]?.validation ?? 0)) {
    list.dataset.newest = String(found.recent[0]?.validation ?? 0);
    list.replaceChildren(...(found.recent.length ? found.recent.map(foundItem) : [none("none found")]));
  }
  $("protocol-rules").textContent = (rules.rules ?? []).join(", ");
  const licence = rules.licence ?? {};
  $("protocol-limits").textContent =
    `at most ${rules.max_agents} agents · inputs up to ${rules.max_input_bytes} bytes · lineage depth ` +
    `${rules.max_lineage_depth} · fork ${licence.fork ? "allowed" : "refused"} · export ` +
    `${licence.export ? "allowed" : "refused"}`;
}

function failed(error) {
  const state = $("stream-state");
  if (state) state.textContent = `read failed: ${error.message}`;
}

function onEvent(event) {
  const data = { ...(event.data ?? {}), kind: event.kind, tick: event.tick };
  if (STAGES[event.kind]) ritual(data);
  else if (event.kind === "loop_sealed") {
    sealed(data);
    loadSeeds().catch(failed);
  } else if (event.kind === "anomaly") {
    $("anomalies").querySelector(".none")?.remove();
    anomaly(data);
  } else if (event.kind === "unified_snapshot") unifiedTaken(data);
}

const PROTOCOL_MS = 5000; // the protocol's counts and violations change only when something is validated

function start() {
  document.addEventListener("soulfra:event", (message) => onEvent(message.detail));
  document.addEventListener("soulfra:restarted", () => {
    seen.clear();
    for (const id of ["ritual-timeline", "loop-seals", "anomalies"]) $(id).replaceChildren();
    Promise.all([loadTraces(), loadAnomalies()]).catch(failed);
  });
  Promise.all([loadTraces(), loadSeeds(), loadAnomalies(), loadUnified(), loadProtocol()]).catch(failed);
  setInterval(() => loadProtocol().catch(failed), PROTOCOL_MS);
}

start();
