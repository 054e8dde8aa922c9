// Fan-out rounds over raw Engine.IO framing (the minimal WebSocket client of rawws.mjs, not
// the socket.io client: cheaper than the server it measures).
// Usage: node fanout_load.mjs <ws-url> [clients=1000] [seconds=5]
// Connects N WebSocket clients to the Socket.IO namespace "/", prints "connected", waits for a
// line on stdin, then runs rounds for the given seconds: client 0 emits "burst" (1); the server
// emits "news" once to every client; the round ends when all N got it.  Prints
// {"rounds", "deliveries", "seconds", "rate"} and exits.
import { createInterface } from "node:readline";
import { RawWebSocket, textFrame } from "./rawws.mjs";

const [url, nClients = "1000", seconds = "5"] = process.argv.slice(2);
const N = Number(nClients), S = Number(seconds);
const { hostname, port, pathname, search } = new URL(url);
const PONG = textFrame("3"), CONNECT = textFrame("40"), BURST = textFrame('42["burst",1]');
let received = 0, target = 0, done = null;

function connect() {
  return new Promise((resolve, reject) => {
    const ws = new RawWebSocket(hostname, Number(port), pathname + search);
    ws.onerror = reject;
    ws.onclose = () => { if (!ws.closing) { console.error("closed by the server"); process.exit(1); } };
    ws.onmessage = (data, isBinary) => {
      if (isBinary) return;
      const text = data.toString();
      if (text.startsWith("42")) {
        if (++received === target && done) done();
      } else if (text === "2") {
        ws.send(PONG);
      } else if (text.startsWith("0")) {
        ws.send(CONNECT);
      } else if (text.startsWith("40")) {
        resolve(ws);
      }
    };
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
  sockets[0].send(BURST);
  await finished;
  rounds++;
}
const elapsed = Number(process.hrtime.bigint() - start) / 1e9;
const deliveries = rounds * N;
console.log(JSON.stringify({ rounds, deliveries, seconds: elapsed, rate: Math.round(deliveries / elapsed) }));
for (const s of sockets) s.terminate();
process.exit(0);
