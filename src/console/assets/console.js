// The console's only script: confirmation of destructive actions, and live progress of rebuilds.
// Everything else is plain HTML and forms, so the console works with this script blocked too.
"use strict";

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) event.preventDefault();
});

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const FINISHED = new Set(["done", "failed"]);

function duration(ms) {
  if (ms < 1000) return `${ms} ms`;
  const s = Math.round(ms / 1000);
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${Math.round(s / 3600)} h`;
}

/** Redraws a rebuild cell from the API's rebuild object (text only: no markup from the answer). */
function draw(cell, rebuild) {
  cell.dataset.state = rebuild.state;
  const state = cell.querySelector(".rebuild-state");
  state.textContent = rebuild.state;
  state.className = `rebuild-state tag${rebuild.state === "failed" ? " bad" : rebuild.state === "done" ? " good" : ""}`;
  const bar = cell.querySelector("progress");
  if (bar) bar.value = rebuild.progress;
  const counts = cell.querySelector(".rebuild-counts");
  if (counts) {
    const eta = !FINISHED.has(rebuild.state) && rebuild.eta_ms !== null ? ` · about ${duration(rebuild.eta_ms)} left` : "";
    counts.textContent = `${rebuild.processed_events}/${rebuild.total_events} events${eta}`;
  }
  if (rebuild.error) {
    let error = cell.querySelector(".rebuild-error");
    if (!error) {
      error = document.createElement("span");
      error.className = "rebuild-error bad";
      cell.append(error);
    }
    error.textContent = rebuild.error;
  }
}

/** Polls one running rebuild until it finishes (at most an hour of polls), then re-enables its button. */
async function follow(cell) {
  for (let i = 0; i < 7200; i++) {
    await sleep(500);
    let response;
    try {
      response = await fetch(cell.dataset.poll, { headers: { accept: "application/json" }, credentials: "same-origin" });
    } catch {
      continue;
    }
    if (response.status === 401) {
      window.location.assign("/console/login");
      return;
    }
    if (!response.ok) continue;
    const rebuild = await response.json();
    draw(cell, rebuild);
    if (FINISHED.has(rebuild.state)) {
      const row = cell.closest("tr");
      const button = row && row.querySelector(".rebuild-button");
      if (button) button.disabled = false;
      return;
    }
  }
}

document.querySelectorAll("[data-poll]").forEach((cell) => void follow(cell));
