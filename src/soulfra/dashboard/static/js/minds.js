// Language minds on the world page: the instance's model cost (calls, tokens, latency, from the recorded replies)
// in the page's facts, and a language agent's mind in its panel: its model, the tick its thought is due at, its
// last recorded replies and the prompt the newest answered (rebuilt by the server, its digest checked).

import { getJson } from "./api.js";

const $ = (id) => document.getElementById(id);

export function costLine(costs) {
  if (!costs.calls) return "no model calls recorded";
  const failed = costs.calls - (costs.outcomes.reply ?? 0);
  const tokens = costs.prompt_tokens + costs.completion_tokens;
  return (
    `${costs.calls} calls (${failed} fell back) · ${tokens} tokens ` +
    `(${costs.prompt_tokens} in, ${costs.completion_tokens} out) · ` +
    `latency mean ${Math.round(costs.latency_mean_ms)} ms, p50 ${Math.round(costs.latency_p50_ms)} ms`
  );
}

// The page's facts hold the short form: calls, fallbacks, tokens, median latency.
export function costFact(costs) {
  if (!costs.calls) return "no calls recorded";
  const failed = costs.calls - (costs.outcomes.reply ?? 0);
  const tokens = costs.prompt_tokens + costs.completion_tokens;
  return `${costs.calls} calls · ${failed} fell back · ${tokens} tokens · p50 ${Math.round(costs.latency_p50_ms)} ms`;
}

// The cost fact; a failed read says so in its place (the rest of the page goes on).
export async function loadCosts(base) {
  let text;
  try {
    text = costFact((await getJson(`${base}/minds`)).costs);
  } catch (error) {
    text = `unavailable (${error.message})`;
  }
  const el = $("model-cost");
  if (el && el.textContent !== text) el.textContent = text;
}

function element(tag, text, className) {
  const el = document.createElement(tag);
  if (text !== undefined) el.textContent = text;
  if (className) el.className = className;
  return el;
}

function callItem(call) {
  const item = element("li", undefined, `mind-call outcome-${call.outcome}`);
  const head = element("p", undefined, "mind-call-head");
  // a parsed reply shows the decision it asked for; anything else, why its agent fell back
  const said = call.decision ? `decided: ${call.decision.action}` : `fell back (${call.outcome})`;
  head.append(
    element("span", `t${call.tick}`, "feed-tick"),
    element("strong", said),
    element("span", ` · ${call.prompt_tokens + call.completion_tokens} tokens · ${call.latency_ms} ms`, "muted"),
  );
  item.append(head);
  if (call.reply) item.append(element("pre", call.reply, "mind-reply"));
  return item;
}

function promptBlock(prompt) {
  const details = element("details", undefined, "mind-prompt");
  const check = prompt.matches ? "digest matches the recorded one" : "digest differs from the recorded one";
  details.append(element("summary", `Last prompt (rebuilt from tick ${prompt.tick}; ${check})`));
  for (const message of prompt.messages) {
    details.append(element("h4", message.role), element("pre", message.content));
  }
  return details;
}

// The mind section of a language agent's panel (null for an agent no model decides for).
export function mindSection(mind) {
  if (!mind.language) return null;
  const section = element("section", undefined, "mind");
  section.id = "mind-panel";
  const facts = document.createElement("dl");
  const pairs = [
    ["model", mind.model],
    ["falls back to", mind.mind],
    ["thinking", mind.due === null ? "not now" : `due at tick ${mind.due}`],
    ["instance cost", costLine(mind.costs)],
  ];
  for (const [term, value] of pairs) facts.append(element("dt", term), element("dd", value));
  section.append(element("h3", "Mind"), facts);
  if (!mind.calls.length) {
    section.append(element("p", "no reply recorded yet", "muted"));
    return section;
  }
  const list = element("ol", undefined, "mind-calls");
  list.append(...mind.calls.map(callItem));
  section.append(element("h4", "Last replies"), list);
  if (mind.prompt) section.append(promptBlock(mind.prompt));
  return section;
}

// Add the agent's mind to its panel, unless another agent was chosen meanwhile (``current`` says which is shown).
export async function showMind(base, agentId, current) {
  const mind = await getJson(`${base}/agents/${encodeURIComponent(agentId)}/mind`);
  if (current() !== agentId) return;
  const section = mindSection(mind);
  if (section) $("agent-body").prepend(section);
  $("agent-body").dataset.mind = agentId; // the panel is complete (a test waits for it)
}
