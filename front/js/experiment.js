// The experiment page: its runs' states, progress and locks, kept up to date by polling the
// page's JSON twin (GET /api/monitoring/experiments/{xp}) every few seconds and updating the
// table in place. Plain polling: one request every 2 s per open page, no connection to keep,
// nothing to resume after a network failure or a mastok restart. The browser sends the page's
// Basic credentials with the request by itself (same origin).

const root = document.getElementById("experiment");
const apiUrl = root.dataset.api;
const csrf = root.dataset.csrf;
const runsPath = root.dataset.runsPath;
const pollMs = Math.max(Number.parseFloat(root.dataset.poll) || 2, 0.5) * 1000;
const $ = (id) => document.getElementById(id);

let timer = null;
let failures = 0;
let inFlight = false;

// ---------------------------------------------------------------- helpers

function localTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso ?? "") : date.toLocaleString();
}

function timeOrDash(iso) {
  if (!iso) return document.createTextNode("—");
  const time = document.createElement("time");
  time.dateTime = iso;
  time.title = iso;
  time.textContent = localTime(iso);
  return time;
}

function fill(cell, ...nodes) {
  cell.replaceChildren(...nodes);
}

function badge(className, text) {
  const span = document.createElement("span");
  span.className = className;
  span.textContent = text;
  return span;
}

function setStatus(status, text) {
  const line = $("live-status");
  line.dataset.status = status;
  line.textContent = text;
}

// ---------------------------------------------------------------- rendering

function unlockForm(runId) {
  const form = document.createElement("form");
  form.className = "unlock";
  form.method = "post";
  form.action = `${runsPath}${encodeURIComponent(runId)}/unlock`;
  const token = document.createElement("input");
  token.type = "hidden";
  token.name = "csrf_token";
  token.value = csrf;
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = "Unlock";
  form.append(token, button);
  return form;
}

function newRow(runId) {
  const row = document.createElement("tr");
  row.dataset.run = runId;
  for (const name of ["run", "status", "progress", "current", "lock", "since", "heartbeat", "actions"]) {
    const cell = document.createElement("td");
    cell.className = name;
    row.append(cell);
  }
  const link = document.createElement("a");
  link.href = `${runsPath}${encodeURIComponent(runId)}`;
  link.textContent = runId;
  row.cells[0].append(link);
  return row;
}

function renderRun(run) {
  const body = $("runs").tBodies[0];
  let row = [...body.rows].find((r) => r.dataset.run === run.id);
  if (!row) {
    body.querySelector("tr.empty")?.remove();
    row = newRow(run.id);
    body.append(row);
  }
  const before = `${row.dataset.status}|${row.dataset.lock}|${row.querySelector(".progress span")?.textContent}`;
  const cell = (name) => row.querySelector(`td.${name}`);

  fill(cell("status"), badge(`run-status run-status-${run.status}`, run.status));
  const bar = document.createElement("progress");
  bar.value = run.trials_done;
  bar.max = run.trials_total || 1;
  const count = document.createElement("span");
  count.textContent = `${run.trials_done}/${run.trials_total}`;
  fill(cell("progress"), bar, " ", count);
  const current = run.current ? `block ${run.current.block}, trial ${run.current.trial}` : "—";
  fill(cell("current"), current);
  fill(cell("lock"), badge(`lock-state lock-${run.lock}`, run.lock));
  fill(cell("since"), timeOrDash(run.locked_since));
  fill(cell("heartbeat"), timeOrDash(run.last_heartbeat));
  const actions = cell("actions");
  const hasForm = actions.querySelector("form") !== null;
  if (run.lock === "unlocked") actions.replaceChildren();
  else if (!hasForm) actions.replaceChildren(unlockForm(run.id));

  row.dataset.status = run.status;
  row.dataset.lock = run.lock;
  const after = `${run.status}|${run.lock}|${count.textContent}`;
  if (before !== after) {
    row.classList.remove("changed");
    void row.offsetWidth; // restart the highlight
    row.classList.add("changed");
  }
}

function render(data) {
  const xp = data.experiment;
  $("runs-completed").textContent = `${xp.runs_completed}/${xp.runs}`;
  $("runs-started").textContent = `${xp.runs_started}/${xp.runs}`;
  $("trials-done").textContent = `${xp.trials_done}/${xp.trials}`;
  for (const run of data.runs) renderRun(run);
}

// ---------------------------------------------------------------- polling

async function poll() {
  timer = null;
  if (inFlight) return;
  inFlight = true;
  let again = true;
  try {
    const response = await fetch(apiUrl, {
      headers: { Accept: "application/json" },
      cache: "no-store",
      credentials: "same-origin",
    });
    if (response.status === 404) {
      setStatus("stale", "this experiment is gone");
      again = false;
    } else if (!response.ok) {
      throw new Error(`HTTP ${response.status}`);
    } else {
      render(await response.json());
      failures = 0;
      setStatus("live", `live · ${new Date().toLocaleTimeString()}`);
    }
  } catch (error) {
    failures += 1;
    console.warn("mastok: cannot update the runs", error);
    setStatus("stale", `not updated (${failures} failed attempt${failures > 1 ? "s" : ""})`);
  } finally {
    inFlight = false;
  }
  if (again) schedule();
}

function schedule() {
  if (timer === null && document.visibilityState !== "hidden") {
    // Back off gently while mastok does not answer (at most 30 s).
    const delay = Math.min(pollMs * 2 ** Math.min(failures, 4), 30000);
    timer = setTimeout(poll, delay);
  }
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  } else if (timer === null) {
    poll();
  }
});

for (const time of document.querySelectorAll("#runs time[datetime]")) {
  time.title = time.dateTime;
  time.textContent = localTime(time.dateTime);
}
schedule();
