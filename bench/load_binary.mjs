// Binary echo load: N WebSocket clients, each keeping K emits-with-ack of a binary attachment
// (S bytes) in flight for D seconds; the server acknowledges with the same bytes.
// Usage: node load_binary.mjs <url> [clients=20] [inflight=4] [seconds=5] [size=65536]
// Prints one JSON line: {"acks", "seconds", "rate" (acks/s), "mbps" (MB/s each way)}.
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { io } = require(process.env.NODE_PATH ? `${process.env.NODE_PATH}/socket.io-client` : "socket.io-client");

const [url, nClients = "20", inflight = "4", seconds = "5", size = "65536"] = process.argv.slice(2);
const N = Number(nClients), K = Number(inflight), D = Number(seconds) * 1000, S = Number(size);
const sockets = [];
await Promise.all(Array.from({ length: N }, () => new Promise((resolve, reject) => {
  const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
  s.once("connect", resolve); s.once("connect_error", reject);
  sockets.push(s);
})));
const payload = Buffer.alloc(S, 7);
let acks = 0, running = true;
function loop(s) {
  if (!running) return;
  s.emit("echo", payload, (back) => {
    if (!back || back.length !== S) { console.error("bad echo"); process.exit(1); }
    acks++; loop(s);
  });
}
const start = Date.now();
for (const s of sockets) for (let i = 0; i < K; i++) loop(s);
setTimeout(() => {
  running = false;
  const secs = (Date.now() - start) / 1000;
  console.log(JSON.stringify({ acks, seconds: secs, rate: Math.round(acks / secs),
                               mbps: Math.round(acks * S / secs / 1e6) }));
  for (const s of sockets) s.close();
  process.exit(0);
}, D);
