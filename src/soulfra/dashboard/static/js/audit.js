// The audit log (admin): the chain's verification, and the rows filtered by instance, actor, action and outcome,
// oldest first from where the reading starts ("Latest rows" starts near the head), read page by page from the API.

import { ApiError, getJson } from "./api.js";

const $ = (id) => document.getElementById(id);
const PAGE = 100;
const reading = { query: new URLSearchParams(), after: 0 };

function failure(error) {
  return error instanceof ApiError ? error.message : `failed: ${error}`;
}

async function verify() {
  const out = $("chain-status");
  out.className = "muted";
  out.textContent = "verifying…";
  try {
    const report = await getJson("/api/audit/verify");
    if (report.ok) {
      const signed = report.signed
        ? `signed at row ${report.signed.row_id}${report.signed.signature_checked ? "" : " (signature not checked)"}`
        : "no signed head yet";
      out.textContent = `verified: ${report.rows} rows, head ${report.head_hash.slice(0, 16)}…, ${signed}`;
      out.className = "ok chain-ok";
    } else {
      out.textContent = `broken at row ${report.bad_row}: ${report.problem}`;
      out.className = "error chain-broken";
    }
    return report;
  } catch (error) {
    out.textContent = failure(error);
    out.className = "error";
    return null;
  }
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  return td;
}

function row(entry) {
  const tr = document.createElement("tr");
  tr.className = `outcome-${entry.outcome === "ok" ? "ok" : "refused"}`;
  const detail = JSON.stringify(entry.detail ?? {});
  tr.append(
    cell(entry.id),
    cell(entry.timestamp.replace("T", " ").slice(0, 19)),
    cell(entry.actor),
    cell(entry.role),
    cell(entry.action),
    cell(entry.instance_id ?? ""),
    cell(entry.outcome),
    cell(detail.length > 160 ? `${detail.slice(0, 160)}…` : detail),
  );
  return tr;
}

async function read(fresh) {
  const params = new URLSearchParams(reading.query);
  params.set("after", String(reading.after));
  params.set("limit", String(PAGE));
  try {
    const page = await getJson(`/api/audit?${params}`);
    const rows = page.entries.map(row);
    if (fresh) $("audit-rows").replaceChildren(...rows);
    else $("audit-rows").append(...rows);
    reading.after = page.next_after;
    $("audit-more").hidden = page.entries.length < PAGE;
    const shown = $("audit-rows").childElementCount;
    $("audit-result").textContent = shown ? `${shown} rows shown` : "no rows match";
    $("audit-result").className = "muted";
  } catch (error) {
    $("audit-result").textContent = failure(error);
    $("audit-result").className = "error";
  }
}

function filters() {
  const form = $("audit-filter");
  const query = new URLSearchParams();
  for (const name of ["instance", "actor", "action", "outcome"]) {
    const value = form.elements[name].value.trim();
    if (value) query.set(name, value);
  }
  return query;
}

async function start() {
  $("verify-button").addEventListener("click", verify);
  $("audit-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    reading.query = filters();
    reading.after = 0;
    read(true);
  });
  $("audit-more").addEventListener("click", () => read(false));
  const report = await verify();
  $("audit-latest").addEventListener("click", async () => {
    const head = (await verify())?.head_id ?? 0;
    reading.query = filters();
    reading.after = Math.max(0, head - PAGE);
    read(true);
  });
  reading.after = Math.max(0, (report?.head_id ?? 0) - PAGE); // the latest rows first
  read(true);
}

start();
