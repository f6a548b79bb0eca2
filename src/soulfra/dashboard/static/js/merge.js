// The merge page (templates/merge.html): choose two instances, preview the conflicts (POST /api/god/merge/preview,
// the merge's own code with nothing written), choose a policy per domain, merge (POST /api/god/merge) and read the
// conflict report. Every answer and error (the API's {code, detail}) is shown in place.

import { ApiError, postJson } from "./api.js";

const $ = (id) => document.getElementById(id);
const SHOWN_MAX = 5000; // conflict rows drawn; the count says how many there are

function show(id, text, failed = false) {
  const out = $(id);
  out.textContent = text;
  out.className = `god-result ${failed ? "error" : "ok"}`;
}

function failure(error) {
  return error instanceof ApiError ? error.message : `failed: ${error.message ?? error}`;
}

function command() {
  const form = $("merge-form");
  const policies = {};
  for (const select of $("policy-form").querySelectorAll("select")) policies[select.dataset.domain] = select.value;
  const body = { ours: form.ours.value, theirs: form.theirs.value, policies };
  if (form.id.value.trim()) body.id = form.id.value.trim();
  return body;
}

function value(v) {
  if (v === undefined) return "";
  const text = typeof v === "string" ? v : JSON.stringify(v);
  return text.length > 40 ? `${text.slice(0, 39)}\u2026` : text; // the whole value is in the API's report
}

function drawConflicts(tableId, conflicts) {
  const table = $(tableId);
  const rows = conflicts.slice(0, SHOWN_MAX).map((c) => {
    const row = document.createElement("tr");
    row.dataset.domain = c.domain;
    row.dataset.entity = c.entity;
    row.dataset.field = c.field;
    for (const cell of [c.domain, c.entity, c.field, value(c.base), value(c.ours), value(c.theirs), c.policy, value(c.resolved)]) {
      const td = document.createElement("td");
      td.textContent = cell;
      row.append(td);
    }
    return row;
  });
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = conflicts.length === 0;
}

function counts(changes) {
  return Object.entries(changes)
    .map(([domain, c]) => `${domain} ${c.taken_from_ours}/${c.taken_from_theirs}/${c.conflicts}`)
    .join(" · ");
}

let previewed = false;

async function preview() {
  show("preview-result", "\u2026");
  $("merge-button").disabled = true;
  try {
    const reply = await postJson("/api/god/merge/preview", command());
    const [ourTick, theirTick] = reply.parent_ticks;
    show(
      "preview-result",
      `${reply.conflicts.length} conflicts; ${reply.parents[0]} at tick ${ourTick}, ${reply.parents[1]} at tick ` +
        `${theirTick}, last met in ${reply.base.instance} at tick ${reply.base.tick}; merged tick ${reply.tick}. ` +
        `Per domain (ours/theirs/conflicts): ${counts(reply.changes)}`,
    );
    drawConflicts("preview-conflicts", reply.conflicts);
    previewed = true;
    $("merge-button").disabled = false;
  } catch (error) {
    show("preview-result", failure(error), true);
    drawConflicts("preview-conflicts", []);
  }
}

async function merge() {
  show("merge-result", "\u2026");
  try {
    const reply = await postJson("/api/god/merge", command());
    const result = $("merge-result");
    result.textContent = "";
    const link = document.createElement("a");
    link.href = `/worlds/${encodeURIComponent(reply.id)}`;
    link.id = "merged-link";
    link.textContent = reply.id;
    result.append(
      "merged ",
      reply.parents.join(" + "),
      " into ",
      link,
      ` at tick ${reply.tick} (${reply.state_hash.slice(0, 12)}), ${reply.conflicts.length} conflicts resolved`,
    );
    result.className = "god-result ok";
    drawConflicts("report-conflicts", reply.conflicts);
  } catch (error) {
    show("merge-result", failure(error), true);
  }
}

async function freezeBoth() {
  const { ours, theirs } = command();
  try {
    const reply = await postJson("/api/god/freeze", { instances: [...new Set([ours, theirs])] });
    show("preview-result", `frozen: ${reply.frozen.map((f) => `${f.instance} at tick ${f.tick}`).join(", ")}`);
  } catch (error) {
    show("preview-result", failure(error), true);
  }
}

$("merge-form").addEventListener("submit", (event) => {
  event.preventDefault();
  preview();
});
$("policy-form").addEventListener("change", () => {
  if (previewed) preview(); // the policies decide how each conflict resolves
});
$("merge-button").addEventListener("click", merge);
$("freeze-both-button").addEventListener("click", freezeBoth);
