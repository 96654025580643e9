// The client's own ceiling: a WebSocket echo server in Node (ws), closing after 3 frames as
// bench/echo_app.py does. `node echo_server.mjs PORT`; prints "ready" once listening.
import { WebSocketServer } from "ws";

const port = Number(process.argv[2]);
// Offer permessage-deflate as mastok's server (uvicorn) does.
const server = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: true });
server.on("connection", (ws) => {
  let count = 0;
  ws.on("message", (data) => {
    ws.send(data.toString());
    count += 1;
    if (count >= 3) ws.close(1000, "Start");
  });
});
server.on("listening", () => process.stdout.write("ready\n"));
const stop = () => server.close(() => process.exit(0));
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
