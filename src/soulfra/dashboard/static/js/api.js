// The JSON API from the page: same origin, the session cookie, and the session's CSRF token on every change.
// Errors come back as {code, detail} (the API's own shape), so callers show them in place.

const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export class ApiError extends Error {
  constructor(status, code, detail) {
    super(`${detail} (${code}, HTTP ${status})`);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

async function answer(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (response.status === 401) {
    window.location.assign("/"); // the session ended: sign in again
  }
  if (!response.ok) {
    throw new ApiError(response.status, body?.code ?? "http_error", body?.detail ?? response.statusText);
  }
  return body;
}

export async function getJson(path) {
  return answer(await fetch(path, { headers: { accept: "application/json" }, credentials: "same-origin" }));
}

export async function postJson(path, body) {
  return answer(
    await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", accept: "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(body ?? {}),
    }),
  );
}
