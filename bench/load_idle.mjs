// Idle connections: open N WebSocket clients, report "ready", wait for stdin to close.
// Usage: node load_idle.mjs <url> [clients=1000]
import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const { io } = require(process.env.NODE_PATH ? `${process.env.NODE_PATH}/socket.io-client` : "socket.io-client");

const [url, nClients = "1000"] = process.argv.slice(2);
const N = Number(nClients);
const sockets = [];
for (let i = 0; i < N; i += 100) {
  await Promise.all(Array.from({ length: Math.min(100, N - i) }, () => new Promise((resolve, reject) => {
    const s = io(url, { transports: ["websocket"], forceNew: true, reconnection: false });
    s.once("connect", resolve); s.once("connect_error", reject);
    sockets.push(s);
  })));
}
console.log("ready");
process.stdin.on("end", () => { for (const s of sockets) s.close(); process.exit(0); });
process.stdin.resume();
