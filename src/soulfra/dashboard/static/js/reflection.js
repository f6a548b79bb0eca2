// The world page's views fed by the public reflection paths (soulfra.api.reflection), each read for this page's
// instance with ?instance=: the chosen agent's place in its loop with its recent actions (/api/agents/loop?agent=)
// and the open threads (/api/thread/state). world.js calls these from its refresh, at most once a second.

import { getJson } from "./api.js";

const $ = (id) => document.getElementById(id);

function element(tag, text, className) {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = String(text);
  if (className) el.className = className;
  return el;
}

function replaceIfChanged(el, key, children) {
  if (el.dataset.key === key) return; // the same answer: leave the DOM (and its scroll) alone
  el.dataset.key = key;
  el.replaceChildren(...children);
}

// -- the agent's loop -------------------------------------------------------------------------------------------

function loopSection(row, tick) {
  const section = element("section", undefined, "agent-loop");
  section.id = "agent-loop";
  section.dataset.agent = row.id;
  section.dataset.tick = tick;
  const facts = document.createElement("dl");
  const phase = element("dd", row.phase, `phase phase-${row.phase}`);
  phase.id = "agent-phase";
  facts.append(element("dt", "phase"), phase);
  if (row.possessed_by) facts.append(element("dt", "possessed by"), element("dd", row.possessed_by));
  if (row.whisper) facts.append(element("dt", "whisper"), element("dd", "waiting, not yet acted on"));
  section.append(element("h3", `Loop (tick ${tick})`), facts, element("h4", "Recent actions"));
  if (!row.recent.length) {
    section.append(element("p", "no action yet", "muted"));
    return section;
  }
  const list = element("ol", undefined, "agent-actions");
  list.id = "agent-actions";
  for (const action of row.recent) {
    const item = element("li");
    item.dataset.tick = action.tick;
    item.dataset.action = action.action;
    item.append(element("span", `t${action.tick}`, "feed-tick"), element("span", action.action));
    list.append(item);
  }
  section.append(list);
  return section;
}

// Put (or refresh) the agent's loop section in its panel, unless another agent was chosen meanwhile.
// A failed read says so in the section's place; the rest of the panel stays.
export async function showLoop(instance, agentId, current) {
  const query = `instance=${encodeURIComponent(instance)}&agent=${encodeURIComponent(agentId)}`;
  let section;
  try {
    const reply = await getJson(`/api/agents/loop?${query}`);
    section = loopSection(reply.agents[0], reply.tick);
  } catch (error) {
    section = element("section", undefined, "agent-loop");
    section.id = "agent-loop";
    section.append(element("h3", "Loop"), element("p", `unavailable (${error.message})`, "error"));
  }
  if (current() !== agentId) return;
  const body = $("agent-body");
  const old = $("agent-loop");
  const personality = body.querySelector(".personality");
  if (old) old.replaceWith(section);
  else if (personality) personality.after(section);
  else body.prepend(section);
}

// -- threads ----------------------------------------------------------------------------------------------------

function threadRow(thread, stallAfter) {
  const tr = document.createElement("tr");
  tr.dataset.thread = thread.id;
  const quiet = thread.quiet >= stallAfter;
  tr.dataset.quiet = thread.quiet;
  tr.className = quiet ? "thread-quiet" : "thread-active";
  const shown = thread.participants.slice(0, 6).join(", ");
  const more = thread.participants.length > 6 ? ` +${thread.participants.length - 6}` : "";
  const latest = thread.recent.at(-1);
  const cells = [
    element("td", thread.id, "num"),
    element("td", thread.topic, "thread-topic"),
    element("td", thread.posts, "num thread-posts"),
    element("td", `${thread.participants.length}: ${shown}${more}`, "thread-participants"),
    element("td", thread.last_post, "num"),
    element("td", quiet ? `quiet ${thread.quiet} (≥ ${stallAfter})` : "active", "thread-state"),
    element("td", latest ? `${latest.agent ?? "a visitor"}: ${latest.text}` : "", "thread-latest"),
  ];
  cells[3].dataset.participants = thread.participants.join(",");
  tr.append(...cells);
  return tr;
}

export async function loadThreads(instance) {
  const reply = await getJson(`/api/thread/state?instance=${encodeURIComponent(instance)}`);
  const table = $("thread-table");
  if (!table) return;
  table.dataset.tick = reply.tick;
  const summary = `${reply.open} open at tick ${reply.tick} · quiet: no post for ${reply.stall_after} ticks or more`;
  const el = $("thread-summary");
  if (el.textContent !== summary) el.textContent = summary;
  const quietFor = (t) => (t.quiet >= reply.stall_after ? t.quiet : -1); // shown only once past the threshold
  const key = JSON.stringify(reply.threads.map((t) => [t.id, t.posts, t.last_post, quietFor(t)]));
  replaceIfChanged(
    table.tBodies[0],
    key,
    reply.threads.map((thread) => threadRow(thread, reply.stall_after)),
  );
}
