// Load generator: Engine.IO handshake + Socket.IO CONNECT per second over raw WebSocket.
// Usage: node load_connect.mjs <url> [parallel=20] [seconds=5]
// Each of `parallel` loops opens a WebSocket (transport=websocket, no polling first), waits
// for the open packet, sends CONNECT ("40"), waits for the CONNECT answer, closes, repeats.
// Prints one JSON line: {"connects", "seconds", "rate"}.
// The WebSocket client is the minimal one of rawws.mjs (cheaper than the server it measures).
import { RawWebSocket, textFrame } from "./rawws.mjs";
import { timed } from "./load_timed.mjs";

const [url, parallel = "20", seconds = "5"] = process.argv.slice(2);
const P = Number(parallel), D = Number(seconds) * 1000;
const { hostname, port } = new URL(url);
const PATH = "/socket.io/?EIO=4&transport=websocket";
const CONNECT = textFrame("40");
let connects = 0, running = true;

function once() {
  return new Promise((resolve, reject) => {
    const ws = new RawWebSocket(hostname, Number(port), PATH);
    ws.onmessage = (data) => {
      if (data[0] === 0x30) ws.send(CONNECT);  // "0": the open packet
      else if (data[0] === 0x34 && data[1] === 0x30) { connects++; ws.close(); resolve(); }
    };
    ws.onerror = reject;
  });
}

async function loop() { while (running) await once(); }

timed("connects", D, () => Array.from({ length: P }, loop), () => connects,
      () => { running = false; });
