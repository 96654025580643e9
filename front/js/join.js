// The participant's join page: walks a person through the live protocol of docs/protocol.md.
// Plain ES module, served as-is. Every step is a <section id="step-…">; the current one is also
// on document.body.dataset.step (and the socket's state on document.body.dataset.connection).

import { httpUrl, openFrames } from "./frames.js";

const root = document.getElementById("join");
const slug = root.dataset.slug || "";
const wsPath = root.dataset.wsPath;
const TOKEN_KEY = `mastok:resume:${slug}`;
const RECONNECT_DELAYS = [1000, 2000, 4000, 8000, 16000]; // at most 5 attempts

const $ = (id) => document.getElementById(id);
const STEPS = ["connecting", "consent", "grouping", "waiting", "pending", "starting", "ended"];

// ---------------------------------------------------------------- small helpers

/** cyrb53: a fast 53-bit string hash (public domain, bryc). Not cryptographic; stable. */
function cyrb53(text, seed = 0) {
  let h1 = 0xdeadbeef ^ seed;
  let h2 = 0x41c6ce57 ^ seed;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ ch, 2654435761);
    h2 = Math.imul(h2 ^ ch, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** A stable fingerprint of this browser: same device and browser, same string. */
function fingerprint() {
  const nav = window.navigator;
  const scr = window.screen || {};
  let timezone = "";
  try {
    timezone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch {
    timezone = "";
  }
  const parts = [
    nav.userAgent || "",
    nav.language || "",
    (nav.languages || []).join(","),
    `${scr.width || 0}x${scr.height || 0}`,
    String(scr.colorDepth || 0),
    timezone,
    String(new Date().getTimezoneOffset()),
    String(nav.hardwareConcurrency || 0),
    nav.platform || "",
  ].join("|");
  const pad = (n) => n.toString(16).padStart(14, "0");
  return `fp1-${pad(cyrb53(parts, 1))}${pad(cyrb53(parts, 2))}`;
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

// ---------------------------------------------------------------- the socket

let socket = null;
let leaving = false; // navigating away: closes are expected
let finished = false; // got a Disconnect (or a final close): never reconnect
let resuming = false; // sent Resume and heard nothing but State since
let attempts = 0; // reconnections since the last frame that showed progress
let reconnectTimer = null;

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
  const ws = openFrames(wsPath, {
    onFrame: (ws, kind, payload) => {
      if (ws === socket) handle(kind, payload);
    },
    onUnreadable: (ws) => {
      if (ws === socket) showError("The study sent something this page does not understand.");
    },
    onClose: (ws, event) => {
      if (ws === socket) closed(event);
    },
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

function scheduleReconnect() {
  if (attempts >= RECONNECT_DELAYS.length) {
    finished = true;
    setConnection("closed", "");
    showEnded({
      title: "Connection lost",
      reason: "This page could not reach the study. Check your connection, then try again.",
      retry: true,
    });
    return;
  }
  const delay = RECONNECT_DELAYS[attempts];
  attempts += 1;
  setConnection("reconnecting", "Connection lost, reconnecting…");
  reconnectTimer = setTimeout(connect, delay);
}

function land() {
  resuming = false;
  send("Land", fingerprint());
}

function handle(kind, payload) {
  if (kind !== "State" && kind !== "Error") {
    // The server went on with this participant: a later drop may try again from scratch.
    resuming = false;
    attempts = 0;
    setConnection("open", "");
  }
  switch (kind) {
    case "State": {
      setConnection("open", "");
      if (payload === "Running" || payload === "Busy") {
        const token = storedToken();
        if (token) {
          resuming = true;
          send("Resume", token);
        } else {
          land();
        }
      }
      // Paused or Completed come with their own frames (Paused/Completed, then Disconnect).
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
      renderJoiningSize(payload);
      break;
    case "Pending":
      renderPending(payload);
      break;
    case "Starting":
      go(payload, "The study is starting. You will be taken there in a moment.");
      break;
    case "Paused":
      showEnded({ title: "The study is paused", html: payload, retry: true });
      break;
    case "Completed":
      showEnded({ title: "The study is over", html: payload });
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
