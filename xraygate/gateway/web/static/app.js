// xraygate pages: feedback and admin actions post JSON with the session's CSRF token.
"use strict";
function csrf() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}
async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf()},
    body: JSON.stringify(body || {}),
  });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  return {ok: response.ok, status: response.status, data: data};
}
document.addEventListener("DOMContentLoaded", () => {
  // no inline handlers (the Content-Security-Policy forbids them): filters submit on change
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });
  const form = document.getElementById("feedback");
  if (form) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const finding = form.querySelector('input[name="finding"]:checked');
      const out = document.getElementById("feedback-result");
      const url = "/api/studies/" + encodeURIComponent(form.dataset.study) + "/feedback";
      const res = await postJson(url, {
        finding: finding ? finding.value : "",
        by: form.dataset.by || "",
        comment: form.querySelector("#comment").value,
      });
      if (res.ok) {
        out.textContent = "Feedback recorded (" + res.data.agreement + " with the model).";
        const li = document.createElement("li");
        li.textContent = res.data.finding + " (" + res.data.agreement + ") by " + res.data.by;
        document.getElementById("feedback-list").prepend(li);
      } else {
        out.textContent = "Not recorded: HTTP " + res.status;
      }
    });
  }
  document.querySelectorAll("button[data-post]").forEach((button) => {
    button.addEventListener("click", async () => {
      const res = await postJson(button.dataset.post, {});
      const out = document.getElementById("admin-result");
      if (out) { out.textContent = res.ok ? "Done." : "Failed: HTTP " + res.status; }
      if (res.ok) { window.location.reload(); }
    });
  });
});
// Worklist: a badge counts high-risk results that arrived since the page was loaded (polled
// every 30 s from /api/worklist/new-high-risk); clicking it reloads the list.
document.addEventListener("DOMContentLoaded", () => {
  const badge = document.getElementById("new-high");
  if (!badge) { return; }
  const since = badge.dataset.since;
  async function poll() {
    try {
      const response = await fetch("/api/worklist/new-high-risk?since=" + encodeURIComponent(since),
        {credentials: "same-origin"});
      if (!response.ok) { return; }
      const data = await response.json();
      if (data.count > 0) {
        badge.textContent = data.count + " new high-risk";
        badge.href = window.location.pathname + window.location.search;
        badge.hidden = false;
      }
    } catch (e) { /* offline: try again at the next tick */ }
  }
  window.xraygatePollNewHigh = poll;  // tests call it instead of waiting 30 s
  poll();
  window.setInterval(poll, 30000);
});
