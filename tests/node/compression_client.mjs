// Compression probe for the txsio tests: what a real client sees on the wire.
//
//   node compression_client.mjs <scenario> <url> [json-options]
//
// <url> is the server's base URL (http://127.0.0.1:PORT), the Socket.IO path /socket.io.
// Prints one JSON object per line on stdout and exits by itself (options.deadline, ms,
// default 10000, bounds the run; exit code 3 and {"event":"timeout"} when it passes).
//
// Scenarios:
//   ws        the `ws` package (permessage-deflate offered unless options.deflate is false)
//       speaks Engine.IO v4 / Socket.IO v5 by hand: it joins "/", sends each of
//       options.emits (a list of [event, ...args]) and waits for options.expect EVENT packets.
//       A tap on the TCP socket reads every frame the server writes:
//         {"event":"extensions","value":"permessage-deflate; ..."}    (as negotiated)
//         {"event":"frame","opcode":1,"rsv1":true,"length":123}       (each data frame)
//         {"event":"received","name":"big","size":5000}               (each EVENT packet)
//         {"event":"close","code":1009}                               (the server closed)
//       options.flood: send an event "big" whose argument is that many "a" after joining
//       (the client's own deflate makes it a small frame).
//   polling   socket.io-client 4.8 on its fetch() polling transport (undici: it sends
//       Accept-Encoding and decodes the body), which emits options.emits and waits for
//       options.expect events; each poll's response is reported:
//         {"event":"poll","method":"GET","status":200,"encoding":"gzip"}
//         {"event":"received","name":"big","size":5000}
//   Both end with {"event":"done"} (exit code 0); {"event":"error",...} is exit code 1.
//   server    (<url> is ignored) Node's reference: socket.io 4.8 on port 0 with the app of the
//       txsio tests (big(n, compress) and all(n, compress): n "a" back, with
//       socket.compress / io.compress) and options.server as its options
//       (perMessageDeflate, httpCompression, maxHttpBufferSize); prints
//       {"event":"listening","port":N} and runs until its stdin closes.
import http from "node:http";
import { Fetch } from "engine.io-client";
import { Server } from "socket.io";
import { io } from "socket.io-client";
import WebSocket from "ws";

const [scenario, base, rawOptions] = process.argv.slice(2);
const options = rawOptions ? JSON.parse(rawOptions) : {};
const out = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const finish = (code) => setTimeout(() => process.exit(code), 10);
if (scenario !== "server") {
  setTimeout(() => {
    out({ event: "timeout" });
    process.exit(3);
  }, options.deadline ?? 10000);
}

let received = 0;
function receive(name, value, end) {
  // Reports an event; the last one expected ends the run.
  out({ event: "received", name, size: typeof value === "string" ? value.length : -1 });
  if (++received === options.expect) {
    out({ event: "done" });
    end();
    finish(0);
  }
}

function tap(socket) {
  // Reads the server's frames from the TCP stream (unmasked, RFC 6455 section 5.2).
  let buffer = Buffer.alloc(0);
  socket.on("data", (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    for (;;) {
      if (buffer.length < 2) return;
      const opcode = buffer[0] & 0x0f;
      const rsv1 = (buffer[0] & 0x40) !== 0;
      let length = buffer[1] & 0x7f;
      let start = 2;
      if (length === 126) {
        if (buffer.length < 4) return;
        length = buffer.readUInt16BE(2);
        start = 4;
      } else if (length === 127) {
        if (buffer.length < 10) return;
        length = Number(buffer.readBigUInt64BE(2));
        start = 10;
      }
      if (buffer.length < start + length) return;
      if (opcode < 8) out({ event: "frame", opcode, rsv1, length });
      buffer = buffer.subarray(start + length);
    }
  });
}

function wsScenario() {
  const url = base.replace(/^http/, "ws") + "/socket.io/?EIO=4&transport=websocket";
  const ws = new WebSocket(url, { perMessageDeflate: options.deflate !== false });
  ws.on("open", () => {
    out({ event: "extensions", value: ws.extensions });
    tap(ws._socket);
  });
  ws.on("message", (data, isBinary) => {
    const text = isBinary ? null : data.toString();
    if (text === null) return;
    if (text.startsWith("0")) {
      ws.send("40");
    } else if (text === "2") {
      ws.send("3");
    } else if (text.startsWith("40")) {
      if (options.flood) ws.send('42["big","' + "a".repeat(options.flood) + '"]');
      for (const emit of options.emits ?? []) ws.send("42" + JSON.stringify(emit));
      if (!options.expect) return;
    } else if (text.startsWith("42")) {
      const [name, value] = JSON.parse(text.slice(2));
      receive(name, value, () => ws.close());
    }
  });
  ws.on("close", (code) => {
    out({ event: "close", code });
    if (!options.expect) {
      out({ event: "done" });
      finish(0);
    }
  });
  ws.on("error", (err) => out({ event: "ws-error", message: String(err.message) }));
}

function pollingScenario() {
  const fetch = globalThis.fetch;
  globalThis.fetch = async (resource, init) => {
    const response = await fetch(resource, init);
    out({
      event: "poll",
      method: init?.method ?? "GET",
      status: response.status,
      encoding: response.headers.get("content-encoding"),
    });
    return response;
  };
  const socket = io(base, { transports: [Fetch], forceNew: true });
  socket.on("connect", () => {
    for (const [name, ...args] of options.emits ?? []) socket.emit(name, ...args);
  });
  socket.onAny((name, value) => receive(name, value, () => socket.disconnect()));
  socket.on("connect_error", (err) => {
    out({ event: "error", message: String(err.message) });
    finish(1);
  });
}

function server() {
  const httpServer = http.createServer();
  const sio = new Server(httpServer, options.server ?? {});
  sio.on("connection", (socket) => {
    const big = (n) => "a".repeat(n);
    socket.on("big", (n, compress) => socket.compress(compress !== false).emit("big", big(n)));
    socket.on("all", (n, compress) => sio.compress(compress !== false).emit("big", big(n)));
  });
  httpServer.listen(0, "127.0.0.1", () =>
    out({ event: "listening", port: httpServer.address().port }),
  );
  process.stdin.on("end", () => process.exit(0));
  process.stdin.resume();
}

if (scenario === "ws") wsScenario();
else if (scenario === "server") server();
else if (scenario === "polling") pollingScenario();
else {
  out({ event: "error", message: `unknown scenario ${scenario}` });
  process.exit(2);
}
