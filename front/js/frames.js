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

/**
 * Opens a socket to `path`; each handler gets the socket first, so a page can ignore an old
 * one it replaced. `onFrame(ws, kind, payload)` for each well-formed frame, `onUnreadable(ws)`
 * for one that is not JSON, `onOpen(ws)` and `onClose(ws, event)`. Null if the socket could not
 * even be created (the page retries as after a close).
 */
export function openFrames(path, { onFrame, onUnreadable, onOpen = () => {}, onClose }) {
  let ws;
  try {
    ws = new WebSocket(socketUrl(path));
  } catch (error) {
    console.error("mastok: cannot open the socket", error);
    return null;
  }
  ws.addEventListener("open", () => onOpen(ws));
  ws.addEventListener("message", (event) => {
    let frame;
    try {
      frame = JSON.parse(event.data);
    } catch {
      onUnreadable(ws);
      return;
    }
    if (frame && typeof frame.kind === "string") onFrame(ws, frame.kind, frame.payload);
  });
  ws.addEventListener("close", (event) => onClose(ws, event));
  return ws;
}
