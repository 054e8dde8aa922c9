// Fan-out rounds over raw Engine.IO framing (ws, not the socket.io client: cheaper than the
// server it measures).
// Usage: node fanout_load.mjs <ws-url> [clients=1000] [seconds=5]
// Connects N WebSocket clients to the Socket.IO namespace "/", prints "connected", waits for a
// line on stdin, then runs rounds for the given seconds: client 0 emits "burst" (1); the server
// emits "news" once to every client; the round ends when all N got it.  Prints
// {"rounds", "deliveries", "seconds", "rate"} and exits.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
const require = createRequire(import.meta.url);
const WebSocket = require(process.env.NODE_PATH ? `${process.env.NODE_PATH}/ws` : "ws");

const [url, nClients = "1000", seconds = "5"] = process.argv.slice(2);
const N = Number(nClients), S = Number(seconds);
let received = 0, target = 0, done = null;

function connect() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    ws.on("error", reject);
    ws.on("message", (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString();
      if (text.startsWith("42")) {
        if (++received === target && done) done();
      } else if (text === "2") {
        ws.send("3");
      } else if (text.startsWith("0")) {
        ws.send("40");
      } else if (text.startsWith("40")) {
        resolve(ws);
      }
    });
  });
}

const sockets = [];
for (let i = 0; i < N; i += 50) {
  sockets.push(...await Promise.all(Array.from({ length: Math.min(50, N - i) }, connect)));
}
console.log("connected");
const lines = createInterface({ input: process.stdin });
await new Promise((resolve) => lines.once("line", resolve));

let rounds = 0;
const start = process.hrtime.bigint();
const end = start + BigInt(Math.round(S * 1e9));
while (process.hrtime.bigint() < end) {
  received = 0; target = N;
  const finished = new Promise((resolve) => { done = resolve; });
  sockets[0].send('42["burst",1]');
  await finished;
  rounds++;
}
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
const deliveries = rounds * N;
console.log(JSON.stringify({ rounds, deliveries, seconds: elapsed, rate: Math.round(deliveries / elapsed) }));
for (const s of sockets) s.terminate();
process.exit(0);
