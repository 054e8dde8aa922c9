// Engine.IO client scenario driver for the txsio interop tests.
//
//   node eio_client.mjs <scenario> <url> [json-options]
//
// <url> is the server's base URL (http://127.0.0.1:PORT); the Engine.IO path is
// options.path (default "/engine.io"). Prints one JSON object per line on stdout, one per
// event, and exits by itself:
//
//   {"event":"handshake","sid":...,"upgrades":[...],"pingInterval":300,"pingTimeout":200}
//   {"event":"open","transport":"polling","sid":...,"protocol":4}
//   {"event":"message","data":"text","binary":false,"transport":"websocket"}
//   {"event":"message","data":[0,1,255],"binary":true,"transport":"polling"}
//   {"event":"upgrade","transport":"websocket"}
//   {"event":"close","reason":"transport close","description":...}
//   {"event":"timeout"}                      (the deadline passed; exit code 3)
//
// Exit codes: 0 the scenario ran to its end, 1 it went wrong (an unexpected close or
// error, reported before exiting), 2 bad usage, 3 deadline.
//
// Scenarios (client: options.client "v6" (default) = engine.io-client 6, "v3" = 3.x):
//   polling | websocket | upgrade   send options.messages and wait for every echo, then
//       close. "upgrade" starts on polling, sends the messages, waits for the upgrade to
//       WebSocket and sends them all again (so echoes are expected twice).
//   server-close   send "close-me" and report how the server closes the session
//       (options.transports, default ["polling"]).
//   idle           stay connected options.idleMs (default 3000) counting heartbeats, then
//       send "still-here" and wait for its echo (options.transports, default polling+ws).
//   silent         a raw client (ws / fetch, options.transport "websocket" or "polling",
//       options.eio 4 or 3) that opens a session and never answers a ping nor sends one;
//       reports the pings seen and how long after the handshake the server dropped it.
//   raw-close-me   a raw polling client (fetch) POSTs "close-me" while no GET is pending,
//       then polls until the close packet, reporting the messages it got on the way.
//   refused        expect the handshake to fail; reports the client's error and close, and
//       the status and body of a plain polling handshake request with the same EIO.
//
// Messages are given as options.messages: [{"text": "..."} | {"bytes": [0, 1, ...]}].
import { createRequire } from "node:module";
import { Socket as SocketV6 } from "engine.io-client";
import WebSocket from "ws";
import { errorText } from "./sio_json.mjs";

const require = createRequire(import.meta.url);
const SocketV3 = require("engine.io-client-v3");

const DEFAULT_MESSAGES = [
  { text: "hello" },
  { text: "ünïcödé ✓ 😀 €" },
  { bytes: [0, 1, 2, 3, 253, 254, 255] },
  { bytes: Array.from({ length: 2000 }, (_, i) => i % 256) },
];

const [scenario, baseUrl, optionsJson] = process.argv.slice(2);
if (!scenario || !baseUrl) {
  process.stderr.write("usage: node eio_client.mjs <scenario> <url> [json-options]\n");
  process.exit(2);
}
const options = JSON.parse(optionsJson || "{}");
const path = options.path ?? "/engine.io";
const started = Date.now();
let finished = false;

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

// Ends the scenario. Node then exits by itself once in-flight work is done (e.g. the POST
// carrying a polling client's close packet, which an immediate exit would lose); a backstop
// forces the exit if some handle lingers.
function finish(code) {
  if (finished) return;
  finished = true;
  clearTimeout(deadline);
  process.exitCode = code;
  setTimeout(() => process.exit(code), 2000).unref();
}

const deadline = setTimeout(() => {
  emit({ event: "timeout", after: Date.now() - started });
  finished = true;
  // Exit only once stdout is flushed: a pipe to the parent may be asynchronous.
  process.stdout.write("", () => process.exit(3));
}, options.deadline ?? 10000);

function toWire(message) {
  return "text" in message ? message.text : Buffer.from(message.bytes);
}

function describe(data) {
  if (typeof data === "string") return { data, binary: false };
  return { data: Array.from(new Uint8Array(data.buffer ?? data, data.byteOffset ?? 0, data.byteLength)), binary: true };
}

function errorDescription(err) {
  if (err && typeof err === "object" && "description" in err) {
    const d = err.description;
    if (typeof d === "number" || typeof d === "string") return d;
    if (d && typeof d === "object" && "message" in d) return d.message;
    return d === undefined ? null : String(d);
  }
  return null;
}

function makeSocket(transports, extra = {}) {
  const Socket = options.client === "v3" ? SocketV3 : SocketV6;
  const socket = new Socket(baseUrl, {
    path,
    transports,
    upgrade: options.upgrade ?? true,
    forceBase64: options.forceBase64 ?? false,
    ...extra,
  });
  if (options.client !== "v3") socket.binaryType = "nodebuffer";
  socket.on("handshake", (data) => {
    emit({ event: "handshake", ...data });
  });
  socket.on("open", () => {
    emit({
      event: "open",
      transport: socket.transport.name,
      sid: socket.id,
      protocol: options.client === "v3" ? 3 : 4,
    });
  });
  socket.on("upgrade", (transport) => {
    emit({ event: "upgrade", transport: transport.name });
  });
  socket.on("upgradeError", (err) => {
    emit({ event: "upgradeError", message: errorText(err) });
  });
  return socket;
}

function onCloseReport(socket, expected) {
  socket.on("close", (reason, description) => {
    emit({
      event: "close",
      reason,
      description: errorText(description),
      elapsed: Date.now() - started,
    });
    finish(expected() ? 0 : 1);
  });
}

function echo(transports, sendTwice) {
  const messages = options.messages ?? DEFAULT_MESSAGES;
  const expected = messages.length * (sendTwice ? 2 : 1);
  let received = 0;
  let upgraded = !sendTwice;
  let closing = false;
  const socket = makeSocket(transports);
  const sendAll = () => messages.forEach((m) => socket.send(toWire(m)));
  const maybeDone = () => {
    if (!closing && received >= expected && upgraded) {
      closing = true;
      socket.close();
    }
  };
  socket.on("open", sendAll);
  socket.on("upgrade", () => {
    upgraded = true;
    sendAll();
    maybeDone();
  });
  socket.on("message", (data) => {
    received += 1;
    emit({ event: "message", ...describe(data), transport: socket.transport.name });
    maybeDone();
  });
  socket.on("error", (err) => emit({ event: "error", message: errorText(err) }));
  onCloseReport(socket, () => closing);
}

function serverClose() {
  let echoed = false;
  const socket = makeSocket(options.transports ?? ["polling"]);
  socket.on("open", () => socket.send("close-me"));
  socket.on("message", (data) => {
    echoed = echoed || data === "close-me";
    emit({ event: "message", ...describe(data), transport: socket.transport.name });
  });
  socket.on("error", (err) => emit({ event: "error", message: errorText(err) }));
  onCloseReport(socket, () => echoed);
}

function idle() {
  const idleMs = options.idleMs ?? 3000;
  let pings = 0;
  let pongs = 0;
  let closing = false;
  let openedAt = null;
  const socket = makeSocket(options.transports ?? ["polling", "websocket"]);
  // v4: the server pings and the client emits "ping"; v3: the client pings and emits "pong"
  // when the server answers.
  socket.on("ping", () => {
    pings += 1;
  });
  socket.on("pong", () => {
    pongs += 1;
  });
  socket.on("open", () => {
    openedAt = Date.now();
    setTimeout(() => {
      emit({
        event: "idle-done",
        elapsed: Date.now() - openedAt,
        pings,
        pongs,
        transport: socket.transport.name,
      });
      socket.send("still-here");
    }, idleMs);
  });
  socket.on("message", (data) => {
    emit({ event: "message", ...describe(data), transport: socket.transport.name });
    if (data === "still-here") {
      closing = true;
      socket.close();
    }
  });
  socket.on("error", (err) => emit({ event: "error", message: errorText(err) }));
  onCloseReport(socket, () => closing);
}

// Decodes a polling payload: v4 record-separated packets, v3 "length:packet" text records
// (lengths in UTF-16 code units, as JavaScript counts).
function decodePayload(body, eio) {
  if (eio === 4) return body.split("\x1e");
  const packets = [];
  let i = 0;
  while (i < body.length) {
    const colon = body.indexOf(":", i);
    if (colon < 0) throw new Error(`bad v3 payload: ${JSON.stringify(body)}`);
    const length = Number(body.slice(i, colon));
    packets.push(body.slice(colon + 1, colon + 1 + length));
    i = colon + 1 + length;
  }
  return packets;
}

function silent() {
  const eio = options.eio ?? 4;
  const transport = options.transport ?? "websocket";
  const base = `${baseUrl.replace(/\/$/, "")}${path}/?EIO=${eio}&transport=${transport}`;
  let openedAt = null;
  let pings = 0;
  const packet = (p) => {
    if (p.startsWith("0")) {
      openedAt = Date.now();
      const handshake = JSON.parse(p.slice(1));
      emit({ event: "open", transport, sid: handshake.sid, protocol: eio, ...handshake });
      return handshake.sid;
    }
    if (p.startsWith("2")) {
      pings += 1;
      emit({ event: "ping", elapsed: openedAt === null ? null : Date.now() - openedAt });
    }
    return null;
  };
  const dropped = (reason, extra = {}) => {
    emit({
      event: "close",
      reason,
      elapsed: openedAt === null ? null : Date.now() - openedAt,
      pings,
      ...extra,
    });
    finish(openedAt === null ? 1 : 0);
  };
  if (transport === "websocket") {
    const ws = new WebSocket(base.replace(/^http/, "ws"));
    ws.on("message", (data, isBinary) => {
      if (!isBinary) packet(data.toString());
    });
    ws.on("error", (err) => emit({ event: "error", message: errorText(err) }));
    ws.on("close", (code) => dropped("transport close", { code }));
    return;
  }
  (async () => {
    const first = await fetch(base);
    const sid = decodePayload(await first.text(), eio).map(packet).find((s) => s);
    for (;;) {
      let response;
      try {
        response = await fetch(`${base}&sid=${encodeURIComponent(sid)}`);
      } catch (err) {
        dropped("network error", { message: errorText(err) });
        return;
      }
      const body = await response.text();
      if (response.status !== 200) {
        dropped("http error", { status: response.status, body });
        return;
      }
      const packets = decodePayload(body, eio);
      packets.forEach(packet);
      if (packets.some((p) => p.startsWith("1"))) {
        dropped("close packet");
        return;
      }
    }
  })().catch((err) => {
    emit({ event: "error", message: errorText(err) });
    finish(1);
  });
}

// A raw polling client that sends "close-me" while no GET is pending, then polls: the
// echo must still come before the close packet.
async function rawCloseMe() {
  const base = `${baseUrl.replace(/\/$/, "")}${path}/?EIO=4&transport=polling`;
  const first = await fetch(base);
  const handshake = JSON.parse((await first.text()).slice(1));
  emit({ event: "open", transport: "polling", sid: handshake.sid, protocol: 4 });
  const url = `${base}&sid=${encodeURIComponent(handshake.sid)}`;
  const posted = await fetch(url, { method: "POST", body: "4close-me" });
  await posted.text();
  for (let polls = 0; polls < 10; polls++) {
    const response = await fetch(url);
    const body = await response.text();
    if (response.status !== 200) {
      emit({ event: "close", reason: "http error", status: response.status, body });
      finish(1);
      return;
    }
    for (const p of body.split("\x1e")) {
      if (p.startsWith("4")) emit({ event: "message", data: p.slice(1), binary: false, transport: "polling" });
      if (p.startsWith("1")) {
        emit({ event: "close", reason: "close packet" });
        finish(0);
        return;
      }
    }
  }
  emit({ event: "error", message: "no close packet after 10 polls" });
  finish(1);
}

async function refused() {
  const eio = options.client === "v3" ? 3 : 4;
  const transports = options.transports ?? ["polling"];
  // A plain handshake request first, to report the HTTP answer itself.
  const response = await fetch(`${baseUrl.replace(/\/$/, "")}${path}/?EIO=${eio}&transport=polling`);
  const body = await response.text();
  let json = null;
  try {
    json = JSON.parse(body);
  } catch {
    // not JSON: reported as text
  }
  emit({ event: "http", status: response.status, body: json ?? body });
  let errored = false;
  const socket = makeSocket(transports);
  socket.on("error", (err) => {
    errored = true;
    emit({ event: "error", message: errorText(err), description: errorDescription(err) });
  });
  socket.on("message", (data) => emit({ event: "message", ...describe(data) }));
  onCloseReport(socket, () => errored);
}

switch (scenario) {
  case "polling":
    echo(["polling"], false);
    break;
  case "websocket":
    echo(["websocket"], false);
    break;
  case "upgrade":
    echo(["polling", "websocket"], true);
    break;
  case "server-close":
    serverClose();
    break;
  case "idle":
    idle();
    break;
  case "silent":
    silent();
    break;
  case "raw-close-me":
    rawCloseMe().catch((err) => {
      emit({ event: "error", message: errorText(err) });
      finish(1);
    });
    break;
  case "refused":
    refused().catch((err) => {
      emit({ event: "error", message: errorText(err) });
      finish(1);
    });
    break;
  default:
    process.stderr.write(`unknown scenario: ${scenario}\n`);
    process.exit(2);
}
