// What the join and supervise pages share: mastok's sockets of {"kind", "payload"} frames
// (docs/protocol.md) and the check of URLs the server sends. Plain ES module, served as-is.

/** The URL if it is an absolute http(s) URL, else null. */
export function httpUrl(value) {
  if (typeof value !== "string" || value === "") return null;
  try {
    const url = new URL(value, window.location.href);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** The ws:// or wss:// URL of a path on this page's host. */
function socketUrl(path) {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}${path}`;
}

// A Ping unanswered this long: the socket was cut without a close (its server's machine gone, a
// changed network), which the browser would not notice until it sent something itself.
const ANSWER_MS = 5000;
export const NO_ANSWER = 4000; // the close code of a socket given up for that

/** A page's heartbeat in ms from its `data-heartbeat` (seconds; 0: none): 15 s if unreadable. */
export function heartbeatMs(seconds) {
  const value = Number(seconds);
  return Number.isFinite(value) && value >= 0 ? value * 1000 : 15000;
}

/**
 * Opens a socket to `path`; each handler gets the socket first, so a page can ignore an old
 * one it replaced. `onFrame(ws, kind, payload)` for each well-formed frame, `onUnreadable(ws)`
 * for one that is not JSON, `onOpen(ws)` and `onClose(ws, event)` (once). Null if the socket
 * could not even be created (the page retries as after a close). `heartbeatMs`: after that long
 * without a frame, send `Ping`; no frame ANSWER_MS later, the socket is closed and reported
 * closed at once, with code NO_ANSWER (0: never).
 */
export function openFrames(path, { onFrame, onUnreadable, onOpen = () => {}, onClose, heartbeatMs = 0 }) {
  let ws;
  try {
    ws = new WebSocket(socketUrl(path));
  } catch (error) {
    console.error("mastok: cannot open the socket", error);
    return null;
  }
  let timer = null;
  let reported = false;
  const report = (event) => {
    clearTimeout(timer);
    if (!reported) {
      reported = true;
      onClose(ws, event);
    }
  };
  const unanswered = () => {
    report({ code: NO_ANSWER, reason: "no answer to Ping", wasClean: false });
    ws.close(NO_ANSWER, "no answer to Ping");
  };
  const silent = () => {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ kind: "Ping" }));
    timer = setTimeout(unanswered, ANSWER_MS);
  };
  const heard = () => {
    if (heartbeatMs <= 0 || reported) return;
    clearTimeout(timer);
    timer = setTimeout(silent, heartbeatMs);
  };
  ws.addEventListener("open", () => {
    heard();
    onOpen(ws);
  });
  ws.addEventListener("message", (event) => {
    heard();
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      onUnreadable(ws);
      return;
    }
    if (frame && typeof frame.kind === "string" && frame.kind !== "Pong") {
      onFrame(ws, frame.kind, frame.payload);
    }
  });
  ws.addEventListener("close", report);
  return ws;
}
