// Heddle's UI: progressive enhancement only. Every page works without this script;
// with it, lists and run pages refresh themselves (a run's page from its event stream).
"use strict";

async function swap(element, url) {
  const response = await fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } });
  if (!response.ok) return;
  const opened = [...element.querySelectorAll("details[open]")].map((d) => d.id || d.dataset.key).filter(Boolean);
  const streams = new Map([...element.querySelectorAll("pre.stream")].map((p) => [p.dataset.node, p.textContent]));
  element.innerHTML = await response.text();
  for (const id of opened) { const d = document.getElementById(id); if (d) d.open = true; }
  for (const pre of element.querySelectorAll("pre.stream")) pre.textContent = streams.get(pre.dataset.node) || "";
}

function every(seconds, element, url) {
  setInterval(() => { if (!document.hidden) swap(element, url); }, seconds * 1000);
}

function followRun(element) {
  const live = element.dataset.live;
  const stream = element.dataset.stream;
  let pending = null;
  const refresh = () => {
    if (pending) return;
    pending = setTimeout(async () => { pending = null; await swap(element, live); }, 150);
  };
  if (!stream) {
    if (element.querySelector("[data-pending]")) setTimeout(refresh, 1000);
    return;
  }
  const source = new EventSource(stream);  // resumes by itself after a reconnect (Last-Event-ID)
  source.addEventListener("event", refresh);
  source.addEventListener("token", (message) => {
    const delta = JSON.parse(message.data);
    const pre = element.querySelector(`pre.stream[data-node="${CSS.escape(delta.node_id)}"]`)
      || element.querySelector('pre.stream[data-node=""]');  // a thread's reply being written
    if (pre) pre.textContent += delta.text;
  });
  source.addEventListener("end", () => { source.close(); swap(element, live); });
}

document.addEventListener("DOMContentLoaded", () => {
  const run = document.getElementById("run");
  if (run) followRun(run);
  const rows = document.querySelector("[data-refresh]");
  if (rows) every(3, rows, rows.dataset.refresh);
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => { if (!confirm(form.dataset.confirm)) event.preventDefault(); });
  }
});
