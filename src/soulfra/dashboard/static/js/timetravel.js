// Time travel on the world page: a scrubber over the instance's own history (its first tick to its durable head)
// that shows the state the API rebuilds at tick T (GET .../state?tick=T) against the head's, and, for a
// puppet master, "fork from here" and "revert to here" (POST /api/god/fork, /api/god/revert) behind a confirm step.

import { ApiError, getJson, postJson } from "./api.js";

const instance = document.body.dataset.instance;
const base = `/api/instances/${encodeURIComponent(instance)}`;
const $ = (id) => document.getElementById(id);

const SETTLE_MS = 250; // a rebuild is asked for once the scrubber rests this long
const RANGE_MS = 3000; // the head (and "now") is re-read at most this often while the world ticks
const MOVERS = 8; // agents listed by how much they changed

const view = { first: 0, head: 0, at: null, now: null, pending: null, loading: false, confirm: null };

function setText(id, text) {
  const el = $(id);
  if (el) el.textContent = String(text);
}

function showError(error) {
  const out = $("time-result");
  out.textContent = error instanceof ApiError ? error.message : `failed: ${error}`;
  out.className = "error";
}

function showRange() {
  for (const id of ["scrub-tick", "scrub-number"]) {
    const input = $(id);
    input.min = String(view.first);
    input.max = String(view.head);
    input.disabled = false;
  }
  setText("scrub-range", `${view.first}\u2013${view.head}`);
}

function signed(value, digits = 3) {
  const text = value.toFixed(digits);
  return value > 0 ? `+${text}` : text;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.textContent = String(cell);
    tr.append(td);
  }
  return tr;
}

// What changed between T and the head: the counts, the means and the agents that moved most.
function showChanges() {
  const at = view.at;
  const now = view.now;
  if (!at || !now) return;
  setText("now-tick", now.tick);
  const pairs = [
    ["threads", at.threads, now.threads, 0],
    ["rituals under way", at.rituals, now.rituals, 0],
    ["tasks", at.tasks, now.tasks, 0],
    ["loop", at.loop, now.loop, 0],
    ["mean valence", at.mood.valence, now.mood.valence, 3],
    ["mean energy", at.mood.energy, now.mood.energy, 3],
  ];
  $("at-changes").tBodies[0].replaceChildren(
    ...pairs.map(([name, then, current, digits]) => {
      const tr = row([name, then.toFixed(digits), current.toFixed(digits), signed(current - then, digits)]);
      tr.dataset.what = name;
      return tr;
    }),
  );
  const index = new Map(at.agents.ids.map((id, i) => [id, i]));
  const moved = [];
  now.agents.ids.forEach((id, j) => {
    const i = index.get(id);
    if (i === undefined) return;
    const dv = now.agents.valence[j] - at.agents.valence[i];
    const da = now.agents.arousal[j] - at.agents.arousal[i];
    const de = now.agents.energy[j] - at.agents.energy[i];
    moved.push({ id, dv, da, de, size: Math.abs(dv) + Math.abs(da) + Math.abs(de) });
  });
  moved.sort((a, b) => b.size - a.size || (a.id < b.id ? -1 : 1));
  $("at-agents").tBodies[0].replaceChildren(
    ...moved.slice(0, MOVERS).map((m) => {
      const tr = row([m.id, signed(m.dv), signed(m.da), signed(m.de)]);
      tr.dataset.agent = m.id;
      return tr;
    }),
  );
}

function showAt(state) {
  view.at = state;
  setText("at-tick", state.tick);
  setText("at-hash", state.state_hash);
  setText("at-loop", state.loop);
  setText("at-vibe", state.vibe ? `${state.vibe.condition} (forecast ${state.vibe.forecast})` : "\u2013");
  setText(
    "at-from",
    state.snapshot_tick === null
      ? `the parent's state + ${state.replayed_ticks} ticks`
      : `snapshot t${state.snapshot_tick} + ${state.replayed_ticks} ticks`,
  );
  $("time-travel").dataset.tick = String(state.tick);
  showChanges();
}

// One rebuild at a time; a tick asked for meanwhile is the next one read (older asks are dropped).
async function load(tick) {
  view.pending = tick;
  if (view.loading) return;
  view.loading = true;
  try {
    while (view.pending !== null) {
      const wanted = view.pending;
      view.pending = null;
      const head = view.head;
      const cached = view.now && view.now.tick === head ? view.now : null;
      const kept = view.at && view.at.tick === wanted && view.at.head_tick >= wanted ? view.at : null;
      const at = kept ?? (await getJson(`${base}/state?tick=${wanted}`));
      view.now = wanted === head ? at : (cached ?? (await getJson(`${base}/state?tick=${head}`)));
      if (view.pending === null) showAt(at);
    }
  } catch (error) {
    showError(error);
  } finally {
    view.loading = false;
  }
}

let settle = null;

function scrubTo(value) {
  const tick = Math.min(view.head, Math.max(view.first, Math.round(Number(value))));
  if (!Number.isFinite(tick)) return;
  $("scrub-tick").value = String(tick);
  $("scrub-number").value = String(tick);
  clearTimeout(settle);
  settle = setTimeout(() => load(tick), SETTLE_MS);
}

let lastRange = 0;

// The range: the instance's first tick (its fork tick for a fork) to its durable head, from the instance record.
async function readRange() {
  lastRange = performance.now();
  const record = await getJson(base);
  const head = Number(record.head_tick);
  const first = record.fork_tick === null || record.fork_tick === undefined ? 0 : Number(record.fork_tick);
  const following = Number($("scrub-tick").value) === view.head; // at the head: stay at the head
  const moved = head !== view.head || first !== view.first;
  view.first = first;
  view.head = head;
  showRange();
  return { following, moved };
}

async function refreshRange() {
  if (performance.now() - lastRange < RANGE_MS) return;
  try {
    const { following, moved } = await readRange();
    // following the head: show the new head; elsewhere: the same tick against the new "now"
    if (moved && !view.loading) scrubTo(following ? view.head : $("scrub-tick").value);
  } catch (error) {
    showError(error);
  }
}

// -- fork and revert, each behind a confirm step ------------------------------------------------------------------

function result(node, failed = false) {
  const out = $("time-result");
  out.replaceChildren(node);
  out.className = failed ? "error" : "ok";
}

function ask(text, action) {
  view.confirm = action;
  setText("time-confirm-text", text);
  $("time-confirm").hidden = false;
}

async function forkHere(tick) {
  const reply = await postJson("/api/god/fork", { source: instance, tick, forks: [{}] });
  const made = reply.forks[0];
  const link = document.createElement("a");
  link.href = `/worlds/${encodeURIComponent(made.id)}`;
  link.textContent = made.id;
  link.id = "forked-link";
  const span = document.createElement("span");
  span.append("forked ", link, ` at tick ${made.tick} (state ${made.state_hash})`);
  return span;
}

async function revertHere(tick) {
  const reply = await postJson("/api/god/revert", { instance, tick });
  const branch = reply.abandoned_branch;
  const span = document.createElement("span");
  span.textContent =
    `reverted to tick ${reply.tick} (state ${reply.state_hash}); ticks ${branch.from_tick}\u2013` +
    `${branch.head_tick} kept as abandoned branch ${branch.id}`;
  span.dataset.branch = branch.id;
  view.now = null; // the head moved back: ticks after it are another history now
  view.at = null;
  await readRange();
  scrubTo(reply.tick);
  return span;
}

function wireActions() {
  const current = () => Number($("scrub-tick").value);
  $("fork-here")?.addEventListener("click", () => {
    const tick = current();
    ask(`Fork ${instance} at tick ${tick} into a new instance?`, () => forkHere(tick));
  });
  $("revert-here")?.addEventListener("click", () => {
    const tick = current();
    ask(`Revert ${instance} to tick ${tick}? Ticks after it are kept as an abandoned branch.`, () => revertHere(tick));
  });
  $("time-confirm-no")?.addEventListener("click", () => {
    view.confirm = null;
    $("time-confirm").hidden = true;
  });
  $("time-confirm-yes")?.addEventListener("click", async () => {
    const action = view.confirm;
    view.confirm = null;
    $("time-confirm").hidden = true;
    if (!action) return;
    try {
      result(await action());
    } catch (error) {
      result(document.createTextNode(error instanceof ApiError ? error.message : `failed: ${error}`), true);
    }
  });
}

async function start() {
  $("scrub-form").addEventListener("submit", (event) => event.preventDefault());
  $("scrub-tick").addEventListener("input", (event) => scrubTo(event.currentTarget.value));
  $("scrub-number").addEventListener("change", (event) => scrubTo(event.currentTarget.value));
  wireActions();
  document.addEventListener("soulfra:event", () => refreshRange());
  try {
    await readRange();
    scrubTo(view.head);
  } catch (error) {
    showError(error);
  }
}

start();
