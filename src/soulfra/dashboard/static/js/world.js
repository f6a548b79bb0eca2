// One world, live: its status, vibe weather and agents from the JSON API, refreshed when its event stream (SSE)
// says something happened; the feed from the events themselves; the controls the server rendered for this role.

import { ApiError, getJson, postJson } from "./api.js";
import { agentAt, drawAgents, drawWeather } from "./canvas.js";
import "./god.js";
import { loadCosts, showMind } from "./minds.js";
import { loadThreads, showLoop } from "./reflection.js";

const instance = document.body.dataset.instance;
const base = `/api/instances/${encodeURIComponent(instance)}`;
const $ = (id) => document.getElementById(id);

const FEED_MAX = 200; // feed entries kept on the page
const REFRESH_MS = 1000; // state reads at most this often, however many events arrive
// The agents are read in the API's compact view (id, name, mind, valence, arousal, energy: about 100 bytes an agent
// before gzip), so they refresh as often as the rest; a click reads one agent's full record.
const AGENTS_MS = 1000;
const COSTS_MS = 5000; // the model cost line reads the whole input log: less often
const AGENT_PAGE = 10000; // the compact view's largest page
const AGENT_MAX = 10000;
const LIST_MAX = 12; // agents listed under the canvas (search narrows the list)

const view = { tick: -1, agents: [], history: [], selected: null, filter: "", mind: "" };

function setText(id, text) {
  const el = $(id);
  if (el && el.textContent !== String(text)) el.textContent = String(text);
}

function showTick(tick) {
  if (Number.isFinite(tick) && tick > view.tick) {
    view.tick = tick;
    setText("tick", tick);
  }
}

function matches(agent) {
  if (view.mind && agent.mind !== view.mind) return false;
  if (!view.filter) return true;
  return agent.id.toLowerCase().includes(view.filter) || (agent.name ?? "").toLowerCase().includes(view.filter);
}

// -- state reads -----------------------------------------------------------------------------------------------

async function loadStatus() {
  const status = await getJson(`${base}/status`);
  const runtime = status.platforms?.runtime ?? {};
  showTick(Number(runtime.tick));
  return status;
}

// How the instance runs, as the instances view says it: running, frozen, paused, overridden, failed.
async function loadState() {
  const record = await getJson(base);
  const state = record.status === "abandoned" ? "abandoned" : record.failure ? "failed" : record.state;
  const el = $("state");
  el.textContent = state ?? "\u2013";
  el.className = `status status-${state}`;
}

async function loadWeather() {
  const report = await getJson(`${base}/vibe/weather?limit=64`);
  const weather = report.weather;
  view.history = report.history ?? [];
  if (weather) {
    const condition = $("condition");
    condition.textContent = weather.condition;
    condition.className = `vibe vibe-${weather.condition}`;
    condition.style.backgroundColor = weather.colour;
    setText("frequency", `${weather.frequency} Hz · ${weather.emotion} · forecast ${weather.forecast}`);
    setText("narrative", weather.narrative);
    setText("temperature", Number(weather.temperature).toFixed(3));
    setText("pressure", Number(weather.pressure).toFixed(3));
    setText("wind", Number(weather.wind).toFixed(3));
  }
  drawWeather($("weather-chart"), view.history);
}

async function loadAgents() {
  const agents = [];
  for (let offset = 0; offset < AGENT_MAX; offset += AGENT_PAGE) {
    const page = await getJson(`${base}/agents?view=compact&offset=${offset}&limit=${AGENT_PAGE}`);
    agents.push(...page.agents);
    if (agents.length >= page.total || page.agents.length === 0) break;
  }
  view.agents = agents;
  setText("agent-count", agents.length);
  fillAgentChoices();
  drawAgentViews();
}

function drawAgentViews() {
  drawAgents($("agent-canvas"), view.agents, matches, view.selected);
  const list = $("agent-list");
  const shown = view.agents.filter(matches).slice(0, LIST_MAX);
  const items = shown.map((agent) => {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "agent-button";
    button.dataset.agent = agent.id;
    button.textContent = `${agent.name ?? agent.id} · ${agent.mind ?? ""}`;
    button.addEventListener("click", () => showAgent(agent.id));
    item.append(button);
    return item;
  });
  const hidden = view.agents.filter(matches).length - shown.length;
  if (hidden > 0) {
    const more = document.createElement("li");
    more.className = "muted";
    more.textContent = `and ${hidden} more (search to narrow)`;
    items.push(more);
  }
  list.replaceChildren(...items);
}

// Every agent, offered as the user types an agent's id (whisper, possess, traits, links): the god panel's datalist,
// refilled when the agents change (a fork's genesis, an import), never cut short.
let choicesKey = "";

function fillAgentChoices() {
  const list = $("god-agents");
  if (!list) return;
  const key = `${view.agents.length}:${view.agents[0]?.id}:${view.agents.at(-1)?.id}`;
  if (key === choicesKey) return;
  choicesKey = key;
  list.replaceChildren(...view.agents.map((agent) => new Option(agent.name ?? agent.id, agent.id)));
  list.dataset.count = view.agents.length;
}

async function showAgent(agentId) {
  view.selected = agentId;
  drawAgentViews();
  const panel = $("agent-detail");
  panel.hidden = false;
  try {
    const reply = await getJson(`${base}/agents/${encodeURIComponent(agentId)}`);
    renderAgent(reply.agent);
    await Promise.all([showLoop(instance, agentId, () => view.selected), showMind(base, agentId, () => view.selected)]);
  } catch (error) {
    setText("agent-name", agentId);
    $("agent-body").replaceChildren(message(error));
  }
}

function definitions(pairs) {
  const list = document.createElement("dl");
  for (const [term, value] of pairs) {
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    list.append(dt, dd);
  }
  return list;
}

function renderAgent(agent) {
  setText("agent-name", `${agent.name} (${agent.id})`);
  const scale = agent.personality?.scale || 1;
  const traits = Object.entries(agent.personality?.traits ?? {}).map(([k, v]) => [k, (v / scale).toFixed(2)]);
  const stateScale = agent.state?.scale || 1;
  const personality = document.createElement("section");
  personality.className = "personality";
  personality.append(
    heading("Personality"),
    definitions([
      ["mind", agent.mind ?? ""],
      ["voice", agent.personality?.voice ?? ""],
      ["goals", (agent.personality?.goals ?? []).join(", ")],
      ...traits,
    ]),
  );
  const state = document.createElement("section");
  state.append(
    heading("State"),
    definitions([
      ["valence", Number(agent.mood?.valence ?? 0).toFixed(3)],
      ["arousal", Number(agent.mood?.arousal ?? 0).toFixed(3)],
      ["energy", ((agent.state?.energy ?? 0) / stateScale).toFixed(3)],
      ["focus", ((agent.state?.focus ?? 0) / stateScale).toFixed(3)],
      ["possessed by", agent.state?.possessed_by ?? "nobody"],
    ]),
  );
  const memories = document.createElement("section");
  memories.className = "memories";
  const memoryList = document.createElement("ol");
  for (const memory of agent.state?.memory ?? []) {
    const item = document.createElement("li");
    item.textContent = memory;
    memoryList.append(item);
  }
  memories.append(heading("Memories"), memoryList);
  const affinities = document.createElement("section");
  affinities.className = "affinities";
  const pairs = Object.entries(agent.affinity ?? {}).map(([other, value]) => [other, Number(value).toFixed(3)]);
  affinities.append(heading("Affinities"), pairs.length ? definitions(pairs) : muted("none yet"));
  $("agent-body").replaceChildren(personality, state, memories, affinities);
}

function heading(text) {
  const h = document.createElement("h3");
  h.textContent = text;
  return h;
}

function muted(text) {
  const p = document.createElement("p");
  p.className = "muted";
  p.textContent = text;
  return p;
}

function message(error) {
  const p = document.createElement("p");
  p.className = "error";
  p.textContent = error instanceof ApiError ? error.message : `failed: ${error}`;
  return p;
}

// -- refreshing ------------------------------------------------------------------------------------------------

let refreshing = false;
let again = false;
let last = 0;
let lastAgents = 0;
let lastCosts = 0;

async function refresh() {
  if (refreshing) {
    again = true;
    return;
  }
  const wait = last + REFRESH_MS - performance.now();
  if (wait > 0) {
    refreshing = true;
    setTimeout(() => {
      refreshing = false;
      refresh();
    }, wait);
    return;
  }
  refreshing = true;
  last = performance.now();
  try {
    const reads = [loadStatus(), loadState(), loadWeather(), loadThreads(instance)];
    if (view.selected && !$("agent-detail").hidden) reads.push(showLoop(instance, view.selected, () => view.selected));
    if (last - lastAgents >= AGENTS_MS) {
      lastAgents = last;
      reads.push(loadAgents());
    }
    if (last - lastCosts >= COSTS_MS) {
      lastCosts = last;
      reads.push(loadCosts(base));
    }
    await Promise.all(reads);
  } catch (error) {
    setText("stream-state", `read failed: ${error.message}`);
  } finally {
    refreshing = false;
    if (again) {
      again = false;
      refresh();
    }
  }
}

// -- the feed --------------------------------------------------------------------------------------------------

function describe(event) {
  const d = event.data ?? {};
  const who = d.agent ?? "";
  switch (event.kind) {
    case "post_made":
      return [`${who} on ${d.topic ?? "?"}`, d.text ?? ""];
    case "whisper_heard":
      return [`${who === "*" ? "every agent" : who} heard a ${d.tone ?? ""} whisper`, d.text ?? ""];
    case "operator_acted":
      return [`${who} (possessed) acted`, d.action ?? d.text ?? ""];
    case "thread_opened":
      return [`${who} opened a thread`, d.topic ?? ""];
    case "vibe_shifted":
    case "vibe_altered":
      return ["vibe shift", d.condition ?? d.to ?? ""];
    case "loop_sealed":
      return ["loop sealed", `loop ${d.loop ?? "?"} ${d.state_hash ?? ""}`];
    default:
      if (event.kind.startsWith("ritual")) return [event.kind.replace("_", " "), d.name ?? `ritual ${d.ritual ?? ""}`];
      return [event.kind.replaceAll("_", " "), who];
  }
}

function addToFeed(event) {
  const [title, body] = describe(event);
  const item = document.createElement("li");
  item.className = `feed-item channel-${event.channel.replace(":", "-")} kind-${event.kind}`;
  if (event.at_ms) item.dataset.at = event.at_ms; // when the tick was done (server clock): tick-to-screen latency
  const tick = document.createElement("span");
  tick.className = "feed-tick";
  tick.textContent = `t${event.tick}`;
  const strong = document.createElement("strong");
  strong.textContent = title;
  const text = document.createElement("span");
  text.className = "feed-text";
  text.textContent = body;
  item.append(tick, strong, text);
  const feed = $("feed");
  feed.prepend(item);
  while (feed.childElementCount > FEED_MAX) feed.lastElementChild.remove();
}

const CHANNELS = [
  "world:event",
  "agent:reflection",
  "ritual:performed",
  "vibe:shift",
  "loop:completed",
  "anomaly:detected",
  "mirror:snapshot",
];

function follow(after) {
  const source = new EventSource(`${base}/events?after=${after}`);
  const onEvent = (message) => {
    const event = JSON.parse(message.data);
    document.dispatchEvent(new CustomEvent("soulfra:event", { detail: event })); // for the page's other modules
    showTick(Number(event.tick));
    addToFeed(event);
    refresh();
  };
  for (const channel of CHANNELS) source.addEventListener(channel, onEvent);
  source.addEventListener("open", () => setText("stream-state", "live"));
  source.addEventListener("restarted", () => {
    view.tick = -1;
    document.dispatchEvent(new CustomEvent("soulfra:restarted"));
    $("feed").replaceChildren();
    refresh();
  });
  source.addEventListener("error", () => setText("stream-state", "reconnecting"));
  window.addEventListener("pagehide", () => source.close());
}

// -- controls --------------------------------------------------------------------------------------------------

function result(text, failed = false) {
  const out = $("control-result");
  out.textContent = text;
  out.className = failed ? "error" : "ok";
}

async function control(action) {
  try {
    result(await action());
  } catch (error) {
    result(error instanceof ApiError ? error.message : `failed: ${error}`, true);
  }
  refresh();
}

function wireControls() {
  $("whisper-form")?.addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const body = { text: form.text.value, target: form.target.value.trim() || "*", tone: form.tone.value };
    control(async () => {
      const ack = await postJson(`${base}/whispers`, body);
      form.text.value = "";
      return `whisper acknowledged: input ${ack.seq}, applies at tick ${ack.tick}`;
    });
  });
  $("freeze-button")?.addEventListener("click", () =>
    control(async () => {
      const duration = Number($("freeze-duration")?.value || 0); // empty: until thawed
      const reply = await postJson("/api/god/freeze", { instances: [instance], ...(duration > 0 ? { duration } : {}) });
      const at = reply.frozen?.find((f) => f.instance === instance)?.tick;
      return `frozen at tick ${at ?? "?"}${reply.until ? ` until ${reply.until}` : ""}`;
    }),
  );
  $("thaw-button")?.addEventListener("click", () =>
    control(async () => {
      const reply = await postJson("/api/god/thaw", { instances: [instance] });
      const at = reply.thawed?.find((f) => f.instance === instance)?.tick;
      return `thawed at tick ${at ?? "?"}`;
    }),
  );
}

// -- start -----------------------------------------------------------------------------------------------------

async function start() {
  $("agent-filter").addEventListener("input", (event) => {
    view.filter = event.currentTarget.value.trim().toLowerCase();
    drawAgentViews();
  });
  $("agent-mind").addEventListener("change", (event) => {
    view.mind = event.currentTarget.value;
    drawAgentViews();
  });
  $("agent-canvas").addEventListener("click", (event) => {
    const agent = agentAt($("agent-canvas"), view.agents.filter(matches), view.agents, event);
    if (agent) showAgent(agent.id);
  });
  window.addEventListener("resize", () => {
    drawWeather($("weather-chart"), view.history);
    drawAgentViews();
  });
  wireControls();
  let seq = 0;
  try {
    const [status] = await Promise.all([
      loadStatus(),
      loadState(),
      loadWeather(),
      loadAgents(),
      loadCosts(base),
      loadThreads(instance),
    ]);
    last = lastAgents = lastCosts = performance.now();
    seq = Number(status.platforms?.surface?.stream_seq ?? 0);
  } catch (error) {
    setText("stream-state", `read failed: ${error.message}`);
  }
  follow(Math.max(0, seq - 50)); // the last 50 events fill the feed; then it is live
}

start();
