// Load generator: Engine.IO handshake + Socket.IO CONNECT per second over raw WebSocket.
// Usage: node load_connect.mjs <url> [parallel=20] [seconds=5]
// Each of `parallel` loops opens a WebSocket (transport=websocket, no polling first), waits
// for the open packet, sends CONNECT ("40"), waits for the CONNECT answer, closes, repeats.
// Prints one JSON line: {"connects", "seconds", "rate"}.
import { createRequire } from "node:module";
import { timed } from "./load_timed.mjs";
const require = createRequire(import.meta.url);
const WebSocket = require(process.env.NODE_PATH ? `${process.env.NODE_PATH}/ws` : "ws");

const [url, parallel = "20", seconds = "5"] = process.argv.slice(2);
const P = Number(parallel), D = Number(seconds) * 1000;
const target = `${url.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`;
let connects = 0, running = true;

function once() {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(target, { perMessageDeflate: false });
    ws.on("message", (data) => {
      const text = data.toString();
      if (text[0] === "0") ws.send("40");
      else if (text.startsWith("40")) { connects++; ws.close(); resolve(); }
    });
    ws.on("error", reject);
  });
}

async function loop() { while (running) await once(); }

timed("connects", D, () => Array.from({ length: P }, loop), () => connects,
      () => { running = false; });
