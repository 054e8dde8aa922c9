// Broadcast load: N WebSocket clients; one asks the server for bursts of broadcasts to all.
// Usage: node load_broadcast.mjs <url> [clients=200] [burst=200] [rounds=10]
// Each round: client 0 emits "burst" (n); the server emits "news" n times to every client;
// the round ends when every client got all n.  Prints {"deliveries", "seconds", "rate"}.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { io } = require(process.env.NODE_PATH ? `${process.env.NODE_PATH}/socket.io-client` : "socket.io-client");

const [url, nClients = "200", burst = "200", rounds = "10"] = process.argv.slice(2);
const N = Number(nClients), B = Number(burst), R = Number(rounds);
const sockets = [];
for (let i = 0; i < N; i += 50) {
  await Promise.all(Array.from({ length: Math.min(50, N - i) }, () => new Promise((resolve, reject) => {
    const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
    s.once("connect", resolve); s.once("connect_error", reject);
    sockets.push(s);
  })));
}
let received = 0, target = 0, done = null;
for (const s of sockets) s.on("news", () => { if (++received === target && done) done(); });
let elapsed = 0;
for (let r = 0; r < R; r++) {
  received = 0; target = N * B;
  const finished = new Promise((resolve) => { done = resolve; });
  const start = process.hrtime.bigint();
  sockets[0].emit("burst", B);
  await finished;
  elapsed += Number(process.hrtime.bigint() - start) / 1e9;
}
const deliveries = N * B * R;
console.log(JSON.stringify({ deliveries, seconds: elapsed, rate: Math.round(deliveries / elapsed) }));
for (const s of sockets) s.close();
process.exit(0);
