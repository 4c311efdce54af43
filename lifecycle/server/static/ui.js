// lifecycle's pages: times in the viewer's local time, and live updates from the change
// feed (Server-Sent Events): on a change, the page's <main> is fetched again and swapped,
// at most once a second however many changes come.
"use strict";

function localTimes(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const at = new Date(t.dateTime);
    if (!isNaN(at)) {
      t.textContent = t.closest(".tick") ? at.toLocaleTimeString() : at.toLocaleString();
      t.title = t.dateTime;
    }
  }
}

function live(main) {
  if (main.dataset.live === undefined || !window.EventSource) return;
  const query = new URLSearchParams(main.dataset.live);
  query.set("after", main.dataset.cursor || "0");
  const status = document.querySelector(".live-status");
  const source = new EventSource("/changes/stream?" + query);
  let pending = null;
  let fetching = false;
  let last = 0;
  async function refresh() {
    pending = null;
    if (fetching) { pending = setTimeout(refresh, 100); return; }
    fetching = true;
    last = Date.now();
    try {
      const answer = await fetch(location.href, { headers: { Accept: "text/html" } });
      if (!answer.ok) return;
      const next = new DOMParser().parseFromString(await answer.text(), "text/html").querySelector("main");
      if (!next) return;
      const focused = document.activeElement && document.activeElement.getAttribute("href");
      main.innerHTML = next.innerHTML;
      main.dataset.cursor = next.dataset.cursor || main.dataset.cursor;
      localTimes(main);
      if (focused) {
        const again = main.querySelector(`[href="${CSS.escape(focused)}"]`);
        if (again) again.focus();
      }
      main.dispatchEvent(new CustomEvent("lifecycle:updated"));
    } finally {
      fetching = false;
    }
  }
  source.addEventListener("change", () => {
    if (pending === null) pending = setTimeout(refresh, Math.max(150, last + 1000 - Date.now()));
  });
  source.addEventListener("gone", () => source.close());
  source.onopen = () => { if (status) status.textContent = "Updates live as webhooks arrive."; };
  source.onerror = () => { if (status) status.textContent = "Live updates paused; reconnecting…"; };
}

document.addEventListener("DOMContentLoaded", () => {
  const main = document.querySelector("main");
  localTimes(document);
  if (main) live(main);
});
