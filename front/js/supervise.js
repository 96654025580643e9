// The supervise page: live state, pool sizes and new sessions of one campaign (docs/protocol.md,
// "Supervisor"). The browser sends the page's Basic credentials on the socket after the server's
// 401 challenge, so nothing here deals with authentication.

import { heartbeatMs, httpUrl, openFrames } from "./frames.js";

const root = document.getElementById("supervise");
const wsPath = root.dataset.wsPath;
const $ = (id) => document.getElementById(id);
const STATES = ["Running", "Busy", "Paused", "Completed", "Unavailable"];
const MAX_DELAY = 30000;
// After this long without a frame the page asks mastok for one (`Ping`) and, with none soon,
// reconnects (MASTOK_PAGE_HEARTBEAT, 15 s by default; 0: never).
const HEARTBEAT_MS = heartbeatMs(root.dataset.heartbeat);

let socket = null;
let attempts = 0;
let stopped = false;
let currentState = $("state").textContent.trim();

// ---------------------------------------------------------------- helpers

function localTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso ?? "") : date.toLocaleString();
}

function setStatus(status, text = status) {
  const line = $("live-status");
  line.dataset.status = status;
  line.textContent = text;
  updateButtons();
}

function showError(message) {
  const text = typeof message === "string" ? message : JSON.stringify(message);
  console.warn("mastok:", text);
  $("live-error-text").textContent = `${new Date().toLocaleTimeString()}: ${text}`;
  $("live-error").hidden = false;
}

$("live-error-close").addEventListener("click", () => {
  $("live-error").hidden = true;
});

// ---------------------------------------------------------------- rendering

function renderState(state) {
  if (typeof state !== "string") return;
  currentState = state;
  const badge = $("state");
  badge.textContent = state;
  badge.className = `state state-${state.toLowerCase()}`;
  updateButtons();
}

/** The button of the current state is disabled and pressed; all are while the socket is down. */
function updateButtons() {
  const live = socket !== null && socket.readyState === WebSocket.OPEN;
  const runningLike = ["Running", "Busy", "Unavailable"].includes(currentState);
  for (const button of document.querySelectorAll(".state-buttons button[data-state]")) {
    const state = button.dataset.state;
    const current = state === currentState || (state === "Running" && runningLike);
    button.setAttribute("aria-pressed", current ? "true" : "false");
    button.disabled = current || !live;
  }
}

function renderSize(id, payload) {
  const cell = $(id);
  const match = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(String(payload));
  cell.textContent = match ? `${match[1]} / ${match[2]}` : String(payload ?? "—");
}

function renderSession(session) {
  if (!session || typeof session !== "object") return;
  const body = $("sessions").tBodies[0];
  const code = String(session.code ?? "");
  if (code && [...body.rows].some((row) => row.dataset.code === code)) return; // already shown
  body.querySelector("tr.empty")?.remove();

  const row = document.createElement("tr");
  row.dataset.code = code;
  row.className = "new";
  const cell = (text, className = "") => {
    const td = document.createElement("td");
    if (className) td.className = className;
    if (text instanceof Node) td.append(text);
    else td.textContent = text;
    row.append(td);
  };
  cell(code);
  cell(session.mastok_id ? String(session.mastok_id) : "—");
  cell(String(session.size ?? ""));
  const codes = Array.isArray(session.participant_codes) ? session.participant_codes : [];
  cell(codes.map(String).join(" "), "codes");
  const time = document.createElement("time");
  time.dateTime = String(session.created_at ?? "");
  time.textContent = localTime(session.created_at);
  cell(time);
  const adminUrl = httpUrl(session.admin_url);
  if (adminUrl) {
    const link = document.createElement("a");
    link.href = adminUrl;
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = "oTree admin";
    cell(link);
  } else {
    cell("");
  }
  body.prepend(row);

  const started = $("started");
  const count = Number.parseInt(started.dataset.started, 10);
  if (!Number.isNaN(count)) showStarted(count + 1, started.dataset.max);
}

function showStarted(count, max) {
  const started = $("started");
  started.dataset.started = String(count);
  started.dataset.max = String(max);
  started.textContent = `${count}/${max}`;
}

/** The sessions of a read of the JSON twin (…/live) that the page has not shown, and its
 * count: the socket tells only the sessions started while it is open. */
function catchUp(live) {
  if (!live || typeof live !== "object") return;
  const sessions = Array.isArray(live.sessions) ? live.sessions : [];
  for (const session of [...sessions].sort((a, b) => a.number - b.number)) renderSession(session);
  const campaign = live.campaign ?? {};
  const shown = Number.parseInt($("started").dataset.started, 10) || 0;
  const count = Number.isInteger(campaign.started_sessions) ? campaign.started_sessions : 0;
  const max = campaign.max_sessions ?? $("started").dataset.max;
  showStarted(Math.max(shown, count), max); // a read sent before a SessionStart ends after it
}

document.addEventListener("mastok:live", (event) => catchUp(event.detail));

// ---------------------------------------------------------------- the socket

function handle(kind, payload) {
  // The figures (supervise_figures.js) read the JSON twins again when the room changes.
  document.dispatchEvent(new CustomEvent("mastok:room-changed", { detail: { kind } }));
  switch (kind) {
    case "State":
      renderState(payload);
      break;
    case "JoiningSize":
      renderSize("joining-size", payload);
      break;
    case "PendingSize":
      renderSize("pending-size", payload);
      break;
    case "SessionStart":
      renderSession(payload);
      break;
    case "Error":
      showError(payload);
      break;
    default:
      console.warn("mastok: unknown frame", kind);
  }
}

function send(kind, payload) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    showError("Not connected: the change was not sent.");
    return false;
  }
  socket.send(JSON.stringify({ kind, payload }));
  return true;
}

function connect() {
  const ws = openFrames(wsPath, {
    onOpen: (ws) => {
      if (ws !== socket) return;
      attempts = 0;
      setStatus("live");
    },
    onFrame: (ws, kind, payload) => {
      if (ws === socket) handle(kind, payload);
    },
    onUnreadable: (ws) => {
      if (ws === socket) showError("Unreadable frame from the server.");
    },
    onClose: (ws, event) => {
      if (ws !== socket) return;
      socket = null;
      if (stopped) return;
      if (event.code === 4404) {
        stopped = true;
        setStatus("closed", "closed: no such campaign");
        return;
      }
      reconnect();
    },
    heartbeatMs: HEARTBEAT_MS,
  });
  if (ws === null) {
    reconnect();
    return;
  }
  socket = ws;
}

function reconnect() {
  const delay = Math.min(1000 * 2 ** attempts, MAX_DELAY);
  attempts += 1;
  setStatus("reconnecting");
  setTimeout(connect, delay);
}

// ---------------------------------------------------------------- controls

for (const button of document.querySelectorAll(".state-buttons button[data-state]")) {
  button.addEventListener("click", () => {
    const state = button.dataset.state;
    if (!STATES.includes(state) || button.disabled) return;
    if (
      state === "Completed" &&
      !window.confirm(
        "Complete this campaign? Everyone waiting is sent away and nobody can join any more.",
      )
    ) {
      return;
    }
    send("State", state); // the server answers every supervisor with the new State
  });
}

window.addEventListener("pagehide", () => {
  stopped = true;
});

for (const time of document.querySelectorAll("#sessions time[datetime]")) {
  time.textContent = localTime(time.dateTime);
}
setStatus("connecting");
connect();
