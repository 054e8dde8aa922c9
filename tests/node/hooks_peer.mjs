// Engine hooks, side by side: Node's reference server with the hooks of the txsio tests, and a
// probe that reads what a server answers on the wire.
//
//   node hooks_peer.mjs server            the reference: socket.io 4.8 on port 0, printing
//       {"event":"listening","port":N}, then {"event":"connection_error","code":...,
//       "message":...,"context":{...}} for each request refused. Its hooks:
//         initial_headers adds "x-initial: yes", headers adds "x-every: yes";
//         allowRequest refuses a request with ?refuse=1 with the message "no thanks";
//         engine.use fails a request with ?mw=fail (next(new Error)).
//   node hooks_peer.mjs probe <url>       the probe, one JSON line per step:
//       {"event":"poll","step":"handshake"|"next","status":200,"initial":..,"every":..}
//       {"event":"ws","status":101,"initial":"yes","every":"yes"}
//       {"event":"refused","transport":"polling"|"websocket","why":"refuse"|"mw"|"sid",
//        "status":403,"type":"application/json","body":"..."}
//       {"event":"done"}
import http from "node:http";
import { Server } from "socket.io";
import WebSocket from "ws";

const [role, base] = process.argv.slice(2);
const out = (event) => process.stdout.write(JSON.stringify(event) + "\n");

function query(req) {
  return new URL(req.url, "http://localhost").searchParams;
}

function server() {
  const httpServer = http.createServer();
  const io = new Server(httpServer, {
    allowRequest: (req, callback) =>
      query(req).get("refuse") ? callback("no thanks", false) : callback(null, true),
  });
  io.engine.on("initial_headers", (headers) => {
    headers["x-initial"] = "yes";
  });
  io.engine.on("headers", (headers) => {
    headers["x-every"] = "yes";
  });
  io.engine.on("connection_error", (err) => {
    out({ event: "connection_error", code: err.code, message: err.message, context: err.context });
  });
  io.engine.use((req, res, next) =>
    query(req).get("mw") ? next(new Error("middleware says no")) : next(),
  );
  httpServer.listen(0, "127.0.0.1", () => out({ event: "listening", port: httpServer.address().port }));
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}

const PATH = "/socket.io/?EIO=4&transport=";

async function poll(step, url) {
  const response = await fetch(url);
  const body = await response.text();
  out({
    event: "poll",
    step,
    status: response.status,
    initial: response.headers.get("x-initial"),
    every: response.headers.get("x-every"),
  });
  return body;
}

async function refusedPoll(why, url) {
  const response = await fetch(url);
  out({
    event: "refused",
    transport: "polling",
    why,
    status: response.status,
    type: response.headers.get("content-type"),
    body: await response.text(),
  });
}

function websocket(url, onUpgrade) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.on("upgrade", (response) => onUpgrade(response));
    ws.on("open", () => {
      ws.close();
      resolve();
    });
    ws.on("unexpected-response", (request, response) => {
      let body = "";
      response.on("data", (chunk) => (body += chunk));
      response.on("end", () => resolve({ response, body }));
      response.on("error", () => resolve({ response, body }));
    });
    ws.on("error", () => {});
  });
}

async function refusedWebSocket(why, url) {
  const { response, body } = await websocket(url, () => {});
  out({
    event: "refused",
    transport: "websocket",
    why,
    status: response.statusCode,
    type: response.headers["content-type"],
    body,
  });
}

async function probe() {
  const http = base + PATH + "polling";
  const ws = base.replace(/^http/, "ws") + PATH + "websocket";
  const opened = await poll("handshake", http);
  const sid = JSON.parse(opened.slice(1)).sid;
  await fetch(http + "&sid=" + sid, { method: "POST", body: "40" });
  await poll("next", http + "&sid=" + sid);
  await websocket(ws, (response) =>
    out({
      event: "ws",
      status: response.statusCode,
      initial: response.headers["x-initial"] ?? null,
      every: response.headers["x-every"] ?? null,
    }),
  );
  await refusedPoll("refuse", http + "&refuse=1");
  await refusedWebSocket("refuse", ws + "&refuse=1");
  await refusedPoll("mw", http + "&mw=fail");
  await refusedWebSocket("mw", ws + "&mw=fail");
  await refusedPoll("sid", http + "&sid=nope");
  out({ event: "done" });
  process.exit(0);
}

if (role === "server") server();
else if (role === "probe") probe().catch((err) => {
  out({ event: "error", message: String(err) });
  process.exit(1);
});
else {
  out({ event: "error", message: `unknown role ${role}` });
  process.exit(2);
}
