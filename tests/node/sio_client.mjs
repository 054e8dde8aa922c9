// Socket.IO client scenario driver for the txsio interop tests.
//
//   node sio_client.mjs <scenario> <url> [json-options]
//
// <url> is the server's base URL (http://127.0.0.1:PORT); the Socket.IO path is
// options.path (default "/socket.io"). The server runs the test app described in
// sio_reference_server.mjs. Prints one JSON object per line on stdout (binary values as
// {"$bytes": [...]}, see sio_json.mjs) and exits by itself:
//
//   {"event":"connect","who":"A","nsp":"/","id":...,"transport":"websocket","opened":"polling",
//    "recovered":false}         (transport: the current one; opened: the session's first one)
//   {"event":"connect_error","who":...,"nsp":...,"message":...,"data":...}
//   {"event":"upgrade","transport":"websocket"}          (a session upgraded)
//   {"event":"ack","who":...,"step":"echo","args":[...]}          (an ack the server sent)
//   {"event":"received","who":...,"name":"echo","args":[...]}     (an event the server sent)
//   {"event":"disconnect","who":...,"id":...,"reason":"io server disconnect"}
//   {"event":"done"}                         (the scenario ran to its end; exit code 0)
//   {"event":"error","message":...}          (it went wrong; exit code 1)
//   {"event":"timeout"}                      (the deadline passed; exit code 3)
//
// Exit code 2: bad usage. options.deadline (ms, default 10000) bounds the run.
//
// Options shared by the scenarios: options.client "v4" (default, socket.io-client 4.8) or
// "v2" (socket.io-client 2.x, which needs a server with allowEIO3); options.transports
// (default ["polling", "websocket"], i.e. polling then upgrade); options.tag (a query
// parameter the server's whoami reports back); options.parser "msgpack" (npm
// socket.io-msgpack-parser, for a server using it too).
//
// Scenarios:
//   basic        connect to "/" with options.auth, wait for the upgrade when both
//       transports are allowed, then: whoami; echo(options.payload) with an ack; echo-event
//       (the server emits the payload back); ask the server to emitWithAck "question" four
//       times, the client answering with its arguments ("echo"), two values ("two"), none
//       ("none") and not at all ("never", which must time out); then disconnect.
//   namespaces   one Manager multiplexing "/", "/chat", "/dyn-42", "/private" (good token)
//       and "/nope" (unknown); on their own Managers "/private" with a bad token and "/"
//       refused by the root middleware. whoami and echo on each connected socket, then
//       disconnect them all. (v2: "/", "/chat", "/dyn-7", "/nope" and "/private", refused
//       as v2 sends no auth.)
//   rooms        four clients A-D on their own Managers; rooms, to(), except(),
//       broadcast, fetchSockets, socketsJoin and a broadcast emit with acks; every client
//       reports the "m" events it got once the final io.emit("end") reached it.
//   volatile     ask for options.count (default 20) volatile "v" events, report those that
//       arrived before the non-volatile "volatile-done".
//   disconnects  client-side namespace disconnect, socket.disconnect() and
//       socket.disconnect(true) on the server, a forced transport close, and
//       disconnectSockets() on a room: every client reports the reason it saw.
//   recovery     (a server with connection state recovery) A joins "news" and gets one
//       broadcast; its transport is closed; B broadcasts to "news" and to A's id while A is
//       away; A reconnects: recovered, same id, rooms kept, missed events delivered. C, a new
//       client, is not recovered.
//   malformed    a raw WebSocket client joins "/" then sends the Engine.IO frame
//       options.frame (default: a message carrying options.packet, by default an EVENT with
//       broken JSON); reports the frames the server sent and how it closed.
//   idle         a raw WebSocket client opens a session, answers pings and joins no
//       namespace; reports the frames and when (after the open packet) the server closed it.
import { createRequire } from "node:module";
import { Manager as ManagerV4 } from "socket.io-client";
import WebSocket from "ws";
import { errorText, fromJson, toJson } from "./sio_json.mjs";

const require = createRequire(import.meta.url);
const ioV2 = require("socket.io-client-v2");

const [scenario, baseUrl, optionsJson] = process.argv.slice(2);
if (!scenario || !baseUrl) {
  process.stderr.write("usage: node sio_client.mjs <scenario> <url> [json-options]\n");
  process.exit(2);
}
const options = JSON.parse(optionsJson || "{}");
const path = options.path ?? "/socket.io";
const v2 = options.client === "v2";
const transports = options.transports ?? ["polling", "websocket"];
const started = Date.now();
const managers = [];
let finished = false;

function emit(obj) {
  process.stdout.write(JSON.stringify(toJson(obj)) + "\n");
}

// Ends the scenario: closes every Manager left, then lets Node exit by itself (so a polling
// client's last POST is not lost); a backstop forces the exit if some handle lingers.
function finish(code) {
  if (finished) return;
  finished = true;
  clearTimeout(deadline);
  for (const manager of managers) {
    const state = v2 ? manager.readyState : manager._readyState;
    if (state === "closed") continue;
    if (v2) manager.close();
    else manager._close();
  }
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2000).unref();
}

const deadline = setTimeout(() => {
  emit({ event: "timeout", after: Date.now() - started });
  finished = true;
  process.stdout.write("", () => process.exit(3));
}, options.deadline ?? 10000);

// -- clients ----------------------------------------------------------------------------------

function newManager(extra = {}) {
  const opts = {
    path,
    transports,
    reconnection: false,
    forceNew: true,
    query: options.tag === undefined ? {} : { tag: options.tag },
    ...(options.parser === "msgpack" ? { parser: require("socket.io-msgpack-parser") } : {}),
    ...extra,
  };
  const manager = v2 ? new ioV2.Manager(baseUrl, opts) : new ManagerV4(baseUrl, opts);
  managers.push(manager);
  // The transport each Engine.IO session opened with, and its upgrade (which may well
  // complete before a namespace is connected).
  manager.upgradeWaiters = [];
  manager.on("open", () => {
    const engine = manager.engine;
    manager.opened = engine.transport.name;
    manager.upgraded = false;
    engine.on("upgrade", (transport) => {
      emit({ event: "upgrade", transport: transport.name });
      manager.upgraded = true;
      for (const resolve of manager.upgradeWaiters.splice(0)) resolve();
    });
  });
  return manager;
}

function engineOf(socket) {
  return socket.io.engine;
}

// A socket for namespace nsp on manager, reporting its connection, refusal and
// disconnection as "who".
function open(manager, who, nsp, auth) {
  const socket = v2 ? manager.socket(nsp) : manager.socket(nsp, { auth: auth ?? {} });
  socket.who = who;
  socket.received = [];
  socket.connection = new Promise((resolve, reject) => {
    socket.on("connect", () => {
      emit({
        event: "connect",
        who,
        nsp,
        id: socket.id,
        transport: engineOf(socket).transport.name,
        opened: socket.io.opened,
        recovered: v2 ? null : Boolean(socket.recovered),
      });
      resolve(socket);
    });
    const refused = (err) => {
      // v4: connect_error with an Error carrying message and data; v2: "error" with the
      // CONNECT_ERROR payload itself.
      const message = v2 ? errorText(err) : err.message;
      emit({ event: "connect_error", who, nsp, message, data: v2 ? null : err.data ?? null });
      reject(Object.assign(new Error(`${who}: connect_error ${JSON.stringify(message)}`), { refused: true }));
    };
    socket.on(v2 ? "error" : "connect_error", refused);
  });
  socket.connection.catch(() => {});
  socket.gone = new Promise((resolve) => {
    socket.on("disconnect", (reason) => {
      emit({ event: "disconnect", who, nsp, reason, elapsed: Date.now() - started });
      resolve(reason);
    });
  });
  socket.on("question", (...args) => {
    const ack = typeof args[args.length - 1] === "function" ? args.pop() : () => {};
    emit({ event: "received", who, name: "question", args });
    const [mode, ...rest] = args;
    if (mode === "echo") ack(...rest);
    else if (mode === "two") ack("a", { n: 2 });
    else if (mode === "none") ack();
    // "never": no answer
  });
  socket.on("poll", (...args) => {
    const ack = args.pop();
    ack(who);
  });
  return socket;
}

// Emits event with args and an ack callback; resolves with the ack's arguments (reported).
function call(socket, step, event, ...args) {
  return new Promise((resolve) => {
    socket.emit(event, ...args, (...ackArgs) => {
      emit({ event: "ack", who: socket.who, step, args: ackArgs });
      resolve(ackArgs);
    });
  });
}

// Resolves with the arguments of the next event named name (reported as "received").
function next(socket, name) {
  return new Promise((resolve) => {
    const listener = (...args) => {
      socket.off(name, listener);
      emit({ event: "received", who: socket.who, name, args });
      resolve(args);
    };
    socket.on(name, listener);
  });
}

// Records (and reports) every `name` event the socket gets.
// got.count(n) resolves once n have arrived.
function collect(socket, name) {
  const got = [];
  const waiting = [];
  socket.on(name, (...args) => {
    emit({ event: "received", who: socket.who, name, args });
    got.push(args);
    for (const [n, resolve] of waiting) if (got.length >= n) resolve();
  });
  got.count = (n) => got.length >= n ? Promise.resolve() : new Promise((resolve) => waiting.push([n, resolve]));
  return got;
}

// Resolves once the socket's Engine.IO session runs on WebSocket (at once if it already
// does, or if WebSocket is not among the transports).
function upgraded(socket) {
  const manager = socket.io;
  if (!transports.includes("websocket") || manager.opened === "websocket" || manager.upgraded) {
    return Promise.resolve();
  }
  return new Promise((resolve) => manager.upgradeWaiters.push(resolve));
}

function disconnect(socket) {
  socket.disconnect();
  return socket.gone;
}

const DEFAULT_PAYLOAD = [
  "text ünïcödé ✓ 😀",
  42,
  {
    nested: { buf: Buffer.from([1, 2, 3]), n: null, ok: true },
    list: [Buffer.from(Array.from({ length: 256 }, (_, i) => i)), "x", { deep: Buffer.alloc(0) }],
  },
  Buffer.from(Array.from({ length: 2000 }, (_, i) => i % 251)),
];

// -- scenarios --------------------------------------------------------------------------------

async function basic() {
  const payload = options.payload ? fromJson(options.payload) : DEFAULT_PAYLOAD;
  const socket = open(newManager(), "basic", "/", options.auth ?? { user: "basic" });
  await socket.connection;
  await upgraded(socket);
  await call(socket, "whoami", "whoami");
  await call(socket, "echo", "echo", ...payload);
  const echoed = next(socket, "echo");
  await call(socket, "echo-event", "echo-event", ...payload);
  await echoed;
  const bin = Buffer.from([9, 8, 7, 0, 255]);
  await call(socket, "ask-echo", "ask", { event: "question", args: ["echo", { bin }, "second"], timeout: 3 });
  await call(socket, "ask-two", "ask", { event: "question", args: ["two"], timeout: 3 });
  await call(socket, "ask-none", "ask", { event: "question", args: ["none"], timeout: 3 });
  await call(socket, "ask-never", "ask", { event: "question", args: ["never"], timeout: options.askTimeout ?? 0.3 });
  emit({ event: "transport", who: "basic", transport: engineOf(socket).transport.name });
  await disconnect(socket);
}

async function namespaces() {
  const manager = newManager();
  const specs = v2
    ? [["root", "/"], ["chat", "/chat"], ["dyn", "/dyn-7"]]
    : [["root", "/", { user: "n" }], ["chat", "/chat", { room: "lobby" }], ["dyn", "/dyn-42", {}],
      ["private", "/private", { token: "secret" }]];
  const sockets = specs.map(([who, nsp, auth]) => open(manager, who, nsp, auth));
  const refusals = [
    open(manager, "nope", "/nope", {}),
    open(newManager(), "private-bad", "/private", { token: "wrong" }),
  ];
  if (!v2) refusals.push(open(newManager(), "root-refused", "/", { refuse: "banned" }));
  await Promise.all(sockets.map((s) => s.connection));
  await Promise.all(refusals.map((s) => s.connection.then(
    () => { throw new Error(`${s.who} was not refused`); },
    (err) => { if (!err.refused) throw err; },
  )));
  for (const socket of sockets) {
    await call(socket, "whoami", "whoami");
    await call(socket, "echo", "echo", socket.who, { bin: Buffer.from(socket.who) });
  }
  for (const socket of sockets.reverse()) await disconnect(socket);
}

async function rooms() {
  const names = ["A", "B", "C", "D"];
  const clients = Object.fromEntries(
    names.map((who) => [who, open(newManager(), who, "/", { name: who })]),
  );
  const got = Object.fromEntries(names.map((who) => [who, collect(clients[who], "m")]));
  const ends = names.map((who) => next(clients[who], "end"));
  await Promise.all(names.map((who) => clients[who].connection));
  const { A, B, C, D } = clients;
  await call(A, "join", "join", "red");
  await call(B, "join", "join", "red");
  await call(B, "join", "join", "blue");
  await call(C, "join", "join", "blue");
  await call(A, "to-room", "to-room", "red", "m", "1 A to red");
  await call(D, "server-to", "server-to", { to: ["red", "blue"], except: ["red"] }, "m", "2 blue but not red");
  await call(C, "broadcast", "broadcast", "m", "3 C broadcast", Buffer.from([3, 3, 3]));
  await call(B, "fetch", "fetch", "red");
  await call(D, "sockets-join", "sockets-join", "red", "purple");
  await call(D, "server-to", "server-to", { to: ["purple"] }, "m", "4 purple");
  await call(D, "ask-all", "ask-all", { event: "poll", timeout: 3 });
  await call(D, "server-emit", "server-emit", "end");
  await Promise.all(ends);
  for (const who of names) emit({ event: "got", who, id: clients[who].id, m: got[who].map((args) => args[0]) });
  for (const who of names) await disconnect(clients[who]);
}

async function volatile() {
  const socket = open(newManager(), "volatile", "/", {});
  const got = collect(socket, "v");
  await socket.connection;
  await upgraded(socket);
  const done = next(socket, "volatile-done");
  socket.emit("volatile", { event: "v", count: options.count ?? 20 });
  await done;
  emit({ event: "volatile", transport: engineOf(socket).transport.name, received: got.map((args) => args[0]) });
  await disconnect(socket);
}

async function disconnects() {
  const x = newManager();
  const X = open(x, "X", "/", {});
  const Xchat = open(x, "X/chat", "/chat", {});
  const [Y, Z, V, W, K] = ["Y", "Z", "V", "W", "K"].map((who) => open(newManager(), who, "/", {}));
  await Promise.all([X, Xchat, Y, Z, V, W, K].map((s) => s.connection));
  // the client leaves one namespace; the other stays connected on the same session
  await disconnect(Xchat);
  await call(X, "whoami", "whoami");
  // the server disconnects a socket: without and with closing the connection
  X.emit("disconnect-me", {});
  await X.gone;
  Z.emit("disconnect-me", { close: true });
  await Z.gone;
  // the transport goes away under the client
  engineOf(Y).close();
  await Y.gone;
  // disconnectSockets() on a room
  await call(V, "join", "join", "kick");
  await call(W, "join", "join", "kick");
  await call(K, "kick-room", "kick-room", "kick");
  await Promise.all([V.gone, W.gone]);
  await disconnect(K);
}

async function recovery() {
  const A = open(newManager({ transports: ["websocket"] }), "A", "/", { name: "A" });
  const B = open(newManager(), "B", "/", { name: "B" });
  const news = collect(A, "news");
  await Promise.all([A.connection, B.connection]);
  const firstId = A.id;
  await call(A, "join", "join", "news");
  await call(B, "to-room", "to-room", "news", "news", "before");
  // A must have processed "before", whose last argument is the offset it will present
  await news.count(1);
  engineOf(A).close();
  await A.gone;
  await call(B, "await-gone", "await-gone", firstId);
  await call(B, "to-room", "to-room", "news", "news", "missed 1", Buffer.from([1, 2]));
  await call(B, "server-to", "server-to", { to: [firstId] }, "news", "missed 2");
  await call(B, "to-room", "to-room", "elsewhere", "news", "not for A");
  const reconnected = new Promise((resolve) => A.once("connect", resolve));
  A.connect();
  await reconnected;
  await call(A, "whoami", "whoami");
  const C = open(newManager(), "C", "/", { name: "C" });
  await C.connection;
  emit({ event: "news", who: "A", id: A.id, firstId, recovered: Boolean(A.recovered), args: news });
  await Promise.all([disconnect(A), disconnect(B), disconnect(C)]);
}

async function malformed() {
  const url = `${baseUrl.replace(/^http/, "ws").replace(/\/$/, "")}${path}/?EIO=4&transport=websocket`;
  const ws = new WebSocket(url);
  const frame = options.frame ?? `4${options.packet ?? '2["unterminated'}`;
  await new Promise((resolve, reject) => {
    ws.on("message", (data, isBinary) => {
      const text = isBinary ? null : data.toString();
      emit({ event: "frame", text, binary: isBinary, elapsed: Date.now() - started });
      if (text?.startsWith("0")) ws.send("40");
      else if (text?.startsWith("40")) ws.send(frame);
      else if (text === "2") ws.send("3");
    });
    ws.on("error", (err) => emit({ event: "ws-error", message: errorText(err) }));
    ws.on("close", (code) => {
      emit({ event: "closed", code, elapsed: Date.now() - started });
      resolve();
    });
    ws.on("unexpected-response", (_, response) => reject(new Error(`HTTP ${response.statusCode}`)));
  });
}

// A raw WebSocket client that opens an Engine.IO session, answers pings, and never joins a
// namespace: the server must close it after its connect timeout.
async function idle() {
  const url = `${baseUrl.replace(/^http/, "ws").replace(/\/$/, "")}${path}/?EIO=4&transport=websocket`;
  const ws = new WebSocket(url);
  let openedAt = null;
  await new Promise((resolve, reject) => {
    ws.on("message", (data, isBinary) => {
      const text = isBinary ? null : data.toString();
      if (text?.startsWith("0")) openedAt = Date.now();
      emit({ event: "frame", text, binary: isBinary, elapsed: Date.now() - started });
      if (text === "2") ws.send("3");
    });
    ws.on("error", (err) => emit({ event: "ws-error", message: errorText(err) }));
    ws.on("close", (code) => {
      emit({ event: "closed", code, afterOpen: openedAt === null ? null : Date.now() - openedAt });
      resolve();
    });
    ws.on("unexpected-response", (_, response) => reject(new Error(`HTTP ${response.statusCode}`)));
  });
}

const scenarios = { basic, namespaces, rooms, volatile, disconnects, recovery, malformed, idle };
const run = scenarios[scenario];
if (!run) {
  process.stderr.write(`unknown scenario: ${scenario}\n`);
  process.exit(2);
}
run().then(
  () => {
    emit({ event: "done", elapsed: Date.now() - started });
    finish(0);
  },
  (err) => {
    emit({ event: "error", message: errorText(err), stack: err?.stack ?? null });
    finish(1);
  },
);
