// Load generator: N WebSocket clients, each keeping K emits-with-ack in flight, for D seconds.
// Usage: node load_ack.mjs <url> [clients=50] [inflight=10] [seconds=5]
// Prints one JSON line: {"acks": total, "seconds": measured, "rate": acks per second}.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { io } = require(process.env.NODE_PATH ? `${process.env.NODE_PATH}/socket.io-client` : "socket.io-client");

const [url, nClients = "50", inflight = "10", seconds = "5"] = process.argv.slice(2);
const N = Number(nClients), K = Number(inflight), D = Number(seconds) * 1000;
const sockets = [];
await Promise.all(Array.from({ length: N }, () => new Promise((resolve, reject) => {
  const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
  s.once("connect", resolve); s.once("connect_error", reject);
  sockets.push(s);
})));
let acks = 0, running = true;
const payload = { text: "hello world, this is a benchmark message", n: 42 };
function loop(s) { if (!running) return; s.emit("echo", payload, () => { acks++; loop(s); }); }
const start = Date.now();
for (const s of sockets) for (let i = 0; i < K; i++) loop(s);
setTimeout(() => {
  running = false;
  const secs = (Date.now() - start) / 1000;
  console.log(JSON.stringify({ acks, seconds: secs, rate: Math.round(acks / secs) }));
  for (const s of sockets) s.close();
  process.exit(0);
}, D);
