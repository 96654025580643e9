// The participant's join page: walks a person through the live protocol of docs/protocol.md.
// Plain ES module, served as-is. Every step is a <section id="step-…">; the current one is also
// on document.body.dataset.step (and the socket's state on document.body.dataset.connection:
// connecting, open, reconnecting or closed).

import { heartbeatMs, httpUrl, openFrames } from "./frames.js";

const root = document.getElementById("join");
const slug = root.dataset.slug || "";
const wsPath = root.dataset.wsPath;
const TOKEN_KEY = `mastok:resume:${slug}`;
const BROWSER_ID_KEY = "mastok.browser-id";
// A dropped connection is tried again after 1 s, then twice as long each time up to 10 s, each
// wait drawn at random between half of that and all of it (pages dropped together, by a restart
// say, come back spread out), for as long as mastok keeps the person's place: its resume grace,
// rendered into the page (MASTOK_RESUME_GRACE, 30 s by default).
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 10000;
const RESUME_GRACE_MS = graceMs(root.dataset.resumeGrace);
// After this long without a frame the page asks mastok for one (`Ping`) and, with none soon,
// reconnects (MASTOK_PAGE_HEARTBEAT, 15 s by default; 0: never).
const HEARTBEAT_MS = heartbeatMs(root.dataset.heartbeat);

function graceMs(value) {
  const grace = Number(value);
  return Number.isFinite(grace) && grace > 0 ? grace * 1000 : 30000;
}

const $ = (id) => document.getElementById(id);
const STEPS = ["connecting", "consent", "grouping", "waiting", "pending", "ready", "starting", "ended", "exit"];
const EXIT_REDIRECT_SECONDS = 5;

// ---------------------------------------------------------------- small helpers

/** 128 random bits as 32 hex digits. */
function randomHex() {
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

let memoryBrowserId = null; // when the browser keeps no storage: the same id for this page's life

/**
 * This browser's id: random, kept in localStorage, sent as Land's payload. It is a secret of
 * this browser (it brings the person back to their own live session), never derived from
 * anything another browser could know.
 */
function browserId() {
  try {
    const stored = window.localStorage.getItem(BROWSER_ID_KEY);
    if (stored && /^[0-9a-f]{32}$/.test(stored)) return stored;
  } catch {
    /* storage disabled: the id lives as long as the page */
  }
  if (memoryBrowserId === null) memoryBrowserId = randomHex();
  try {
    window.localStorage.setItem(BROWSER_ID_KEY, memoryBrowserId);
  } catch {
    /* storage disabled */
  }
  return memoryBrowserId;
}

/** The socket's path: the campaign's slug, then the query string this page was opened with
 * (a platform's PROLIFIC_PID and the like; the server keeps those the campaign declares). */
function socketPath() {
  const params = new URLSearchParams(window.location.search);
  params.delete("slug");
  const extra = params.toString();
  return extra === "" ? wsPath : `${wsPath}&${extra}`;
}

function storedToken() {
  try {
    return window.sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null; // storage disabled: the page still works, it just cannot resume
  }
}

function storeToken(token) {
  try {
    window.sessionStorage.setItem(TOKEN_KEY, token);
  } catch {
    /* storage disabled */
  }
}

function dropToken() {
  try {
    window.sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* storage disabled */
  }
}

/** Puts server HTML (already sanitised by mastok) in `container`, inert until inserted. */
function insertHtml(container, html) {
  const template = document.createElement("template");
  template.innerHTML = typeof html === "string" ? html : "";
  // Links open elsewhere so that following one does not lose the participant's place.
  for (const link of template.content.querySelectorAll("a[href]")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
  container.replaceChildren(template.content);
}

// ---------------------------------------------------------------- what the person sees

let currentStep = null;

function showStep(name) {
  if (!STEPS.includes(name)) return;
  const changed = currentStep !== name;
  for (const step of STEPS) {
    const section = $(`step-${step}`);
    if (section) section.hidden = step !== name;
  }
  currentStep = name;
  document.body.dataset.step = name;
  if (name !== "ready") endReadyCheck();
  placeWaitPanel(name);
  if (changed && name !== "connecting") {
    // Screen readers and keyboards follow the new step; no scroll jump on long pages.
    const heading = $(`step-${name}`).querySelector("h1");
    if (heading) heading.focus({ preventScroll: true });
    window.scrollTo({ top: 0 });
  }
}

function setConnection(state, message = "") {
  document.body.dataset.connection = state;
  const banner = $("connection-status");
  banner.textContent = message;
  banner.hidden = message === "";
}

let errorTimer = null;
function showError(message) {
  const text = typeof message === "string" ? message : JSON.stringify(message);
  console.warn("mastok:", text);
  const line = $("error-line");
  line.textContent = text;
  line.hidden = false;
  clearTimeout(errorTimer);
  errorTimer = setTimeout(() => {
    line.hidden = true;
  }, 8000);
}

/** The final screen: `title`, an optional server `html`, an optional plain `reason`. */
function showEnded({ title, html = null, reason = "", retry = false }) {
  $("ended-title").textContent = title;
  if (html !== null) insertHtml($("ended-content"), html);
  const reasonLine = $("ended-reason");
  reasonLine.textContent = reason;
  reasonLine.hidden = reason === "";
  $("retry").parentElement.hidden = !retry;
  showStep("ended");
}

$("retry").addEventListener("click", () => window.location.reload());

// ---------------------------------------------------------------- consent

let agreed = false;
let consentHtml = null;

function renderConsent(html) {
  const container = $("consent-content");
  agreed = false;
  // The same consent again (after a reconnection): keep what the person already ticked.
  if (html !== consentHtml || !container.querySelector("#accept")) {
    consentHtml = html;
    insertHtml(container, html);
    for (const box of container.querySelectorAll('input[type="checkbox"]')) {
      box.disabled = false; // Markdown task lists are often rendered disabled: these must be ticked
      box.checked = false;
      const item = box.parentElement;
      if (!box.closest("label") && item && item.tagName === "LI") {
        // Make the whole line a label: a tap on the text ticks the box.
        const label = document.createElement("label");
        label.className = "check";
        const text = document.createElement("span");
        text.append(...[...item.childNodes].filter((node) => node !== box));
        label.append(box, text);
        item.replaceChildren(label);
        item.classList.add("check-item");
      }
    }
    if (!container.querySelector("button#accept")) {
      // A consent text without [accept]…[/accept]: the person still needs a way forward.
      const button = document.createElement("button");
      button.id = "accept";
      button.type = "button";
      button.textContent = "I agree";
      const p = document.createElement("p");
      p.append(button);
      container.append(p);
    }
  }
  updateAccept();
  showStep("consent");
}

function consentBoxes() {
  return [...$("consent-content").querySelectorAll('input[type="checkbox"]')];
}

/** Go Mastok's `[technical_code]` field: it must be filled in (mastok does not check its value). */
function codeGiven() {
  const code = $("consent-content").querySelector("input#technical_code");
  return !code || code.value.trim() !== "";
}

function updateAccept() {
  const container = $("consent-content");
  const accept = container.querySelector("button#accept");
  if (!accept) return;
  const boxes = consentBoxes();
  const allTicked = boxes.every((box) => box.checked);
  accept.disabled = agreed || !allTicked || !codeGiven();
  // The consent's own [alert] says what to tick, in the researcher's words; else mastok's hint.
  const untickedShown = !agreed && !allTicked && boxes.length > 0;
  const alert = container.querySelector("#alert-container");
  if (alert) alert.hidden = !untickedShown;
  $("consent-hint").hidden = alert !== null || !untickedShown;
  const codeAlert = container.querySelector("#technical-code-alert-container");
  if (codeAlert) codeAlert.hidden = agreed || !allTicked || codeGiven();
}

$("consent-content").addEventListener("change", (event) => {
  if (event.target.matches('input[type="checkbox"]')) updateAccept();
});

$("consent-content").addEventListener("input", (event) => {
  if (event.target.matches("input#technical_code")) updateAccept();
});

$("consent-content").addEventListener("click", (event) => {
  const accept = event.target.closest("button#accept");
  if (!accept || accept.disabled || agreed) return;
  if (!consentBoxes().every((box) => box.checked) || !codeGiven()) return;
  event.preventDefault();
  agreed = true; // once: a second click or a double tap sends nothing
  accept.disabled = true;
  if (!send("Agree")) {
    agreed = false;
    updateAccept();
  }
});

// ---------------------------------------------------------------- grouping

let connected = false;

/**
 * The grouping as Go Mastok sends it: the question line, one `Label:size` line per group, the
 * action line. A label may hold colons: the size follows the last one.
 */
function parseGrouping(text) {
  const lines = String(text ?? "")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line);
  const question = lines.shift() ?? "";
  const action = lines.length > 0 ? lines.pop() : "";
  const groups = lines.map((line) => {
    const colon = line.lastIndexOf(":");
    return (colon > 0 ? line.slice(0, colon) : line).trim();
  });
  return { question, action, groups: groups.filter((group) => group) };
}

function renderGrouping(payload) {
  const data = parseGrouping(payload);
  const groups = data.groups;
  connected = false;
  $("grouping-question").textContent = data.question;
  const action = $("grouping-action");
  action.textContent = data.action || "Continue";
  const choices = $("grouping-groups");
  choices.replaceChildren(
    ...groups.map((group, index) => {
      const label = document.createElement("label");
      label.className = "choice";
      const input = document.createElement("input");
      input.type = "radio";
      input.name = "group";
      input.id = `group-${index}`;
      input.value = group;
      const text = document.createElement("span");
      text.textContent = group; // labels are text, never markup
      label.append(input, text);
      return label;
    }),
  );
  action.disabled = true;
  showStep("grouping");
}

function chosenGroup() {
  const chosen = $("grouping-groups").querySelector('input[name="group"]:checked');
  return chosen ? chosen.value : null;
}

$("grouping-groups").addEventListener("change", () => {
  $("grouping-action").disabled = connected || chosenGroup() === null;
});

$("grouping-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const group = chosenGroup();
  if (connected || group === null) return;
  connected = true;
  $("grouping-action").disabled = true;
  if (!send("Connect", group)) {
    connected = false;
    $("grouping-action").disabled = false;
  }
});

// ---------------------------------------------------------------- waiting, pending, starting

function renderInstructions(html) {
  insertHtml($("instructions"), html);
  showStep("waiting");
}

// The campaign's `show_nb_participants`: JoiningSize always comes (as in Go Mastok); whether
// the number shows is the campaign's choice.
const showCount = $("join").dataset.showCount === "true";

function renderJoiningSize(payload) {
  const match = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(String(payload));
  const line = $("joining-size");
  if (!match || !showCount) return;
  const [, present, size] = match;
  line.textContent = `${present} of ${size} people are here`;
  line.dataset.present = present;
  line.dataset.size = size;
  line.hidden = false;
}

function renderPending(html) {
  insertHtml($("pending-content"), html);
  showStep("pending");
}

function go(url, message) {
  const target = httpUrl(url);
  $("starting-message").textContent = message;
  const link = $("starting-link");
  if (target === null) {
    link.hidden = true;
    showStep("starting");
    showError("The study sent a link this page cannot open.");
    return;
  }
  leaving = true;
  link.href = target;
  link.hidden = false; // in case the browser blocks or delays the navigation
  showStep("starting");
  window.location.assign(target);
}

// ---------------------------------------------------------------- the waiting clock and Leave

const waitPanel = $("wait-panel");
let waitClock = null; // the last Waiting frame: {waited, limit, leaveAfter} in seconds, `at` its arrival
let waitTimer = null;
let leaveAsked = false; // the confirm step is open
let leaveSent = false;

/** Seconds as m:ss (h:mm:ss past an hour). */
function formatDuration(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = String(total % 60).padStart(2, "0");
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, "0")}:${rest}` : `${minutes}:${rest}`;
}

/** A payload's count of seconds: a finite number from 0, else 0. */
function seconds(value) {
  const number = Number(value);
  return Number.isFinite(number) && number >= 0 ? number : 0;
}

function renderWaiting(payload) {
  const data = payload && typeof payload === "object" ? payload : {};
  waitClock = {
    waited: seconds(data.waited),
    limit: seconds(data.limit),
    leaveAfter: seconds(data.leave_after),
    at: performance.now(),
  };
  if (waitTimer === null) waitTimer = setInterval(updateWaitClock, 250);
  updateWaitClock();
  placeWaitPanel(currentStep);
}

function updateWaitClock() {
  if (waitClock === null) return;
  // Whole seconds, so that what was waited and what is left always add up to the limit.
  const waited = Math.floor(waitClock.waited + (performance.now() - waitClock.at) / 1000);
  $("waited").textContent = formatDuration(waited);
  const hasLimit = waitClock.limit > 0;
  $("time-left-item").hidden = !hasLimit;
  if (hasLimit) $("time-left").textContent = formatDuration(waitClock.limit - waited);
  const mayLeave = waited >= waitClock.leaveAfter;
  $("leave-line").hidden = !mayLeave || leaveAsked;
  $("leave-confirm").hidden = !mayLeave || !leaveAsked;
}

/** The clock and the Leave button go with the waiting view the person is in. */
function placeWaitPanel(step) {
  const inPool = step === "waiting" || step === "pending";
  if (inPool && waitClock !== null) {
    const section = $(`step-${step}`);
    if (waitPanel.parentElement !== section) section.append(waitPanel);
    waitPanel.hidden = false;
  } else {
    waitPanel.hidden = true;
  }
  if (!inPool && step !== "ready") {
    // The visit is over (or not yet in the pools): no clock to keep.
    clearInterval(waitTimer);
    waitTimer = null;
    if (step !== "connecting") waitClock = null;
  }
}

function resetLeave() {
  leaveSent = false;
  $("leave-yes").disabled = false;
  $("leave-no").disabled = false;
}

$("leave").addEventListener("click", () => {
  leaveAsked = true;
  updateWaitClock();
  $("leave-no").focus();
});

$("leave-no").addEventListener("click", () => {
  leaveAsked = false;
  updateWaitClock();
  $("leave").focus();
});

$("leave-yes").addEventListener("click", () => {
  if (leaveSent) return;
  leaveSent = true;
  $("leave-yes").disabled = true;
  $("leave-no").disabled = true;
  if (!send("Leave")) resetLeave();
});

// ---------------------------------------------------------------- the ready check

const pageTitle = document.title;
let readyDeadline = null; // performance.now() when the time to answer runs out
let readyTimer = null;
let readySent = false;
let flashTimer = null;
let audio = null;

function renderReadyCheck(payload) {
  readySent = false;
  readyDeadline = performance.now() + seconds(payload) * 1000;
  $("ready").disabled = false;
  $("ready-line").hidden = false;
  $("ready-deadline").hidden = false;
  $("ready-waiting").hidden = true;
  showStep("ready");
  clearInterval(readyTimer);
  readyTimer = setInterval(updateReadyCountdown, 250);
  updateReadyCountdown();
  callAttention();
  $("ready").focus({ preventScroll: true });
}

function updateReadyCountdown() {
  if (readyDeadline === null) return;
  const left = Math.max(0, Math.ceil((readyDeadline - performance.now()) / 1000));
  $("ready-countdown").textContent = String(left);
  if (left === 0) {
    clearInterval(readyTimer);
    readyTimer = null;
  }
}

/** Out of the ready check (back in the pool, starting, or the visit ended). */
function endReadyCheck() {
  clearInterval(readyTimer);
  readyTimer = null;
  readyDeadline = null;
  stopAttention();
}

/** The person may be in another tab: the title flashes, a short beep, the window asks focus. */
function callAttention() {
  stopAttention();
  let flashing = true;
  document.title = `Ready? ${pageTitle}`;
  flashTimer = setInterval(() => {
    flashing = !flashing;
    document.title = flashing ? `Ready? ${pageTitle}` : `(!) Please confirm · ${pageTitle}`;
  }, 1000);
  beep();
  try {
    window.focus();
  } catch {
    /* not allowed: the title still calls */
  }
}

function stopAttention() {
  if (flashTimer !== null) {
    clearInterval(flashTimer);
    flashTimer = null;
  }
  document.title = pageTitle;
}

/** Browsers let a page play sound once the person has interacted with it (the consent's click). */
function audioContext() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return null;
  if (audio === null) audio = new Context();
  if (audio.state === "suspended") audio.resume().catch(() => {});
  return audio;
}

function unlockAudio() {
  try {
    audioContext();
  } catch {
    /* no sound on this browser */
  }
}
document.addEventListener("pointerdown", unlockAudio, { once: true });
document.addEventListener("keydown", unlockAudio, { once: true });

function beep() {
  try {
    const context = audioContext();
    if (context === null || context.state !== "running") return;
    const now = context.currentTime;
    const tone = context.createOscillator();
    const gain = context.createGain();
    tone.frequency.value = 880;
    gain.gain.setValueAtTime(0.0001, now);
    gain.gain.exponentialRampToValueAtTime(0.2, now + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, now + 0.35);
    tone.connect(gain).connect(context.destination);
    tone.start(now);
    tone.stop(now + 0.4);
  } catch {
    /* no sound: the title and the page still call */
  }
}

$("ready").addEventListener("click", () => {
  if (readySent) return;
  readySent = true;
  $("ready").disabled = true;
  if (!send("Ready")) {
    readySent = false;
    $("ready").disabled = false;
    return;
  }
  $("ready-line").hidden = true;
  $("ready-deadline").hidden = true;
  $("ready-waiting").hidden = false;
  stopAttention();
});

// ---------------------------------------------------------------- the exit

/** What each outcome means to the person, when the campaign gives an exit for it. */
const EXIT_TEXTS = {
  timeout: [
    "No group formed in time",
    "Not enough people arrived within the waiting time. Thank you for waiting.",
  ],
  full: ["The study is full", "There is no place left in the study right now."],
  paused: ["The study is paused", "The study is not taking anyone right now."],
  completed: ["The study is over", "The study has all the participants it needs."],
  rejected: ["You cannot join again", "You have already taken part in this study."],
  left: ["You left the waiting room", "Thank you for your time."],
  not_ready: [
    "You did not confirm in time",
    "Your group could not wait for your answer and went on without you.",
  ],
  missing_id: [
    "We could not tell who you are",
    "The link you followed lacks your participant id. Please open the study again from the site that sent you.",
  ],
  landing_failed: ["You cannot join", "This browser could not be admitted to the study."],
  away: ["You lost your place", "You were away from the waiting room for too long."],
  redirected: ["Back to your study", "Your study is still under way."],
  started: ["Thank you", "You have joined the study."],
};
const DEFAULT_EXIT = ["Thank you", "Your visit has ended."];

let exited = false; // an Exit came: what follows (Disconnect, a close) leaves its view as it is
let campaignMessage = null; // the Paused or Completed HTML, shown again with their exit
let exitTimer = null;

function renderExit(payload) {
  const data = payload && typeof payload === "object" ? payload : {};
  const outcome = typeof data.outcome === "string" ? data.outcome : "";
  const code = typeof data.code === "string" && data.code !== "" ? data.code : null;
  const url = httpUrl(data.url);
  exited = true;
  finished = true; // the visit is over: never reconnect
  clearTimeout(reconnectTimer);
  const [title, message] = Object.hasOwn(EXIT_TEXTS, outcome) ? EXIT_TEXTS[outcome] : DEFAULT_EXIT;
  $("exit-title").textContent = title;
  $("exit-message").textContent = message;
  $("step-exit").dataset.outcome = outcome;
  const withMessage = (outcome === "paused" || outcome === "completed") && campaignMessage !== null;
  if (withMessage) insertHtml($("exit-content"), campaignMessage);
  else $("exit-content").replaceChildren();
  $("exit-code").textContent = code ?? "";
  $("copy-status").textContent = "";
  $("exit-code-box").hidden = code === null;
  $("exit-link-box").hidden = url === null;
  showStep("exit");
  if (url !== null) redirectSoon(url);
}

function redirectSoon(url) {
  const link = $("exit-link");
  link.href = url;
  const at = performance.now() + EXIT_REDIRECT_SECONDS * 1000;
  const tick = () => {
    const left = Math.max(0, Math.ceil((at - performance.now()) / 1000));
    $("exit-countdown").textContent = String(left);
    if (left === 0) {
      clearInterval(exitTimer);
      exitTimer = null;
      leaving = true;
      window.location.assign(url);
    }
  };
  clearInterval(exitTimer);
  exitTimer = setInterval(tick, 250);
  tick();
}

function selectText(element) {
  const range = document.createRange();
  range.selectNodeContents(element);
  const selection = window.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

$("copy-code").addEventListener("click", async () => {
  const code = $("exit-code");
  const status = $("copy-status");
  try {
    if (!navigator.clipboard || !window.isSecureContext) throw new Error("no clipboard here");
    await navigator.clipboard.writeText(code.textContent);
    status.textContent = "Copied.";
  } catch {
    // No clipboard access (an http page, a refused permission): select it for the person.
    selectText(code);
    let copied = false;
    try {
      copied = document.execCommand("copy");
    } catch {
      copied = false;
    }
    status.textContent = copied ? "Copied." : "Selected: press Ctrl+C (⌘C on a Mac) to copy it.";
  }
});

// ---------------------------------------------------------------- the socket

let socket = null;
let leaving = false; // navigating away: closes are expected
let finished = false; // got a Disconnect (or a final close): never reconnect
let resuming = false; // sent Resume and heard nothing but State since
let attempts = 0; // reconnections since the last frame that showed progress
let lostAt = null; // Date.now() when the connection was lost (null: the server went on with us)
let lastTry = false; // the try under way is the last one the grace leaves
let reconnectTimer = null; // set while waiting to try again

function send(kind, payload) {
  if (!socket || socket.readyState !== WebSocket.OPEN) {
    showError("Not connected right now: please try again in a moment.");
    return false;
  }
  const frame = payload === undefined ? { kind } : { kind, payload };
  socket.send(JSON.stringify(frame));
  return true;
}

function connect() {
  reconnectTimer = null;
  const ws = openFrames(socketPath(), {
    onFrame: (ws, kind, payload) => {
      if (ws === socket) handle(kind, payload);
    },
    onUnreadable: (ws) => {
      if (ws === socket) showError("The study sent something this page does not understand.");
    },
    onClose: (ws, event) => {
      if (ws === socket) closed(event);
    },
    heartbeatMs: HEARTBEAT_MS,
  });
  if (ws === null) {
    scheduleReconnect();
    return;
  }
  socket = ws;
}

function closed(event) {
  socket = null;
  if (leaving || finished) return;
  if (event.code === 4404) {
    finished = true;
    setConnection("closed");
    showEnded({ title: "This link does not lead to any study", reason: "Please check the link you were given." });
    return;
  }
  scheduleReconnect();
}

/** The wait before try number `attempt` (from 0): the backoff, capped, with its jitter. */
function retryDelay(attempt) {
  const ceiling = Math.min(RETRY_MAX_MS, RETRY_FIRST_MS * 2 ** Math.min(attempt, 30));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * After a failed connection: try again later, until the grace (counted on the wall clock, which
 * goes on while the tab is throttled or the computer sleeps) has run out. Its last try comes in
 * its final second; a timer that fires late (a tab in the background) still makes its try, and
 * the page gives up only once a try at or past the end of the grace has failed.
 */
function scheduleReconnect() {
  const now = Date.now();
  if (lostAt === null) lostAt = now;
  const left = lostAt + RESUME_GRACE_MS - now;
  if (lastTry || left <= 0) {
    giveUp();
    return;
  }
  let delay = retryDelay(attempts);
  attempts += 1;
  if (delay >= left) {
    lastTry = true;
    delay = left - Math.random() * Math.min(left, RETRY_FIRST_MS);
  }
  showReconnecting();
  reconnectTimer = setTimeout(connect, delay);
}

function showReconnecting() {
  const message = navigator.onLine
    ? "Connection lost. Reconnecting… Please keep this page open."
    : "You are offline. This page reconnects as soon as your connection is back: please keep it open.";
  setConnection("reconnecting", message);
}

function giveUp() {
  finished = true;
  setConnection("closed", "");
  showEnded({
    title: "Connection lost",
    reason: "This page could not reach the study. Check your connection, then try again.",
    retry: true,
  });
}

/**
 * Waiting to try again and there is news (back online, the tab shown again): try now. Not the
 * last try, even in place of it: if it fails before the grace's end, the last one is still made.
 */
function reconnectNow() {
  if (reconnectTimer === null || finished || leaving) return;
  clearTimeout(reconnectTimer);
  lastTry = false;
  connect();
}

window.addEventListener("online", reconnectNow);
window.addEventListener("offline", () => {
  if (document.body.dataset.connection === "reconnecting") showReconnecting();
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") reconnectNow();
});

function land() {
  resuming = false;
  send("Land", browserId());
}

function handle(kind, payload) {
  if (kind !== "State" && kind !== "Error") {
    // The server went on with this participant: a later drop may try again from scratch.
    resuming = false;
    attempts = 0;
    lostAt = null;
    lastTry = false;
    setConnection("open", "");
  }
  switch (kind) {
    case "State": {
      setConnection("open", "");
      // Paused or Completed as a State: someone's session is still live, and this page may
      // be theirs (its Starting URL or a redirect back); anyone else then gets the
      // campaign's Paused or Completed frames and Disconnect.
      const token = storedToken();
      if (token) {
        resuming = true;
        send("Resume", token);
      } else {
        land();
      }
      break;
    }
    case "Resume":
      if (typeof payload === "string" && payload) storeToken(payload);
      break;
    case "Consent":
      renderConsent(payload);
      break;
    case "Grouping":
      renderGrouping(payload);
      break;
    case "Instructions":
      renderInstructions(payload);
      break;
    case "JoiningSize":
      if (currentStep === "ready") showStep("waiting"); // someone failed the check: back in the pool
      renderJoiningSize(payload);
      break;
    case "Pending":
      renderPending(payload);
      break;
    case "Waiting":
      renderWaiting(payload);
      break;
    case "ReadyCheck":
      renderReadyCheck(payload);
      break;
    case "Exit":
      renderExit(payload);
      break;
    case "Starting":
      go(payload, "The study is starting. You will be taken there in a moment.");
      break;
    case "Paused":
      campaignMessage = payload;
      if (exited) insertHtml($("exit-content"), payload);
      else showEnded({ title: "The study is paused", html: payload, retry: true });
      break;
    case "Completed":
      campaignMessage = payload;
      if (exited) insertHtml($("exit-content"), payload);
      else showEnded({ title: "The study is over", html: payload });
      break;
    case "Disconnect":
      disconnected(typeof payload === "string" ? payload : "");
      break;
    case "Error":
      handleError(payload);
      break;
    default:
      console.warn("mastok: unknown frame", kind);
  }
}

function handleError(message) {
  if (resuming) {
    // Unknown or expired token: start over.
    dropToken();
    land();
    return;
  }
  showError(message);
  // Nothing changed on the server: let the person try the last action again.
  if (leaveSent) resetLeave();
  if (currentStep === "ready" && readySent) {
    readySent = false;
    $("ready").disabled = false;
    $("ready-line").hidden = false;
    $("ready-deadline").hidden = false;
    $("ready-waiting").hidden = true;
  }
  if (currentStep === "consent" && agreed) {
    agreed = false;
    updateAccept();
  }
  if (currentStep === "grouping" && connected) {
    connected = false;
    $("grouping-action").disabled = chosenGroup() === null;
  }
}

function disconnected(reason) {
  finished = true;
  clearTimeout(reconnectTimer);
  dropToken();
  setConnection("closed", "");
  if (reason === "Start") return; // the Starting redirect is under way
  if (exited) return; // the Exit view says it all, with its code and link
  if (reason === "Paused" || reason === "Completed") {
    if (currentStep !== "ended") {
      showEnded({
        title: reason === "Paused" ? "The study is paused" : "The study is over",
        html: "",
        retry: reason === "Paused",
      });
    }
    return;
  }
  if (reason.startsWith("Redirect:")) {
    go(reason.slice("Redirect:".length), "You are being sent back to your study, which is still under way.");
    return;
  }
  switch (reason) {
    case "Full":
      showEnded({
        title: "The study is full",
        html: "",
        reason: "The study is full right now, please try again later.",
        retry: true,
      });
      break;
    case "LandingFailed":
      showEnded({
        title: "You cannot join",
        html: "",
        reason: "You have already taken part in this study or cannot join it.",
      });
      break;
    case "Timeout":
      showEnded({
        title: "No group formed in time",
        html: "",
        reason: "Not enough people arrived within the waiting time. Thank you for waiting; you may close this page.",
      });
      break;
    case "Away":
      showEnded({
        title: "Disconnected",
        html: "",
        reason: "You were away too long and lost your place.",
        retry: true,
      });
      break;
    case "Left":
      showEnded({ title: "You left the waiting room", html: "", reason: "Thank you for your time." });
      break;
    case "NotReady":
      showEnded({
        title: "You did not confirm in time",
        html: "",
        reason: "Your group could not wait for your answer and went on without you.",
        retry: true,
      });
      break;
    case "MissingId":
      showEnded({
        title: "We could not tell who you are",
        html: "",
        reason: "The link you followed lacks your participant id. Please open the study again from the site that sent you.",
      });
      break;
    case "Replaced":
      showEnded({
        title: "Opened in another tab",
        html: "",
        reason: "This page was opened in another tab or window: please continue there.",
      });
      break;
    default:
      showEnded({ title: "Disconnected", html: "", reason: "The study closed the connection." });
  }
}

window.addEventListener("pagehide", () => {
  leaving = true;
  // A clean close (1000) tells mastok the person left the page (a reload, mostly): it keeps
  // the place only a few seconds, where a dropped connection keeps it for the grace period.
  if (socket && socket.readyState === WebSocket.OPEN) socket.close(1000, "left the page");
});
window.addEventListener("pageshow", (event) => {
  // Back from the study through the browser's page cache: this page's socket is gone.
  if (event.persisted) window.location.reload();
});

showStep("connecting");
setConnection("connecting", "");
connect();
