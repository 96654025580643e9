// The supervise page's figures: funnel, outcomes, waits, charts, who is waiting, sessions'
// progress. They come from the JSON twins (GET …/stats and …/live), read again every
// REFRESH_MS while the tab is visible and soon after the room changes (any supervisor frame,
// told by supervise.js), never more than once per MIN_GAP_MS. Times waited count up in the page
// between reads.

import { arrivalsChart, waitsChart } from "./supervise_charts.js";

const root = document.getElementById("figures");
const $ = (id) => document.getElementById(id);
const REFRESH_MS = 5000;
const MIN_GAP_MS = 1000;
const OUTCOMES = [
  "timeout", "left", "full", "not_ready", "rejected", "away", "paused", "completed",
  "missing_id", "landing_failed", "redirected",
];

const arrivals = arrivalsChart($("chart-arrivals"));
const waits = waitsChart($("chart-waits"));
let timer = null;
let last = 0;
let reading = false;
let waitingSince = []; // [row, seconds waited when read, performance.now() then]

function seconds(value) {
  if (value === null || value === undefined) return "—";
  const s = Math.round(Number(value));
  if (s < 120) return `${s} s`;
  const m = Math.floor(s / 60);
  return s < 7200 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function share(n, of) {
  return of > 0 ? `${n} (${Math.round((100 * n) / of)}%)` : String(n);
}

function td(text, className = "") {
  const cell = document.createElement("td");
  cell.textContent = text;
  if (className) cell.className = className;
  return cell;
}

function emptyRow(text, columns) {
  const row = document.createElement("tr");
  row.className = "empty";
  row.append(td(text));
  row.firstChild.colSpan = columns;
  return row;
}

function renderFunnel(stats) {
  const all = stats.funnel;
  const recent = stats.last_hour.funnel;
  for (const row of $("funnel").tBodies[0].rows) {
    const key = row.dataset.key;
    row.querySelector(".all").textContent = share(all[key], all.arrived);
    row.querySelector(".recent").textContent = share(recent[key], recent.arrived);
    const width = all.arrived > 0 ? (100 * all[key]) / all.arrived : 0;
    row.querySelector(".fill").style.width = `${width}%`;
  }
  const body = $("outcomes").tBodies[0];
  body.replaceChildren();
  const rows = [...OUTCOMES.map((o) => [o, stats.outcomes[o] ?? 0, stats.last_hour.outcomes[o] ?? 0]),
    ["still in the room", all.in_room ?? 0, recent.in_room ?? 0]];
  for (const [name, n, m] of rows) {
    const row = document.createElement("tr");
    row.dataset.outcome = name;
    row.className = n === 0 ? "zero" : "";
    const th = document.createElement("th");
    th.textContent = name.replace("_", " ");
    row.append(th, td(share(n, all.arrived), "num all"), td(share(m, recent.arrived), "num recent"));
    body.append(row);
  }
}

function renderWaits(stats) {
  $("wait-median").textContent = seconds(stats.wait_seconds.median);
  $("wait-p95").textContent = seconds(stats.wait_seconds.p95);
  $("wait-max").textContent = seconds(stats.wait_seconds.max);
  $("fill-median").textContent = seconds(stats.fill_seconds.median);
  $("fill-last").textContent = stats.fill_seconds.last.length
    ? stats.fill_seconds.last.map(seconds).join(", ")
    : "—";
  arrivals.set(stats.arrivals_per_minute);
  waits.set(stats.wait_histogram);
}

function renderWaiting(stats, identities) {
  const body = $("waiting-people").tBodies[0];
  body.replaceChildren();
  waitingSince = [];
  document.querySelector("#waiting-people th.identity").hidden = !identities;
  if (stats.waiting.length === 0) {
    body.append(emptyRow("Nobody.", 5));
    return;
  }
  const now = performance.now();
  for (const person of stats.waiting) {
    const row = document.createElement("tr");
    const waited = td(seconds(person.waited_seconds), "num waited");
    row.append(td(person.group ?? "—"), td(person.step), waited,
      td(person.present ? "connected" : "away", person.present ? "" : "away"));
    if (identities) row.append(td(person.identity ?? "—"));
    body.append(row);
    waitingSince.push([waited, person.waited_seconds, now]);
  }
}

function renderProgress(live) {
  const body = $("progress").tBodies[0];
  body.replaceChildren();
  const sessions = [...(live.sessions ?? [])].sort((a, b) => b.number - a.number);
  if (sessions.length === 0) {
    body.append(emptyRow("No session yet.", 4));
    return;
  }
  for (const session of sessions) {
    const row = document.createElement("tr");
    row.dataset.code = session.code;
    row.dataset.live = String(session.live);
    const cell = td("");
    for (const p of session.participants) {
      const chip = document.createElement("span");
      chip.className = "progress-chip";
      chip.dataset.code = p.code;
      if (p.page_index === null) {
        chip.textContent = `${p.code}: not read yet`;
      } else if (p.finished) {
        chip.classList.add("finished");
        chip.textContent = `${p.code}: finished`;
      } else {
        chip.textContent = `${p.code}: page ${p.page_index}/${p.page_count}, ${seconds(p.idle_seconds)} on it`;
        if (p.idle) {
          chip.classList.add("idle");
          chip.title = "idle: on the same page past the campaign's idle_flag_seconds";
        }
      }
      cell.append(chip);
    }
    row.append(td(String(session.number)), td(session.code), td(session.live ? "live" : "ended"), cell);
    body.append(row);
  }
}

async function getJson(url) {
  const answer = await fetch(url, { headers: { Accept: "application/json" } });
  if (!answer.ok) throw new Error(`${url}: ${answer.status}`);
  return answer.json();
}

async function refresh() {
  if (reading) return;
  reading = true;
  last = performance.now();
  try {
    const identities = $("show-identities").checked;
    const [stats, live] = await Promise.all([
      getJson(root.dataset.statsUrl + (identities ? "?identities=1" : "")),
      getJson(root.dataset.liveUrl),
    ]);
    renderFunnel(stats);
    renderWaits(stats);
    renderWaiting(stats, identities);
    renderProgress(live);
    // The sessions table and count (supervise.js) catch up with the sessions started while
    // the socket was down or not yet open: it tells only those started while it is open.
    document.dispatchEvent(new CustomEvent("mastok:live", { detail: live }));
    $("figures-at").textContent = `as of ${new Date(stats.at).toLocaleTimeString()}`;
    root.dataset.at = stats.at;
  } catch (error) {
    console.warn("mastok: figures", error);
  } finally {
    reading = false;
    schedule(REFRESH_MS);
  }
}

function schedule(delay) {
  clearTimeout(timer);
  if (document.visibilityState !== "visible") return;
  timer = setTimeout(refresh, Math.max(delay, 0));
}

document.addEventListener("mastok:room-changed", () => {
  schedule(MIN_GAP_MS - (performance.now() - last));
});
document.addEventListener("visibilitychange", () => schedule(0));
$("show-identities").addEventListener("change", () => schedule(0));
setInterval(() => {
  const now = performance.now();
  for (const [cell, waited, then] of waitingSince) cell.textContent = seconds(waited + (now - then) / 1000);
}, 1000);
refresh();
