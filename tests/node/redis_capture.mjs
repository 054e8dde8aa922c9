// Records the Redis traffic of two Node Socket.IO nodes (socket.io 4.8 + @socket.io/redis-adapter
// 8.3, classic pub/sub) and of @socket.io/redis-emitter 5.1, message by message, as raw bytes.
// The fixtures in tests/fixtures/redis/ were made with it (see the README there):
//
//   redis-server --port 6390 --save '' --appendonly no &
//   node tests/node/redis_capture.mjs 6390 tests/fixtures/redis
//
// A third Redis connection PSUBSCRIBEs "*" in buffer mode and writes every message it gets to
// <out>/<NN>-<label>.bin; <out>/index.json lists each file with its channel, encoding and the
// message as notepack.io / JSON.parse decode it (binary as {"$bin": hex}, dates as
// {"$date": ISO text}), so a test can check its own decoder against Node's.
//
// With a third argument `sharded` it records the sharded adapter instead (`createShardedAdapter`,
// SPUBLISH / SSUBSCRIBE, Redis >= 7; tests/fixtures/redis/sharded/). The recorder then reads
// the SPUBLISH commands from MONITOR: there is no pattern form of SSUBSCRIBE, and a recorder
// subscribed to `P#NSP#` would be counted as a node (PUBSUB SHARDNUMSUB).
import { once } from "node:events";
import { createServer } from "node:http";
import { connect as tcpConnect } from "node:net";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import { Server } from "socket.io";
import { io as connect } from "socket.io-client";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";

const require = createRequire(import.meta.url);
const notepack = require("notepack.io");

const [port, out, mode] = process.argv.slice(2);
const sharded = mode === "sharded";
if (!port || !out) {
  process.stderr.write("usage: node redis_capture.mjs <redis-port> <out-dir> [sharded]\n");
  process.exit(2);
}
const url = `redis://127.0.0.1:${port}`;
mkdirSync(out, { recursive: true });

// -- the recorder -----------------------------------------------------------------------------

const records = [];
let label = "setup";
let waiting = null;
const recorder = createClient({ url });
await recorder.connect();
function record(message, channel) {
  records.push({ label, channel: channel.toString(), message: Buffer.from(message) });
  if (waiting && records.length >= waiting.count) waiting.resolve();
}
if (!sharded) await recorder.pSubscribe("*", record, true);

// MONITOR's lines quote each argument as sdscatrepr does: \\ \" \n \r \t \a \b and \xhh.
function unquote(text) {
  const bytes = [];
  const named = { n: 10, r: 13, t: 9, a: 7, b: 8 };
  for (let i = 0; i < text.length; i++) {
    if (text[i] !== "\\") bytes.push(text.charCodeAt(i));
    else if (text[i + 1] === "x") { bytes.push(parseInt(text.slice(i + 2, i + 4), 16)); i += 3; }
    else { bytes.push(named[text[i + 1]] ?? text.charCodeAt(i + 1)); i += 1; }
  }
  return Buffer.from(bytes);
}

function monitor() {
  const socket = tcpConnect(Number(port), "127.0.0.1");
  let buffer = "";
  socket.setEncoding("latin1");
  socket.write("MONITOR\r\n");
  socket.on("data", (chunk) => {
    buffer += chunk;
    let end;
    while ((end = buffer.indexOf("\r\n")) >= 0) {
      const line = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const args = [...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => unquote(m[1]));
      if (args.length === 3 && args[0].toString().toUpperCase() === "SPUBLISH") record(args[2], args[1]);
    }
  });
  return socket;
}
const monitorSocket = sharded ? monitor() : null;

// Runs action under a label and waits until `count` messages were recorded for it.
async function step(name, count, action) {
  label = name;
  const target = records.length + count;
  const arrived = new Promise((resolve, reject) => {
    waiting = { count: target, resolve };
    setTimeout(() => reject(new Error(`${name}: ${records.length - target + count} of ${count} messages`)), 3000);
  });
  const result = await action();
  await arrived;
  waiting = null;
  return result;
}

// -- two nodes ----------------------------------------------------------------------------------

async function node(name, onConnection) {
  const pub = createClient({ url });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const http = createServer();
  const io = new Server(http, { adapter: (sharded ? createShardedAdapter : createAdapter)(pub, sub) });
  io.on("connection", (socket) => onConnection(io, socket));
  http.listen(0, "127.0.0.1");
  await once(http, "listening");
  return { io, http, pub, sub, url: `http://127.0.0.1:${http.address().port}` };
}

const A = await node("node-A", (io, socket) => {
  socket.on("relay", (cb) => {
    socket.broadcast.emit("relayed", "x");
    cb();
  });
});
const B = await node("node-B", (io, socket) => {
  const name = socket.handshake.auth.name;
  socket.data = { node: "node-B", name };
  socket.join(name === "b1" ? "r1" : "r3");
});
B.io.of("/chat");
B.io.on("hello", () => {});
B.io.on("buf", () => {});
B.io.on("ping", (arg, cb) => cb({ node: "node-B", echo: arg }));

async function client(base, name) {
  const socket = connect(base, { auth: { name }, transports: ["websocket"], forceNew: true });
  await once(socket, "connect");
  return socket;
}
const a1 = await client(A.url, "a1");
const b1 = await client(B.url, "b1");
const b2 = await client(B.url, "b2");
b1.on("question", (payload, cb) => cb({ from: "b1", payload }));

// -- the traffic --------------------------------------------------------------------------------

await step("broadcast-one-room", 1, () => A.io.to("r1").emit("news", { n: 1 }));
await step("broadcast-except-binary", 1, () =>
  A.io.except("r3").emit("bin", { data: Buffer.from([0, 1, 2, 253, 254, 255]) }, "tail"));
await step("broadcast-rooms-volatile", 1, () =>
  A.io.to(["r1", "r2"]).volatile.emit("multi", 1.5, -3, 70000, 2 ** 40, "ünï ✓", null, true, [1, [2]]));
await step("broadcast-socket-broadcast", 1, () => a1.emitWithAck("relay"));
if (sharded) await step("broadcast-socket-id", 1, () => A.io.to(b1.id).emit("direct", "to-b1"));
await step("broadcast-namespace", 1, () => A.io.of("/chat").emit("hello", "chat"));
await step("broadcast-dates", 1, () => A.io.emit("dates", new Date(1795746012497), new Date(0)));
if (!sharded) await step("all-rooms", 2, () => A.io.of("/").adapter.allRooms());
await step("fetch-sockets", 2, () => A.io.in("r1").fetchSockets());
await step("sockets-join", 1, () => A.io.in("r1").socketsJoin("r2"));
await step("sockets-leave", 1, () => A.io.in("r1").socketsLeave("r2"));
await step("server-side-emit", 1, () => A.io.serverSideEmit("hello", { q: 1 }));
await step("server-side-emit-buffer", 1, () => A.io.serverSideEmit("buf", Buffer.from([1, 2])));
await step("server-side-emit-ack", 2, () => A.io.serverSideEmitWithAck("ping", { q: "from-A" }));
await step("broadcast-ack", 3, () => A.io.to("r1").timeout(3000).emitWithAck("question", { q: 42 }));
await step("disconnect-sockets", 1, () => A.io.in("r3").disconnectSockets(true));

if (!sharded) {
  const emitter = new Emitter(A.pub);
  await step("emitter-room", 1, () => emitter.to("r1").emit("news", { from: "emitter" }));
  await step("emitter-except-binary", 1, () =>
    emitter.except("r3").emit("bin", { data: Buffer.from([0, 1, 2, 253, 254, 255]) }));
  await step("emitter-namespace", 1, () => emitter.of("/chat").to("lobby").volatile.emit("hi", 1));
  await step("emitter-sockets-join", 1, () => emitter.in("r1").socketsJoin("r4"));
  await step("emitter-sockets-leave", 1, () => emitter.in("r1").socketsLeave(["r4", "r5"]));
  await step("emitter-disconnect-sockets", 1, () => emitter.in("r1").disconnectSockets());
  await step("emitter-server-side-emit", 1, () => emitter.serverSideEmit("hello", "from emitter"));
}

// -- write the fixtures ---------------------------------------------------------------------------

function plain(value) {
  if (Buffer.isBuffer(value)) return { $bin: value.toString("hex") };
  if (value instanceof Date) return { $date: value.toISOString() };
  if (Array.isArray(value)) return value.map(plain);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  }
  return value;
}

const counts = {};
const index = records.map((record, i) => {
  counts[record.label] = (counts[record.label] ?? 0) + 1;
  const file = `${String(i + 1).padStart(2, "0")}-${record.label}-${counts[record.label]}.bin`;
  writeFileSync(join(out, file), record.message);
  const json = record.message[0] === 0x7b;
  const decoded = json ? JSON.parse(record.message.toString()) : notepack.decode(record.message);
  return { file, channel: record.channel, encoding: json ? "json" : "msgpack", decoded: plain(decoded) };
});
writeFileSync(join(out, "index.json"), JSON.stringify(index, null, 1) + "\n");
process.stdout.write(JSON.stringify({ event: "done", messages: index.length }) + "\n");

for (const socket of [a1, b1, b2]) socket.disconnect();
for (const n of [A, B]) {
  n.io.close();
  await Promise.all([n.pub.quit(), n.sub.quit()]);
}
await recorder.quit();
monitorSocket?.destroy();
