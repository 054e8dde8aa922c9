// A check of rawws.mjs (the load generator's WebSocket client) against a scripted server on
// loopback that sends its answers in awkward pieces.  Prints one JSON line per case,
// {"case", "ok", "detail"}, and exits 1 if any case failed.  Run by tests/test_bench_smoke.py.
//
// Usage: node rawws_check.mjs
import crypto from "node:crypto";
import net from "node:net";
import { ACCEPT, KEY, RawWebSocket } from "./rawws.mjs";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// A server frame (never masked): `op`, `payload` (Buffer or string), FIN unless `more`.
function serverFrame(op, payload, more = false) {
  const body = Buffer.from(payload);
  const n = body.length;
  let head;
  if (n < 126) head = Buffer.from([0, n]);
  else if (n < 65536) { head = Buffer.alloc(4); head[1] = 126; head.writeUInt16BE(n, 2); }
  else { head = Buffer.alloc(10); head[1] = 127; head.writeUInt32BE(0, 2); head.writeUInt32BE(n, 6); }
  head[0] = (more ? 0 : 0x80) | op;
  return Buffer.concat([head, body]);
}

// The client frames in `bytes`: [{op, fin, masked, key, payload}], payloads unmasked.
function clientFrames(bytes) {
  const frames = [];
  let off = 0;
  while (off < bytes.length) {
    const b0 = bytes[off], b1 = bytes[off + 1];
    let n = b1 & 0x7f, at = off + 2;
    if (n === 126) { n = bytes.readUInt16BE(at); at += 2; }
    else if (n === 127) { n = Number(bytes.readBigUInt64BE(at)); at += 8; }
    const masked = (b1 & 0x80) !== 0;
    const key = masked ? bytes.subarray(at, at + 4) : Buffer.alloc(4);
    if (masked) at += 4;
    const payload = Buffer.from(bytes.subarray(at, at + n)).map((b, i) => b ^ key[i & 3]);
    frames.push({ op: b0 & 0x0f, fin: (b0 & 0x80) !== 0, masked, key: Buffer.from(key), payload });
    off = at + n;
  }
  return frames;
}

// Write `bytes` to `socket` one piece per turn of the event loop: `size(i)` bytes from i.
function dribble(socket, bytes, size) {
  let i = 0;
  const step = () => {
    if (i >= bytes.length || socket.destroyed) return;
    const n = size(i);
    socket.write(bytes.subarray(i, i + n));
    i += n;
    setImmediate(step);
  };
  step();
}

// Run one case: a server on loopback calling `serve(socket, request)` once the client's
// request is complete, and a client whose events are collected; resolves with what happened.
function scenario(serve, clientOps = () => {}) {
  return new Promise((resolve) => {
    const seen = { request: "", fromClient: Buffer.alloc(0), messages: [], error: null,
                   closing: null };
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);  // each piece its own segment: no coalescing by Nagle
      let head = Buffer.alloc(0);
      socket.on("data", (data) => {
        if (!seen.request) {
          head = Buffer.concat([head, data]);
          const end = head.indexOf("\r\n\r\n");
          if (end < 0) return;
          seen.request = head.toString("latin1", 0, end);
          seen.fromClient = head.subarray(end + 4);
          serve(socket, seen.request);
        } else {
          seen.fromClient = Buffer.concat([seen.fromClient, data]);
        }
      });
      socket.on("error", () => {});
      socket.on("end", () => socket.end());
    });
    server.listen(0, "127.0.0.1", () => {
      const ws = new RawWebSocket("127.0.0.1", server.address().port, "/socket.io/?EIO=4");
      ws.onmessage = (data, isBinary) => {
        seen.messages.push({ isBinary, data: Buffer.from(data) });
        clientOps(ws, data, isBinary);
      };
      ws.onerror = (e) => { seen.error = e.message; };
      // A case that has not ended within 5 s fails (the client hangs, or missed a close).
      const timer = setTimeout(() => { seen.error ??= "timed out"; ws.terminate(); }, 5000);
      ws.onclose = () => {
        clearTimeout(timer);
        seen.closing = seen.error === "timed out" ? null : ws.closing;
        server.close();
        resolve(seen);
      };
    });
  });
}

function answer(key, extra = "") {
  const accept = crypto.createHash("sha1").update(key + GUID).digest("base64");
  return Buffer.from("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" +
                     `Connection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${extra}\r\n`);
}

const keyOf = (request) => /\r\nSec-WebSocket-Key: ([^\r]*)/i.exec(request)[1];
const results = [];
function check(name, ok, detail) {
  results.push(ok);
  console.log(JSON.stringify({ case: name, ok, detail }));
}

// 1. Everything a benchmark server sends, split across reads and packed into reads.
{
  const big = crypto.randomBytes(70000), mid = crypto.randomBytes(300);
  const stream = Buffer.concat([
    serverFrame(1, "0{}"), serverFrame(9, "pp"), serverFrame(2, big), serverFrame(1, "hello"),
    serverFrame(2, mid), serverFrame(1, "ab", true), serverFrame(10, ""),
    serverFrame(0, "cd", true), serverFrame(0, "ef"), serverFrame(1, "x"), serverFrame(1, "y"),
    serverFrame(8, Buffer.from([0x03, 0xe8]))]);
  const seen = await scenario((socket, request) => {
    // Pieces of 1 to 7 bytes, but 16 KiB pieces through the 70000-byte frame and one piece
    // with its end, the next frame and the start of the one after (several frames in a read).
    const all = Buffer.concat([answer(keyOf(request)), stream]);
    const end = all.indexOf("hello") + 20;
    dribble(socket, all, (i) => (i < 200 || i >= end ? 1 + (i % 7)
      : i < end - 10000 ? Math.min(16384, end - 10000 - i) : end - i));
  }, (ws, data, isBinary) => { if (!isBinary && data.toString() === "0{}") ws.send("40"); });
  const lines = seen.request.split("\r\n");
  const header = (name) => lines.find((l) => l.toLowerCase().startsWith(name + ":"))
    ?.slice(name.length + 1).trim();
  const key = Buffer.from(header("sec-websocket-key") ?? "", "base64");
  check("request", lines[0] === "GET /socket.io/?EIO=4 HTTP/1.1" && header("host") !== undefined
    && header("upgrade") === "websocket" && header("connection") === "Upgrade"
    && key.length === 16 && header("sec-websocket-key") === KEY
    && header("sec-websocket-version") === "13"
    && ACCEPT === crypto.createHash("sha1").update(KEY + GUID).digest("base64"), seen.request);
  const got = seen.messages.map((m) => [m.isBinary, m.isBinary ? m.data.length : m.data.toString()]);
  const want = [[false, "0{}"], [true, 70000], [false, "hello"], [true, 300], [false, "abcdef"],
                [false, "x"], [false, "y"]];
  check("messages", JSON.stringify(got) === JSON.stringify(want)
    && seen.messages[1].data.equals(big) && seen.messages[3].data.equals(mid),
    JSON.stringify(got));
  const sent = clientFrames(seen.fromClient);
  const summary = sent.map((f) => [f.op, f.fin, f.masked, f.payload.toString("latin1")]);
  check("client frames", JSON.stringify(summary) === JSON.stringify(
    [[1, true, true, "40"], [10, true, true, "pp"], [8, true, true, "\x03\xe8"]])
    && sent.every((f) => f.key.readUInt32BE(0) !== 0), JSON.stringify(summary));
  check("closed after the close handshake", seen.error === null && seen.closing === false,
    JSON.stringify({ error: seen.error, closing: seen.closing }));
}

// 2. close() from the client: a close frame, then the end once the server's close is back.
{
  const seen = await scenario((socket, request) => {
    socket.write(Buffer.concat([answer(keyOf(request)), serverFrame(1, "0{}")]));
    socket.on("data", (data) => {
      if (clientFrames(data).some((f) => f.op === 8)) socket.write(serverFrame(8, "\x03\xe8"));
    });
  }, (ws) => ws.close());
  const sent = clientFrames(seen.fromClient).map((f) => [f.op, f.payload.toString("latin1")]);
  check("client close", JSON.stringify(sent) === JSON.stringify([[8, "\x03\xe8"]])
    && seen.closing === true && seen.error === null, JSON.stringify({ sent, ...seen, fromClient: 0 }));
}

// 3. Refusals: each one an error, and the connection closed.
const refusals = {
  "not 101": (socket) => socket.write("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
  "wrong accept": (socket) => socket.write(answer("x".repeat(24))),
  "extension answered": (socket, request) => socket.write(answer(keyOf(request),
    "Sec-WebSocket-Extensions: permessage-deflate\r\n")),
  "masked server frame": (socket, request) => socket.write(Buffer.concat([
    answer(keyOf(request)), Buffer.from([0x81, 0x82, 1, 2, 3, 4, 0x31, 0x30])])),
  "reserved bit": (socket, request) => socket.write(Buffer.concat([
    answer(keyOf(request)), Buffer.from([0xc1, 0x01, 0x30])])),
  "fragmented ping": (socket, request) => socket.write(Buffer.concat([
    answer(keyOf(request)), Buffer.from([0x09, 0x00])])),
  "continuation without a start": (socket, request) => socket.write(Buffer.concat([
    answer(keyOf(request)), serverFrame(0, "a")])),
};
for (const [name, serve] of Object.entries(refusals)) {
  const seen = await scenario(serve);
  check(`refused: ${name}`, seen.error !== null && seen.error !== "timed out"
    && seen.messages.length === 0, seen.error);
}

// 4. The server drops the TCP connection: onclose, not closing.
{
  const seen = await scenario((socket, request) => {
    socket.write(Buffer.concat([answer(keyOf(request)), serverFrame(1, "0{}")]));
    setTimeout(() => socket.destroy(), 10);
  });
  check("dropped by the server", seen.closing === false && seen.messages.length === 1,
    JSON.stringify({ closing: seen.closing, error: seen.error }));
}

process.exit(results.every(Boolean) ? 0 : 1);
