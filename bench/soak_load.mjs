// The soak's load: many WebSocket connections speaking raw Engine.IO 4 / Socket.IO 5 framing
// on npm's `ws` (cheaper per connection than socket.io-client). Started by bench/soak.py.
// Usage: node soak_load.mjs '<options as JSON>'   (see DEFAULTS)
//
// Kinds of connection: "steady" ones hold and answer everything; "churn" ones hold for a
// while, leave (a Socket.IO disconnect, a WebSocket close or a dropped TCP connection, in
// turn) and connect again; "slow" ones stop reading for a while, then read again. Every
// connection answers the heartbeat, the server's probes and polls, checks the tick sequence
// for gaps, and some emit echoes with an ack whose answers are counted.
//
// Driven by lines on stdin, each answered by one JSON line on stdout:
//   (at start) opens and closes a few connections, then prints {"event": "warm"};
//   go    -> opens the connections; {"event": "ready"} once each one has joined its rooms;
//   stats -> {"event": "stats", ...} (windowed figures since the previous stats);
//   stop  -> no more churn, pauses or emits; {"event": "stopped"} once every ack is answered
//            (or the grace period is over: what is still pending then is lost);
//   close -> closes every connection; {"event": "closed"} when all are closed, then exits.
import { createRequire } from "node:module";
import { createInterface } from "node:readline";

const require = createRequire(import.meta.url);
const WebSocket = require(process.env.NODE_PATH ? `${process.env.NODE_PATH}/ws` : "ws");

const DEFAULTS = {
  url: "ws://127.0.0.1:8080/socket.io/?EIO=4&transport=websocket",
  connections: 1000,
  churn: 0.1,             // fraction of the connections that churn
  slow: 0.02,             // fraction that are slow consumers
  rooms: 50,
  churnHold: [5, 30],     // seconds a churning connection stays before it leaves
  slowRead: [5, 15],      // seconds a slow consumer reads between two pauses
  slowPause: [2, 6],      // seconds it stops reading
  ackRate: 100,           // echoes with ack per second, over all connections
  rampConcurrency: 100,   // handshakes in flight while opening the connections
  warm: 10,
  grace: 40,              // seconds "stop" waits for the last acks
};
const opt = { ...DEFAULTS, ...JSON.parse(process.argv[2] || "{}") };
const between = ([lo, hi]) => (lo + Math.random() * (hi - lo)) * 1000;
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

const stats = {
  connects: 0, connectErrors: {}, churnCloses: 0, unexpectedCloses: {}, heartbeatMissed: 0,
  pings: 0, acksSent: 0, acksAnswered: 0, acksWrong: 0, acksUnknown: 0, lost: 0,
  lostOnDropped: 0,
  ticks: 0, tickGaps: 0, tickRepeats: 0, news: 0, bulkBytes: 0, probes: 0, polls: 0,
  pauses: 0, connectErrorsTotal: 0,
};
const win = { rttMax: 0, rttSum: 0, rttN: 0, lagMax: 0, lagSum: 0, lagN: 0 };
let stopping = false, closing = false, pingBound = 60000;

// The generator's own event-loop lag: a late generator answers heartbeats late too.
let lagDue = Date.now() + 50;
setInterval(() => {
  const now = Date.now(), lag = Math.max(0, now - lagDue);
  win.lagMax = Math.max(win.lagMax, lag); win.lagSum += lag; win.lagN++;
  lagDue = now + 50;
}, 50);

class Conn {
  constructor(idx, kind) {
    this.idx = idx; this.kind = kind; this.ws = null; this.state = "idle";
    this.pending = new Map(); this.nextAck = 1; this.lastTick = null; this.lastPing = 0;
    this.paused = false; this.timer = null; this.leaving = false; this.onReady = null;
    this.everReady = false; this.leaveMode = idx % 3;
    this.rooms = [`room-${idx % opt.rooms}`];
    if (kind === "steady") this.rooms.push(`steady-${idx % opt.rooms}`);
    else this.rooms.push(kind);
  }

  open() {
    this.state = "connecting"; this.leaving = false; this.lastTick = null;
    this.opened = false;
    const ws = this.ws = new WebSocket(opt.url, {
      perMessageDeflate: false, skipUTF8Validation: true, handshakeTimeout: 30000 });
    ws.on("open", () => { this.opened = true; });
    ws.on("message", (data) => this.onMessage(data.toString()));
    ws.on("error", (err) => {
      if (!this.opened) {
        const code = err.code || err.message;
        stats.connectErrors[code] = (stats.connectErrors[code] || 0) + 1;
        stats.connectErrorsTotal++;
      }
    });
    ws.on("close", (code) => this.onClose(code));
  }

  send(text) { if (this.ws.readyState === WebSocket.OPEN) this.ws.send(text); }

  emitWithAck(event, arg, check) {
    const id = this.nextAck++;
    this.pending.set(id, { sent: Date.now(), check });
    stats.acksSent++;
    this.send(`42${id}${JSON.stringify([event, arg])}`);
  }

  onMessage(text) {
    const type = text.charCodeAt(0);
    if (type === 50) { // "2": ping
      stats.pings++; this.lastPing = Date.now(); this.send("3"); return;
    }
    if (type === 48) { // "0": Engine.IO open
      const open = JSON.parse(text.slice(1));
      pingBound = open.pingInterval + open.pingTimeout + 5000;
      this.lastPing = Date.now();
      this.send("40");
      return;
    }
    if (type !== 52) return; // "4": message; "1" close, "6" noop need nothing
    const sio = text.charCodeAt(1);
    if (sio === 52) { stats.connectErrors.connect_error = (stats.connectErrors.connect_error || 0) + 1; return; }
    if (sio === 48) { // "40": connected to "/"
      this.state = "joining";
      this.emitWithAck("join", this.rooms, (args) => typeof args[0] === "number");
      return;
    }
    let i = 2;
    while (i < text.length && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
    const id = i > 2 ? Number(text.slice(2, i)) : null;
    const args = JSON.parse(text.slice(i));
    if (sio === 51) this.onAck(id, args); // "43"
    else if (sio === 50) this.onEvent(id, args); // "42"
  }

  onAck(id, args) {
    const entry = this.pending.get(id);
    if (entry === undefined) { stats.acksUnknown++; return; }
    this.pending.delete(id);
    stats.acksAnswered++;
    if (!entry.check(args)) stats.acksWrong++;
    const rtt = Date.now() - entry.sent;
    win.rttMax = Math.max(win.rttMax, rtt); win.rttSum += rtt; win.rttN++;
    if (this.state === "joining") this.ready();
  }

  onEvent(id, [event, data]) {
    if (event === "tick") {
      stats.ticks++;
      if (this.lastTick !== null) {
        if (data.seq > this.lastTick + 1) stats.tickGaps += data.seq - this.lastTick - 1;
        else if (data.seq <= this.lastTick) stats.tickRepeats++;
      }
      this.lastTick = data.seq;
    } else if (event === "news") stats.news++;
    else if (event === "bulk") stats.bulkBytes += data.pad.length;
    else if (event === "probe" || event === "poll") {
      stats[`${event}s`]++;
      if (id !== null) this.send(`43${id}${JSON.stringify([data])}`);
    }
  }

  ready() {
    this.state = "open";
    this.everReady = true;
    if (this.onReady) { const f = this.onReady; this.onReady = null; f(); }
    if (stopping) return;
    if (this.kind === "churn") this.timer = setTimeout(() => this.leave(), between(opt.churnHold));
    else if (this.kind === "slow") this.timer = setTimeout(() => this.pause(), between(opt.slowRead));
  }

  leave() {
    if (stopping || this.state !== "open") return;
    // Leave when quiet: an ack pending on a connection closed on purpose is not the server's.
    if (this.pending.size) { this.timer = setTimeout(() => this.leave(), 200); return; }
    this.leaving = true;
    this.state = "leaving"; // no more emits on it: an ack sent now could not be answered
    const mode = this.leaveMode; this.leaveMode = (this.leaveMode + 1) % 3;
    if (mode === 0) { this.send("41"); this.ws.close(1000); }
    else if (mode === 1) this.ws.close(1000);
    else this.ws.terminate();
  }

  pause() {
    if (stopping || this.state !== "open") return;
    stats.pauses++;
    this.paused = true; this.ws.pause();
    this.timer = setTimeout(() => this.resume(true), between(opt.slowPause));
  }

  resume(again) {
    if (!this.paused) return;
    this.paused = false; this.lastPing = Date.now();
    this.ws.resume();
    if (again && !stopping) this.timer = setTimeout(() => this.pause(), between(opt.slowRead));
  }

  onClose(code) {
    clearTimeout(this.timer);
    const wasOpen = this.state === "open" || this.state === "joining";
    this.state = "closed"; this.paused = false;
    if (this.leaving || closing) {
      if (this.leaving) stats.churnCloses++;
    } else if (this.opened) {
      stats.unexpectedCloses[code] = (stats.unexpectedCloses[code] || 0) + 1;
    }
    // Pending acks die with a connection the server (or the watchdog) dropped; one closed on
    // purpose has none (it leaves when quiet).
    if (this.leaving || closing) stats.lost += this.pending.size;
    else stats.lostOnDropped += this.pending.size;
    this.pending.clear();
    if (this.onClosed) { const f = this.onClosed; this.onClosed = null; f(); }
    if (closing) return;
    // Hold the population: come back (at once after a churn, a moment later otherwise).
    const delay = this.leaving ? 100 : (wasOpen ? 1000 : 2000);
    this.timer = setTimeout(() => { if (!closing) { stats.connects++; this.open(); } }, delay);
  }
}

const conns = [];
const churnN = Math.round(opt.connections * opt.churn), slowN = Math.round(opt.connections * opt.slow);
for (let i = 0; i < opt.connections; i++) {
  conns.push(new Conn(i, i < churnN ? "churn" : i < churnN + slowN ? "slow" : "steady"));
}

// The heartbeat watchdog: a connection that heard no ping for too long (while reading) is
// dead to the client, as socket.io-client would decide.
setInterval(() => {
  const now = Date.now();
  for (const c of conns) {
    if (c.state === "open" && !c.paused && now - c.lastPing > pingBound) {
      stats.heartbeatMissed++; c.ws.terminate();
    }
  }
}, 1000);

// The trickle of echoes with ack, spread over random open connections.
let echoSeq = 0, trickle = null;
function startTrickle() {
  const perTick = opt.ackRate / 20;
  let credit = 0;
  trickle = setInterval(() => {
    if (stopping) return;
    credit += perTick;
    for (; credit >= 1; credit--) {
      for (let tries = 0; tries < 5; tries++) {
        const c = conns[Math.floor(Math.random() * conns.length)];
        if (c.state !== "open") continue;
        const n = ++echoSeq;
        c.emitWithAck("echo", { c: c.idx, n, text: "an echo with ack" },
                      (args) => args[0] && args[0].n === n);
        break;
      }
    }
  }, 50);
}

function openAll() {
  const started = Date.now();
  return new Promise((resolve) => {
    let next = 0, done = 0;
    const one = () => {
      if (next >= conns.length) return;
      const c = conns[next++];
      c.onReady = () => { done++; if (done === conns.length) resolve((Date.now() - started) / 1000); else one(); };
      stats.connects++; c.open();
    };
    for (let i = 0; i < Math.min(opt.rampConcurrency, conns.length); i++) one();
  });
}

function snapshot(event) {
  const counts = { open: 0, paused: 0, connecting: 0 };
  let pending = 0;
  for (const c of conns) {
    if (c.state === "open") counts.open++;
    else if (c.state === "connecting" || c.state === "joining") counts.connecting++;
    if (c.paused) counts.paused++;
    pending += c.pending.size;
  }
  const result = {
    event, ...counts, acksPending: pending, ...stats,
    rttMaxMs: win.rttMax, rttAvgMs: win.rttN ? win.rttSum / win.rttN : 0,
    lagMaxMs: win.lagMax, lagAvgMs: win.lagN ? win.lagSum / win.lagN : 0,
    rssMiB: process.memoryUsage.rss() / 1048576,
  };
  Object.assign(win, { rttMax: 0, rttSum: 0, rttN: 0, lagMax: 0, lagSum: 0, lagN: 0 });
  return result;
}

function pendingAcks() { let n = 0; for (const c of conns) n += c.pending.size; return n; }

async function stop() {
  stopping = true;
  for (const c of conns) { if (c.paused) { clearTimeout(c.timer); c.resume(false); } }
  const deadline = Date.now() + opt.grace * 1000;
  while (Date.now() < deadline &&
         (pendingAcks() || conns.some((c) => c.state !== "open"))) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const result = snapshot("stopped");
  result.lost += result.acksPending; // unanswered after the grace period
  result.notOpen = conns.filter((c) => c.state !== "open").length;
  return result;
}

async function closeAll() {
  closing = true;
  clearInterval(trickle);
  const waits = [];
  for (const c of conns) {
    clearTimeout(c.timer);
    if (c.state === "closed" || c.ws === null) continue;
    waits.push(new Promise((r) => { c.onClosed = r; }));
    // Every other one says goodbye to its namespace first, as a client's disconnect() does.
    if (c.idx % 2 && c.state === "open") c.send("41");
    c.ws.close(1000);
  }
  let terminated = 0;
  const timeout = setTimeout(() => {
    for (const c of conns) if (c.state !== "closed" && c.ws) { terminated++; c.ws.terminate(); }
  }, 20000);
  await Promise.all(waits);
  clearTimeout(timeout);
  return { event: "closed", closed: waits.length, terminated };
}

async function warm() {
  // A few connections that do everything once, so that the server's baseline is taken after
  // its first-use allocations (imports, caches), not before.
  const few = Array.from({ length: opt.warm }, (_, i) => new Conn(i, "steady"));
  await Promise.all(few.map((c) => new Promise((resolve) => {
    c.onReady = () => c.emitWithAck("echo", { c: c.idx, n: 0 }, () => true);
    c.onClosed = resolve;
    const poll = setInterval(() => {
      if (c.state === "open" && !c.pending.size && c.everReady) {
        clearInterval(poll); closing = true; c.ws.close(1000);
      }
    }, 50);
    c.open();
  })));
  closing = false;
  for (const key of Object.keys(stats)) {
    stats[key] = typeof stats[key] === "number" ? 0 : {};
  }
}

await warm();
out({ event: "warm" });

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const command = line.trim();
  if (command === "go") {
    const seconds = await openAll();
    startTrickle();
    out({ event: "ready", rampSeconds: seconds, ...snapshot("ready") });
  } else if (command === "stats") out(snapshot("stats"));
  else if (command === "stop") out(await stop());
  else if (command === "close") { out(await closeAll()); process.exit(0); }
}
process.exit(0);
