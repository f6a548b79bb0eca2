// The packages page (templates/packages.html): export an instance as a signed .soulpkg (a download of
// GET /api/instances/{id}/export, full or ?compact=true), and import one (POST /api/import, the file as the body
// with the package media type) with a progress bar from XMLHttpRequest's upload progress. Refusals are shown with
// the API's code and detail.

const $ = (id) => document.getElementById(id);
const csrf = document.querySelector('meta[name="csrf-token"]')?.content ?? "";
const PACKAGE_TYPE = "application/vnd.soulfra.package+zip";

function show(text, failed = false) {
  const out = $("import-result");
  out.textContent = text;
  out.className = `god-result ${failed ? "error" : "ok"}`;
}

function exportLink() {
  const id = $("export-instance").value;
  const link = $("export-link");
  if (!id) {
    link.removeAttribute("href");
    return;
  }
  const compact = $("export-compact").checked ? "?compact=true" : "";
  link.href = `/api/instances/${encodeURIComponent(id)}/export${compact}`;
  link.download = `${id}${compact ? "-compact" : ""}.soulpkg`;
}

function upload(file, query) {
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/api/import${query}`);
    xhr.setRequestHeader("content-type", PACKAGE_TYPE);
    xhr.setRequestHeader("accept", "application/json");
    xhr.setRequestHeader("x-csrf-token", csrf);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) $("import-progress").value = Math.round((100 * event.loaded) / event.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      resolve({ status: xhr.status, body });
    });
    xhr.addEventListener("error", () => resolve({ status: 0, body: { code: "network", detail: "the upload failed" } }));
    xhr.send(file);
  });
}

async function importPackage(form) {
  const file = form.file.files[0];
  if (!file) return;
  const params = new URLSearchParams();
  if (form.as_id.value.trim()) params.set("as_id", form.as_id.value.trim());
  if (form.verify_replay.checked) params.set("verify_replay", "true");
  if (!form.start.checked) params.set("start", "false");
  const query = params.size ? `?${params}` : "";
  $("import-progress").value = 0;
  show(`uploading ${file.name} (${file.size} bytes)\u2026`);
  const { status, body } = await upload(file, query);
  if (status === 401) window.location.assign("/");
  if (status >= 200 && status < 300) {
    $("import-progress").value = 100;
    const ids = body.imported.map((row) => row.id).join(", ");
    show(`imported ${ids} (signed by key ${body.key_id})`);
    return;
  }
  show(`refused: ${body?.detail ?? "no answer"} (${body?.code ?? "http_error"}, HTTP ${status})`, true);
}

$("export-instance").addEventListener("change", exportLink);
$("export-compact").addEventListener("change", exportLink);
exportLink();
$("import-form").addEventListener("submit", (event) => {
  event.preventDefault();
  importPackage(event.currentTarget);
});
