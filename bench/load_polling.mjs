// Load generator: echo with ack over raw Engine.IO v4 long-polling (no client library).
// Usage: node load_polling.mjs <url> [sessions=50] [seconds=5]
// Each session: handshake GET, POST the Socket.IO CONNECT, GET its answer; then, in a loop,
// POST an event with an ack id and GET until the ack arrives.  One request in flight per
// session, over a keep-alive agent.  Prints one JSON line: {"acks", "seconds", "rate"}.
import http from "node:http";
import { timed } from "./load_timed.mjs";

const [url, nSessions = "50", seconds = "5"] = process.argv.slice(2);
const N = Number(nSessions), D = Number(seconds) * 1000;
const base = new URL(url);
const path = "/socket.io/?EIO=4&transport=polling";
const agent = new http.Agent({ keepAlive: true, maxSockets: N * 2 });
const SEP = "\x1e";

function request(method, target, body) {
  return new Promise((resolve, reject) => {
    const headers = body === undefined ? {} :
      { "content-type": "text/plain;charset=UTF-8", "content-length": Buffer.byteLength(body) };
    const req = http.request({ host: base.hostname, port: base.port, method, path: target,
      agent, headers }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (c) => { data += c; });
      res.on("end", () => res.statusCode === 200 ? resolve(data)
        : reject(new Error(`${method} ${res.statusCode} ${data}`)));
    });
    req.on("error", reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const payload = JSON.stringify({ text: "hello world, this is a benchmark message", n: 42 });
let acks = 0, running = true;

async function session() {
  const open = await request("GET", path);
  const sid = JSON.parse(open.slice(1)).sid;
  const target = `${path}&sid=${sid}`;
  await request("POST", target, "40");
  let got = await request("GET", target);
  while (!got.split(SEP).some((p) => p.startsWith("40"))) got = await request("GET", target);
  let id = 0;
  while (running) {
    id++;
    await request("POST", target, `42${id}["echo",${payload}]`);
    const want = `43${id}[`;
    for (;;) {
      const packets = (await request("GET", target)).split(SEP);
      for (const p of packets) if (p === "2") await request("POST", target, "3");
      if (packets.some((p) => p.startsWith(want))) break;
    }
    acks++;
  }
  await request("POST", target, "1").catch(() => {});
}

timed("acks", D, () => Array.from({ length: N }, session), () => acks,
      () => { running = false; });
