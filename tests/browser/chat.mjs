// Drives the txsio demo chat (txsio/demo/) in headless Chromium, for tests/test_browser.py.
//
//   node tests/browser/chat.mjs '<json-options>'
//
// options.url        the demo's base URL (http://127.0.0.1:PORT), served by `twistd -n sio`
// options.scenarios  from "chat", "polling", "restart" (in this order when several)
// options.deadline   ms for the whole run (default 30000)
// options.screenshot a PNG path: after "chat", a screenshot of the first page
// options.chromium   the browser (default /usr/bin/chromium)
// options.tlsUrl     (tls) the same server's https:// URL (a self-signed certificate)
// options.cdnBundle  (cdn) the file to answer https://cdn.socket.io/4.8.3/socket.io.min.js with
//
// Prints one JSON object per line on stdout and exits by itself:
//   {"event":"result","scenario":...,...}   what a scenario saw (the test asserts on it)
//   {"event":"ready-for-restart"}           (restart) restart the server on the same port now
//   {"event":"done"}                        every scenario ran; exit code 0
//   {"event":"error","scenario":...,"step":...,"message":...}   exit code 1
//   {"event":"timeout"}                     the deadline passed; exit code 3
//
// Scenarios:
//   chat     pages A (alice) and B (bob) open the demo, pick nicknames and land in #lobby;
//            the online and per-room counts reach 2; A and B exchange messages (each sender
//            sees the delivery ack); A sends a PNG, B gets the same bytes (over WebSocket
//            as a binary frame); B moves to #random, where A's next message to #lobby does
//            not reach it, and the room counts follow; B closes, A's count drops to 1.
//   polling  page C (carol) opens the demo with ?transports=polling (no WebSocket is ever
//            opened) and chats with page A (alice, WebSocket) both ways; C sends a PNG too.
//   restart  pages D (dave) and E (erin) chat; the script prints ready-for-restart and the
//            test restarts the server; both pages see the disconnection, reconnect by
//            themselves, are back in #lobby with their nicknames, and chat again.
//   inject   page M (mallory) opens the demo with ?server= naming a server this script runs
//            (its socket.io.js would set window.pwned): the page must still load its client
//            from its own origin, never ask that server, and chat.
//   tls      page F (frank) opens the demo at options.tlsUrl (Chromium offers ALPN), upgrades
//            to a secure WebSocket and chats with page A (alice, plain HTTP).
//   cdn      (a server without --client-js) page G (gina) falls back to the pinned CDN file,
//            answered here with options.cdnBundle, and chats; page H gets a tampered copy,
//            which the page's integrity check refuses: it loads no client and says to use
//            --client-js.
import { createServer } from "node:http";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { deflateSync } from "node:zlib";

import { launchChromium } from "./chromium.mjs";

const options = JSON.parse(process.argv[2] || "{}");
const BASE = (options.url || "").replace(/\/$/, "");
const SCENARIOS = options.scenarios || ["chat"];
const WAIT = 10000;

function print(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

if (!BASE) {
  print({ event: "error", message: "usage: chat.mjs '{\"url\": ..., \"scenarios\": [...]}'" });
  process.exit(2);
}

let step = "start";
let scenario = null;
const deadline = setTimeout(() => {
  print({ event: "timeout", scenario, step });
  process.exit(3);
}, options.deadline || 30000);

// -- a PNG made here, so that the test knows its exact bytes -----------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

function png(size, paint) {
  const rows = [];
  for (let y = 0; y < size; y++) {
    const row = Buffer.alloc(1 + size * 3);
    for (let x = 0; x < size; x++) row.set(paint(x / size, y / size), 1 + x * 3);
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

// A soft sunset: sky gradient, a sun, a sea.
const SUNSET = png(160, (x, y) => {
  const sun = Math.hypot(x - 0.5, y - 0.55) < 0.16;
  if (y > 0.62) return [30 + 40 * y, 70 + 50 * y, 130 + 60 * y].map(Math.round);
  if (sun) return [255, 214, 120];
  return [Math.round(250 - 60 * y), Math.round(140 + 60 * y), Math.round(120 + 90 * y)];
});
const DOTS = png(48, (x, y) => ((Math.floor(x * 6) + Math.floor(y * 6)) % 2 ? [79, 70, 229] : [238, 240, 254]));

// -- pages ------------------------------------------------------------------------------------

const profile = mkdtempSync(join(tmpdir(), "txsio-chromium-"));
let context = null;
const pageErrors = [];

async function launch() {
  context = await launchChromium(profile, options.chromium, {
    viewport: { width: 1100, height: 700 },
    ignoreHTTPSErrors: true, // the tls scenario's self-signed certificate
  });
  context.setDefaultTimeout(WAIT);
}

// One person on the demo page: its WebSocket frames are counted.
async function open(name, query = "", base = BASE) {
  step = `${name} opens the page`;
  const page = await context.newPage();
  const who = { name, page, websockets: 0, binaryFrames: [], headers: {} };
  page.on("pageerror", (e) => pageErrors.push(`${name}: ${e.message}`));
  page.on("websocket", (ws) => {
    who.websockets += 1;
    ws.on("framereceived", (frame) => {
      if (typeof frame.payload !== "string") who.binaryFrames.push(frame.payload.length);
    });
  });
  who.headers = (await page.goto(base + "/" + query)).headers();
  step = `${name} picks a nickname`;
  await page.locator("#nick-input").fill(name);
  await page.locator("#nick-input").press("Enter");
  await page.locator('#room-title[data-room="lobby"]').waitFor();
  return who;
}

const text = (who, selector) => who.page.locator(selector).innerText();

async function until(what, check, timeout = WAIT) {
  step = what;
  const end = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`${what}: not within ${timeout} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function counts(who) {
  return who.page.evaluate(() => {
    const rooms = {};
    for (const li of document.querySelectorAll("#rooms li")) {
      rooms[li.dataset.room] = Number(li.querySelector(".count").textContent);
    }
    return { online: Number(document.getElementById("online-count").textContent), rooms };
  });
}

async function countsAre(who, online, rooms) {
  return until(`${who.name} sees ${online} online, ${JSON.stringify(rooms)}`, async () => {
    const seen = await counts(who);
    const ok = seen.online === online && Object.entries(rooms).every(([r, n]) => seen.rooms[r] === n);
    return ok ? seen : null;
  });
}

// A message of ours the server acknowledged (or that failed).
const ANSWERED = ':is([data-status="delivered"], [data-status="failed"])';

// Send a text; fire with the sender's receipt once the ack came back.
async function say(who, message) {
  step = `${who.name} says ${JSON.stringify(message)}`;
  await who.page.locator("#text").fill(message);
  await who.page.locator("#text").press("Enter");
  const mine = who.page.locator(`li.msg.mine${ANSWERED}`).filter({ hasText: message }).last();
  await mine.waitFor();
  return {
    status: await mine.getAttribute("data-status"),
    id: await mine.getAttribute("data-id"),
    receipt: await mine.locator(".receipt").innerText(),
    detail: await mine.locator(".receipt").getAttribute("title"),
  };
}

// Wait until `who` shows a message from `from` with `message`.
async function hears(who, from, message) {
  step = `${who.name} gets ${JSON.stringify(message)} from ${from}`;
  const li = who.page.locator(`li.msg:not(.mine)[data-nick="${from}"]`).filter({ hasText: message });
  await li.last().waitFor();
  return { nick: from, text: await li.last().locator(".bubble").innerText(), id: await li.last().getAttribute("data-id") };
}

async function sendImage(who, name, bytes) {
  step = `${who.name} sends ${name}`;
  await who.page.locator("#image-input").setInputFiles({ name, mimeType: "image/png", buffer: bytes });
  const mine = who.page.locator(`li.msg.mine${ANSWERED}`).filter({ has: who.page.locator("img.photo") }).last();
  await mine.waitFor();
  return { status: await mine.getAttribute("data-status"), id: await mine.getAttribute("data-id") };
}

// Wait for an image from `from` and read back the bytes its <img> shows.
async function seesImage(who, from) {
  step = `${who.name} gets an image from ${from}`;
  const img = who.page.locator(`li.msg:not(.mine)[data-nick="${from}"] img.photo`).last();
  await img.waitFor();
  return who.page.evaluate(async (node) => {
    const bytes = new Uint8Array(await (await fetch(node.src)).arrayBuffer());
    await node.decode(); // a real, displayable image
    return { bytes: Array.from(bytes), width: node.naturalWidth };
  }, await img.elementHandle());
}

const transport = (who) => who.page.evaluate(() => window.demoSocket.io.engine.transport.name);
const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

// -- scenarios --------------------------------------------------------------------------------

const pages = {};

async function chat() {
  const a = (pages.alice = await open("alice"));
  const b = await open("bob");
  const client = await a.page.evaluate(() => document.documentElement.dataset.client);
  await until("both pages upgrade to WebSocket",
    async () => (await transport(a)) === "websocket" && (await transport(b)) === "websocket");
  const together = await countsAre(a, 2, { lobby: 2, random: 0 });
  await countsAre(b, 2, { lobby: 2 });
  const membersA = await a.page.locator("#members .name").allInnerTexts();

  const aliceSays = await say(a, "Hi bob! Did the server get this?");
  const bobHears = await hears(b, "alice", "Hi bob! Did the server get this?");
  const bobSays = await say(b, "Loud and clear — over WebSocket.");
  const aliceHears = await hears(a, "bob", "Loud and clear — over WebSocket.");

  const framesBefore = b.binaryFrames.length;
  const image = await sendImage(a, "sunset.png", SUNSET);
  const bobSees = await seesImage(b, "alice");
  const binaryFrames = b.binaryFrames.slice(framesBefore);
  await say(b, "Nice sunset!");
  await hears(a, "bob", "Nice sunset");

  if (options.screenshot) {
    step = "screenshot";
    await a.page.screenshot({ path: options.screenshot });
  }

  step = "bob moves to #random";
  await b.page.locator('#rooms li[data-room="random"] button').click();
  await b.page.locator('#room-title[data-room="random"]').waitFor();
  const apart = await countsAre(a, 2, { lobby: 1, random: 1 });
  await countsAre(b, 2, { lobby: 1, random: 1 });
  const lonely = await say(a, "Anyone still in the lobby?");
  const bobInRandom = await say(b, "Only me in here.");
  const bobGotLobby = await b.page.locator("li.msg").filter({ hasText: "Anyone still in the lobby?" }).count();
  const aliceGotRandom = await a.page.locator("li.msg").filter({ hasText: "Only me in here." }).count();

  step = "bob leaves #random";
  await b.page.locator("#leave").click();
  await b.page.locator("#empty").waitFor();
  const afterLeave = await countsAre(a, 2, { lobby: 1, random: 0 });

  step = "bob closes his page";
  await b.page.close();
  const alone = await countsAre(a, 1, { lobby: 1 });

  print({
    event: "result", scenario: "chat", client,
    together, members: membersA, aliceSays, bobHears, bobSays, aliceHears,
    image: { ...image, sent: SUNSET.length, bytesMatch: same(bobSees.bytes, [...SUNSET]),
      received: bobSees.bytes.length, width: bobSees.width, binaryFrames },
    apart, lonely, bobInRandom, bobGotLobby, aliceGotRandom, afterLeave, alone,
  });
}

async function polling() {
  const a = pages.alice || (pages.alice = await open("alice"));
  const c = await open("carol", "?transports=polling");
  await countsAre(a, 2, { lobby: 2 });
  const status = await text(c, "#status-text");
  const carolSays = await say(c, "Hello from long-polling");
  const aliceHears = await hears(a, "carol", "Hello from long-polling");
  const aliceSays = await say(a, "Hello back over WebSocket");
  const carolHears = await hears(c, "alice", "Hello back over WebSocket");
  const image = await sendImage(c, "dots.png", DOTS);
  const aliceSees = await seesImage(a, "carol");
  print({
    event: "result", scenario: "polling",
    status, transport: await transport(c), websockets: c.websockets, aliceTransport: await transport(a),
    carolSays, aliceHears, aliceSays, carolHears,
    image: { ...image, bytesMatch: same(aliceSees.bytes, [...DOTS]), received: aliceSees.bytes.length },
  });
  await c.page.close();
}

async function restart() {
  for (const p of Object.values(pages)) await p.page.close();
  const d = await open("dave");
  const e = await open("erin");
  await countsAre(d, 2, { lobby: 2 });
  const before = await say(d, "Before the restart");
  await hears(e, "dave", "Before the restart");
  const idBefore = await d.page.evaluate(() => window.demoSocket.id);

  print({ event: "ready-for-restart" });
  const down = await until("dave sees the server go away", async () => {
    const state = await d.page.locator("#status").getAttribute("data-state");
    return state !== "connected" ? { state, text: await text(d, "#status-text") } : null;
  }, 15000);
  await until("dave is connected again",
    async () => (await d.page.locator("#status").getAttribute("data-state")) === "connected", 20000);
  await until("erin is connected again",
    async () => (await e.page.locator("#status").getAttribute("data-state")) === "connected", 20000);
  const back = await countsAre(d, 2, { lobby: 2 });
  const room = await d.page.locator("#room-title").getAttribute("data-room");
  const idAfter = await d.page.evaluate(() => window.demoSocket.id);
  const after = await say(d, "After the restart");
  const erinHears = await hears(e, "dave", "After the restart");
  const erinSays = await say(e, "Welcome back");
  const daveHears = await hears(d, "erin", "Welcome back");
  const kept = await d.page.locator("li.msg").filter({ hasText: "Before the restart" }).count();
  print({
    event: "result", scenario: "restart",
    before, down, back, room, newId: idBefore !== idAfter, after, erinHears, erinSays, daveHears,
    keptHistory: kept, nick: await text(d, "#me-nick"),
  });
}

async function inject() {
  const a = pages.alice || (pages.alice = await open("alice"));
  // A foreign server whose socket.io.js would run in the demo's origin.
  const asked = [];
  const evil = createServer((req, res) => {
    asked.push(req.url);
    res.writeHead(200, { "content-type": "text/javascript", "access-control-allow-origin": "*" });
    res.end("window.pwned = true;");
  });
  await new Promise((resolve) => evil.listen(0, "127.0.0.1", resolve));
  const evilUrl = `http://127.0.0.1:${evil.address().port}`;
  try {
    const m = await open("mallory", "?server=" + encodeURIComponent(evilUrl));
    await countsAre(a, 2, { lobby: 2 });
    const mallorySays = await say(m, "Hello from a crafted link");
    const aliceHears = await hears(a, "mallory", "Hello from a crafted link");
    const loaded = await m.page.evaluate(() => ({
      pwned: window.pwned === true,
      scripts: [...document.scripts].map((s) => s.src),
      client: document.documentElement.dataset.client,
    }));
    print({
      event: "result", scenario: "inject", ...loaded, evilAsked: asked.length,
      csp: m.headers["content-security-policy"] || null, mallorySays, aliceHears,
    });
    await m.page.close();
  } finally {
    evil.close();
  }
}

async function tls() {
  const a = pages.alice || (pages.alice = await open("alice"));
  const f = await open("frank", "", options.tlsUrl);
  await until("frank upgrades to WebSocket", async () => (await transport(f)) === "websocket");
  const frankSays = await say(f, "Hello over TLS");
  const aliceHears = await hears(a, "frank", "Hello over TLS");
  print({
    event: "result", scenario: "tls", transport: await transport(f),
    url: await f.page.evaluate(() => location.origin), frankSays, aliceHears,
  });
  await f.page.close();
}

async function cdn() {
  const CDN_FILE = "https://cdn.socket.io/4.8.3/socket.io.min.js";
  const bundle = readFileSync(options.cdnBundle);
  let tamper = false;
  const fetched = [];
  await context.route(CDN_FILE, (route) => {
    fetched.push(tamper ? "tampered" : "genuine");
    const body = tamper ? Buffer.concat([bundle, Buffer.from("\nwindow.pwned = true;\n")]) : bundle;
    route.fulfill({
      status: 200, body,
      headers: {
        "content-type": "text/javascript", "access-control-allow-origin": "*",
        "cache-control": "no-store", // each page fetches its own copy
      },
    });
  });
  const g = await open("gina");
  const client = await g.page.evaluate(() => document.documentElement.dataset.client);
  const ginaSays = await say(g, "Hello through the CDN copy");

  step = "a page gets a tampered CDN file";
  tamper = true;
  const h = await context.newPage();
  h.on("pageerror", (e) => pageErrors.push(`tampered: ${e.message}`));
  await h.goto(BASE + "/");
  await h.locator('#status[data-state="disconnected"]').waitFor();
  const refused = await h.evaluate(() => ({
    pwned: window.pwned === true,
    io: typeof window.io,
    message: document.getElementById("empty").firstElementChild.textContent,
    status: document.getElementById("status-text").textContent,
  }));
  print({ event: "result", scenario: "cdn", client, ginaSays, fetched, refused });
  await h.close();
  await g.page.close();
}

const RUN = { chat, polling, restart, inject, tls, cdn };

try {
  step = "launch chromium";
  await launch();
  for (const name of SCENARIOS) {
    scenario = name;
    if (!RUN[name]) throw new Error(`unknown scenario ${name}`);
    await RUN[name]();
  }
  scenario = null;
  if (pageErrors.length) throw new Error("errors in the page: " + pageErrors.join("; "));
  print({ event: "done" });
  process.exitCode = 0;
} catch (e) {
  print({ event: "error", scenario, step, message: String(e && e.stack ? e.stack : e) });
  process.exitCode = 1;
} finally {
  clearTimeout(deadline);
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
