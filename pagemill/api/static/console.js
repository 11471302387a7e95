// The console's behaviour: drag-and-drop upload, live progress, cancel/redrive. No libraries.
(function () {
  "use strict";
  const root = (document.querySelector("link[rel=stylesheet]").getAttribute("href") || "").replace(/\/static\/console\.css$/, "");

  async function api(method, path, body) {
    const response = await fetch(root + path, { method: method, body: body, headers: { Accept: "application/json" } });
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(data.message || response.statusText);
    return data;
  }

  // --- upload -----------------------------------------------------------------------------
  const zone = document.getElementById("upload");
  if (zone) {
    const input = document.getElementById("file-input");
    const log = document.getElementById("upload-log");
    const send = async (file) => {
      const item = document.createElement("li");
      item.textContent = file.name + ": uploading…";
      log.appendChild(item);
      const form = new FormData();
      form.append("file", file, file.name);
      try {
        const accepted = await api("POST", "/documents", form);
        item.textContent = file.name + ": " + (accepted.duplicate ? "already processed (" + accepted.status + ")" : "accepted, processing");
        item.className = "ok";
        refresh();
      } catch (error) {
        item.textContent = file.name + ": " + error.message;
        item.className = "bad";
      }
    };
    input.addEventListener("change", () => Array.from(input.files).forEach(send));
    ["dragenter", "dragover"].forEach((e) => zone.addEventListener(e, (ev) => { ev.preventDefault(); zone.classList.add("over"); }));
    ["dragleave", "drop"].forEach((e) => zone.addEventListener(e, (ev) => { ev.preventDefault(); zone.classList.remove("over"); }));
    zone.addEventListener("drop", (ev) => Array.from(ev.dataTransfer.files).forEach(send));
  }

  // --- the documents table: live progress ----------------------------------------------------
  const table = document.getElementById("documents");
  function row(d) {
    const tr = document.createElement("tr");
    tr.dataset.id = d.document_id;
    tr.dataset.status = d.status;
    const cells = [
      '<a href="' + root + "/ui/documents/" + d.document_id + '"></a>',
      "", "<progress></progress> <span class=\"pages\"></span>", "", "",
    ];
    tr.innerHTML = cells.map((c) => "<td>" + c + "</td>").join("");
    tr.children[0].firstChild.textContent = d.file_name || d.document_id;
    tr.children[1].textContent = d.status;
    tr.children[1].className = "status status-" + d.status;
    const bar = tr.children[2].firstChild;
    bar.max = d.page_count || 1;
    bar.value = d.pages_done || 0;
    tr.children[2].lastChild.textContent = (d.pages_done == null ? "" : d.pages_done) + (d.page_count ? "/" + d.page_count : "");
    tr.children[3].textContent = d.updated_at.replace("T", " ").slice(0, 19);
    tr.children[4].textContent = d.error_class ? d.error_class + ": " + d.error : "";
    tr.children[4].className = "error";
    return tr;
  }
  async function refresh() {
    if (!table) return;
    const status = new URLSearchParams(location.search).get("status");
    const listing = await api("GET", "/documents?limit=100" + (status ? "&status=" + status : ""));
    const body = table.tBodies[0];
    body.replaceChildren(...listing.items.map(row));
    if (listing.items.some((d) => d.status === "running")) setTimeout(refresh, 1500);
  }
  if (table && table.querySelector("tr[data-status=running]")) setTimeout(refresh, 1500);

  // --- a document's page: live progress, cancel / redrive ----------------------------------------
  const doc = document.getElementById("document");
  if (doc) {
    if (doc.dataset.status === "running") {
      const poll = async () => {
        const d = await api("GET", "/documents/" + doc.dataset.id);
        if (d.status !== "running") { location.reload(); return; }
        const p = d.progress || {};
        const bar = document.querySelector("#progress progress");
        if (bar) { bar.max = p.page_count || 1; bar.value = p.pages_done || 0; }
        const text = document.getElementById("progress-text");
        if (text) {
          text.textContent = (p.pages_done || 0) + "/" + (p.page_count || "?") + " pages" +
            (p.current_state ? " · " + p.current_state : "") +
            (p.estimated_seconds_remaining != null ? " · about " + Math.round(p.estimated_seconds_remaining) + " s left" : "");
        }
        setTimeout(poll, 1500);
      };
      setTimeout(poll, 1500);
    }
    document.querySelectorAll("button[data-action]").forEach((button) => button.addEventListener("click", async () => {
      const out = document.getElementById("action-result");
      button.disabled = true;
      try {
        const outcome = await api("POST", button.dataset.href);
        out.textContent = outcome.note;
        setTimeout(() => location.reload(), 800);
      } catch (error) {
        out.textContent = error.message;
        button.disabled = false;
      }
    }));
  }
})();
