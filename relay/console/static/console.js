// The console's only script (CSP: script-src 'self'): select-all boxes, confirmations, and the
// per-minute chart refreshed every 15 s from /console/chart (server-rendered, escaped SVG).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const box of document.querySelectorAll("input.select-all")) {
    box.addEventListener("change", () => {
      for (const item of box.closest("form").querySelectorAll('input[name="ids"]')) item.checked = box.checked;
    });
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  const chart = document.getElementById("chart");
  if (chart) {
    setInterval(async () => {
      if (document.hidden) return;
      try {
        const response = await fetch(chart.dataset.src, { credentials: "same-origin" });
        if (response.ok) chart.innerHTML = await response.text();
      } catch (_) { /* offline for a moment: keep the last chart */ }
    }, 15000);
  }
});
