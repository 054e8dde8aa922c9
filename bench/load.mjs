// The benchmark's load generator: raw Engine.IO v4 / Socket.IO v5 framing, no client library,
// so that it costs far less than the server it measures.  WebSocket modes use the minimal
// client of rawws.mjs (one frame per packet, binary attachments as raw binary frames, constant
// frames masked once); LOAD_CLIENT=ws runs them on the `ws` package instead, as before, to
// compare the two.  The polling mode uses Node's http with a keep-alive agent.
//
// Usage: node load.mjs <mode> <http://host:port> [args...]
//   ack     <sockets> <inflight> <seconds>        echo with ack over WebSocket
//   fanout  <sockets> <seconds>                   one emit to a room per round, round-trip bound
//   binary  <sockets> <inflight> <bytes> <seconds> echo with ack of one binary attachment
//   connect <concurrency> <seconds>               handshake + CONNECT, then close, in a loop
//   idle    <sockets>                             hold connected sockets until stdin closes
//   polling <sessions> <inflight> <seconds>       echo with ack over HTTP long-polling
//   burst   <sockets> <burst> <rounds>            bursts of broadcasts (the old broadcast figure)
//
// Protocol with bench/run.py: the generator opens its connections, prints "ready", waits for a
// line on stdin, measures, and prints one JSON line ({"ops", "seconds", "rate", ...}).  The idle
// mode prints "ready" and exits when stdin closes.  Errors go to stderr with exit code 1.
import { createRequire } from "node:module";
import http from "node:http";
import readline from "node:readline";
import { RawWebSocket, binaryFrame, textFrame } from "./rawws.mjs";

const [mode, base, ...rest] = process.argv.slice(2);
const num = (i, dflt) => Number(rest[i] ?? dflt);
const PATH = "/socket.io/?EIO=4&transport=websocket";
const wsUrl = base.replace(/^http/, "ws") + PATH;
const PAYLOAD = JSON.stringify({ text: "hello world, this is a benchmark message", n: 42 });
const CH_0 = 0x30, CH_2 = 0x32, CH_3 = 0x33, CH_4 = 0x34, CH_6 = 0x36, CH_BRACKET = 0x5b;

function fail(message) { process.stderr.write(`load.mjs ${mode}: ${message}\n`); process.exit(1); }
process.on("unhandledRejection", (e) => fail(String(e && e.stack || e)));

// The WebSocket client: open(onMessage, onError) returns a connection with send(item, then?)
// (an item is a string, sent as a text frame, or what constant() made of a string or Buffer),
// close() and terminate(); onMessage(conn, data, isBinary) gets every message.
const CLIENT = process.env.LOAD_CLIENT || "raw";
if (CLIENT !== "raw" && CLIENT !== "ws") fail(`LOAD_CLIENT=${CLIENT}: raw or ws`);
let open, constant;
if (CLIENT === "raw") {
  const { hostname, port } = new URL(base);
  // A constant frame is built and masked once (rawws.mjs: one masking key per process).
  constant = (data) => (typeof data === "string" ? textFrame(data) : binaryFrame(data));
  open = (onMessage, onError) => {
    const conn = new RawWebSocket(hostname, Number(port), PATH);
    conn.onmessage = (data, isBinary) => onMessage(conn, data, isBinary);
    conn.onerror = onError;
    conn.onclose = () => { if (!conn.closing) onError(new Error("closed by the server")); };
    return conn;
  };
} else {
  const require = createRequire(import.meta.url);
  const WebSocket = require(process.env.NODE_PATH ? `${process.env.NODE_PATH}/ws` : "ws");
  constant = (data) => data;
  open = (onMessage, onError) => {
    const ws = new WebSocket(wsUrl, { perMessageDeflate: false });
    const conn = {
      send(item, then) { ws.send(item); if (then !== undefined) ws.send(then); },
      close() { ws.close(); },
      terminate() { ws.terminate(); },
    };
    ws.on("error", onError);
    ws.on("message", (data, isBinary) => onMessage(conn, data, isBinary));
    return conn;
  };
}
const PONG = constant("3"), CONNECT = constant("40");

const stdin = readline.createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();
async function go() { console.log("ready"); await lines.next(); }
function report(ops, seconds, extra = {}) {
  console.log(JSON.stringify({ ops, seconds, rate: ops / seconds, ...extra }));
}

// The ack id of "43<id>[...]" (or of "461-<id>[...]" when `from` is 4).
function ackId(buf, from) {
  let id = 0;
  for (let i = from; i < buf.length && buf[i] !== CH_BRACKET; i++) id = id * 10 + buf[i] - CH_0;
  return id;
}

// One Socket.IO connection over a WebSocket: resolves when the CONNECT is answered.  `onPacket`
// gets every later frame (Buffer, isBinary); pings are answered here.
function connect(onPacket) {
  return new Promise((resolve, reject) => {
    let connected = false;
    open((ws, data, isBinary) => {
      if (!isBinary && data.length === 1 && data[0] === CH_2) { ws.send(PONG); return; }
      if (connected) { onPacket(ws, data, isBinary); return; }
      if (data[0] === CH_0) ws.send(CONNECT);
      else if (data[0] === CH_4 && data[1] === CH_0) { connected = true; resolve(ws); }
      else if (data[0] === CH_4 && data[1] === CH_4) reject(new Error(`refused: ${data}`));
    }, (e) => (connected ? fail(`socket error ${e.message}`) : reject(e)));
  });
}

async function connectMany(n, onPacket, batch = 100) {
  const sockets = [];
  for (let i = 0; i < n; i += batch) {
    const chunk = await Promise.all(
      Array.from({ length: Math.min(batch, n - i) }, () => connect(onPacket)));
    sockets.push(...chunk);
  }
  return sockets;
}

// An emit with ack on `ws`, answered with "43<id>[...]": resolves with the answer.
function request(ws, waiting, frame) {
  return new Promise((resolve) => { waiting.set(ws, resolve); ws.send(frame); });
}

// The measured window of the in-flight modes: `send(target)` k times for every target, then
// each answer sends the next one while `measuring.on`; returns the window's length in seconds.
const measuring = { on: false };
async function keepInFlight(targets, k, send, seconds) {
  await go();
  measuring.on = true;
  const start = performance.now();
  for (const target of targets) for (let i = 0; i < k; i++) send(target);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring.on = false;
  return (performance.now() - start) / 1000;
}

async function ack() {
  const n = num(0, 50), k = num(1, 10), seconds = num(2, 5);
  let acks = 0, nextId = 0;
  const prefix = "42", suffix = `["echo",${PAYLOAD}]`;
  const send = (ws) => ws.send(prefix + (nextId++) + suffix);
  const sockets = await connectMany(n, (ws, data) => {
    if (data[0] === CH_4 && data[1] === CH_3) { acks++; if (measuring.on) send(ws); }
  });
  const secs = await keepInFlight(sockets, k, send, seconds);
  report(acks, secs);
}

async function fanout() {
  const n = num(0, 1000), seconds = num(1, 5);
  const waiting = new Map();
  const JOIN = constant('420["join"]');
  let received = 0, roundDone = null;
  const sockets = await connectMany(n, (ws, data) => {
    if (data[0] !== CH_4) return;
    if (data[1] === CH_2) { if (++received === n) roundDone(); }
    else if (data[1] === CH_3) { const w = waiting.get(ws); waiting.delete(ws); w(); }
  });
  // Every socket in the room "room", each join acknowledged, before the clock starts.
  for (let i = 0; i < n; i += 100) {
    await Promise.all(sockets.slice(i, i + 100).map((ws) => request(ws, waiting, JOIN)));
  }
  const FANOUT = constant('42["fanout"]');
  await go();
  const start = performance.now(), end = start + seconds * 1000;
  let rounds = 0;
  while (performance.now() < end) {
    received = 0;
    const done = new Promise((r) => { roundDone = r; });
    sockets[0].send(FANOUT);
    await done;
    rounds++;
  }
  report(rounds * n, (performance.now() - start) / 1000, { rounds });
}

async function binary() {
  const n = num(0, 10), k = num(1, 2), size = num(2, 65536), seconds = num(3, 5);
  const attachment = constant(Buffer.alloc(size, 7));
  const header = '["echo",{"_placeholder":true,"num":0}]';
  let echoes = 0, nextId = 0;
  const send = (ws) => ws.send("451-" + (nextId++) + header, attachment);
  const sockets = await connectMany(n, (ws, data, isBinary) => {
    // "461-<id>[...]" announces the attachment; the echo is complete with the binary frame.
    if (isBinary) {
      if (data.length !== size) fail(`attachment of ${data.length} bytes`);
      echoes++;
      if (measuring.on) send(ws);
    } else if (data[0] !== CH_4 || data[1] !== CH_6) fail(`unexpected ${data}`);
  });
  const secs = await keepInFlight(sockets, k, send, seconds);
  report(echoes, secs, { mbytes_per_s: (echoes * size) / secs / 1e6 });
}

async function connectRate() {
  const c = num(0, 10), seconds = num(1, 5);
  await go();
  const start = performance.now(), end = start + seconds * 1000;
  let connects = 0;
  async function loop() {
    while (performance.now() < end) {
      const ws = await connect(() => {});
      connects++;
      ws.close();
    }
  }
  await Promise.all(Array.from({ length: c }, loop));
  report(connects, (performance.now() - start) / 1000);
}

async function idle() {
  const n = num(0, 1000);
  const sockets = await connectMany(n, () => {});
  console.log("ready");
  for await (const _ of lines);  // until stdin closes
  for (const ws of sockets) ws.terminate();
  process.exit(0);
}

async function burst() {
  const n = num(0, 200), b = num(1, 200), r = num(2, 10);
  let received = 0, target = 0, done = null;
  const sockets = await connectMany(n, (ws, data) => {
    if (data[0] === CH_4 && data[1] === CH_2 && ++received === target) done();
  }, 50);
  const BURST = constant(`42["burst",${b}]`);
  await go();
  let elapsed = 0;
  for (let i = 0; i < r; i++) {
    received = 0; target = n * b;
    const finished = new Promise((resolve) => { done = resolve; });
    const start = performance.now();
    sockets[0].send(BURST);
    await finished;
    elapsed += (performance.now() - start) / 1000;
  }
  report(n * b * r, elapsed);
}

// -- long-polling ------------------------------------------------------------------------------

async function polling() {
  const n = num(0, 50), k = num(1, 1), seconds = num(2, 5);
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });
  const { hostname, port } = new URL(base);
  const path = "/socket.io/?EIO=4&transport=polling";
  function httpRequest(method, query, body) {
    return new Promise((resolve, reject) => {
      const headers = body === undefined ? {} : { "content-type": "text/plain;charset=UTF-8" };
      const req = http.request({ agent, hostname, port, method, path: path + query, headers }, (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString())
          : reject(new Error(`${method} ${res.statusCode}: ${Buffer.concat(chunks)}`))));
      });
      req.on("error", reject);
      req.end(body);
    });
  }
  let acks = 0, nextId = 0;
  const suffix = `["echo",${PAYLOAD}]`;

  async function session() {
    const open = await httpRequest("GET", "");
    const query = "&sid=" + JSON.parse(open.slice(1)).sid;
    await httpRequest("POST", query, "40");
    let connected = false, posting = false;
    const queue = [];
    const flush = () => {
      if (posting || queue.length === 0) return;
      posting = true;
      const body = queue.join("\x1e");
      queue.length = 0;
      httpRequest("POST", query, body).then(() => { posting = false; flush(); }, (e) => fail(e));
    };
    const emit = () => { queue.push("42" + (nextId++) + suffix); flush(); };
    let onConnect;
    const ready = new Promise((r) => { onConnect = r; });
    (async () => {
      for (;;) {
        const payload = await httpRequest("GET", query);
        for (const packet of payload.split("\x1e")) {
          if (packet === "2") { queue.push("3"); flush(); }
          else if (packet.startsWith("43")) { acks++; if (measuring.on) emit(); }
          else if (packet.startsWith("40") && !connected) { connected = true; onConnect(); }
          else if (packet === "1" || packet.startsWith("44")) fail(`closed: ${packet}`);
        }
      }
    })().catch((e) => { if (measuring.on) fail(e); });
    await ready;
    return emit;
  }

  const emitters = [];
  for (let i = 0; i < n; i += 50) {
    emitters.push(...await Promise.all(Array.from({ length: Math.min(50, n - i) }, session)));
  }
  const secs = await keepInFlight(emitters, k, (emit) => emit(), seconds);
  report(acks, secs);
  process.exit(0);
}

const modes = { ack, fanout, binary, connect: connectRate, idle, burst, polling };
if (!modes[mode]) fail(`unknown mode (one of ${Object.keys(modes).join(", ")})`);
await modes[mode]();
process.exit(0);
