// Health: readiness (/readyz), the instances that failed (from the instance list), and who holds each writer lease
// (/api/leases), read again every few seconds.

import { ApiError, getJson } from "./api.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 3000;

function failure(error) {
  return error instanceof ApiError ? error.message : `failed: ${error}`;
}

async function readiness() {
  const out = $("readiness");
  try {
    const response = await fetch("/readyz", { headers: { accept: "application/json" }, credentials: "same-origin" });
    const body = await response.json();
    if (response.ok) {
      out.textContent = `ready: ${body.instance} at tick ${body.tick}`;
      out.className = "ok ready";
    } else {
      out.textContent = `not ready: ${body.detail} (${body.code})`;
      out.className = "error not-ready";
    }
  } catch (error) {
    out.textContent = `not ready: ${failure(error)}`;
    out.className = "error not-ready";
  }
}

function item(text, className = "") {
  const li = document.createElement("li");
  li.textContent = text;
  if (className) li.className = className;
  return li;
}

async function failed() {
  const list = $("failed");
  try {
    const { instances } = await getJson("/api/instances");
    const broken = instances.filter((i) => i.failure || i.state === "failed");
    list.replaceChildren(
      ...(broken.length
        ? broken.map((i) => {
            const f = i.failure ?? {};
            return item(`${i.id} at tick ${f.tick ?? "?"}: ${f.type ?? "failed"}: ${f.message ?? ""}`, "error");
          })
        : [item(`none (${instances.length} instance${instances.length === 1 ? "" : "s"})`, "muted none-failed")]),
    );
  } catch (error) {
    list.replaceChildren(item(failure(error), "error"));
  }
}

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text ?? "";
  return td;
}

async function leases() {
  const body = $("leases");
  try {
    const reply = await getJson("/api/leases");
    if (!reply.kept) {
      const tr = document.createElement("tr");
      const td = cell("this server keeps no store: it reads no leases");
      td.colSpan = 5;
      tr.append(td);
      body.replaceChildren(tr);
      return;
    }
    body.replaceChildren(
      ...reply.leases.map((lease) => {
        const tr = document.createElement("tr");
        tr.className = lease.live ? "lease-live" : "lease-gone";
        tr.append(
          cell(lease.key === ":puppet-master" ? "this server (puppet master)" : lease.key),
          cell(`pid ${lease.pid} on ${lease.host}`),
          cell(lease.since.replace("T", " ").slice(0, 19)),
          cell(lease.epoch),
          cell(lease.live ? "yes" : "no (released or its holder is gone)"),
        );
        return tr;
      }),
    );
  } catch (error) {
    const tr = document.createElement("tr");
    tr.append(cell(failure(error)));
    body.replaceChildren(tr);
  }
}

async function refresh() {
  await Promise.all([readiness(), failed(), leases()]);
  setTimeout(refresh, REFRESH_MS);
}

refresh();
