// Drives the Socket.IO Admin UI (npm @socket.io/admin-ui's built page, ui/dist) in headless
// Chromium against a txsio server, for tests/test_admin.py.
//
//   node tests/browser/admin.mjs '<json-options>'
//
// options.uiUrl      where the page is served (http://127.0.0.1:PORT/)
// options.serverUrl  the txsio server (http://127.0.0.1:PORT), its UI origin allowed by CORS
// options.username, options.password   the admin's credentials
// options.sockets    the ids of the sockets of "/" the page must list at first
// options.rooms      the public rooms of "/" it must list at first, {name: sockets count}
// options.serverId, options.hostname, options.pid, options.clients   the server it must show
//                    on its Servers page, and (eventually) its number of clients
// options.outDir     where the screenshots go (sockets.png, rooms.png, servers.png)
// options.deadline   ms for the whole run (default 40000)
// options.chromium   the browser (default /usr/bin/chromium)
//
// Steps: open the page (requests to any host but 127.0.0.1, its web fonts, are refused);
// log in with a wrong password (the page must say "Invalid credentials"), then with the right
// one; on the Sockets page wait for options.sockets; on the Rooms page for options.rooms;
// print {"event":"listed"} and wait until the room "late" and one more socket of "/" appear
// (the test connects that client when it reads "listed"); then the Servers page.
//
// Prints one JSON object per line on stdout and exits by itself:
//   {"event":"listed","sockets":[[cells...]...],"rooms":[[cells...]...]}
//   {"event":"result","invalid":...,"sockets":[...],"rooms":[...],"servers":[...],"screenshots":[...]}
//   {"event":"done"}                                      exit code 0
//   {"event":"error","step":...,"message":...}            exit code 1
//   {"event":"timeout","step":...}                        exit code 3
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { launchChromium } from "./chromium.mjs";

const options = JSON.parse(process.argv[2] || "{}");
const WAIT = 10000;

function print(event) {
  process.stdout.write(JSON.stringify(event) + "\n");
}

let step = "start";
const deadline = setTimeout(() => {
  print({ event: "timeout", step });
  process.exit(3);
}, options.deadline || 40000);

const profile = mkdtempSync(join(tmpdir(), "txsio-admin-chromium-"));
let context = null;
const pageErrors = [];

// The data table of a page: the one whose header has `header` (while the router's transition
// runs, the previous page's tables are still there).
const HEADERS = { sockets: "IP address", rooms: "# of sockets", servers: "Hostname" };

// The cells' text of each row of the table whose header has `header`.
function tableRows(page, header) {
  return page.evaluate((h) => {
    const table = [...document.querySelectorAll("main table")]
      .find((t) => t.tHead && t.tHead.innerText.includes(h));
    if (!table) return null;
    return [...table.tBodies[0].rows].map((row) =>
      [...row.cells].map((cell) => cell.innerText.trim()));
  }, header);
}

// Wait until each item of `texts` starts a row of the `kind` table (a text, or the texts of
// a row's first cells, null for any), and (when given) the table has `count` rows.
async function waitForRows(page, kind, texts, count = null) {
  step = `wait for ${JSON.stringify(texts)} on the ${kind} page`;
  await page.waitForFunction(([h, wanted, n]) => {
    const table = [...document.querySelectorAll("main table")]
      .find((t) => t.tHead && t.tHead.innerText.includes(h));
    if (!table) return false;
    const rows = [...table.tBodies[0].rows].map((row) =>
      [...row.cells].map((cell) => cell.innerText.trim()));
    const starts = (row, cells) =>
      [].concat(cells).every((text, i) => text === null || row[i] === text);
    return wanted.every((cells) => rows.some((row) => starts(row, cells)))
      && (n === null || rows.length === n);
  }, [HEADERS[kind], texts, count], { timeout: WAIT });
  return tableRows(page, HEADERS[kind]);
}

async function show(page, hash) {
  step = `open ${hash}`;
  await page.evaluate((h) => { window.location.hash = h; }, hash);
  await page.waitForFunction((h) => window.location.hash === h, hash);
}

async function screenshot(page, name) {
  step = `screenshot ${name}`;
  // The router's fade between pages: shoot once it is over.
  await page.evaluate(() => Promise.all(document.getAnimations().map((a) => a.finished)));
  const path = join(options.outDir, name);
  await page.screenshot({ path, fullPage: true });
  return path;
}

async function run() {
  step = "launch chromium";
  context = await launchChromium(profile, options.chromium, {
    viewport: { width: 1400, height: 800 },
  });
  context.setDefaultTimeout(WAIT);
  // The page links web fonts on other sites: this machine talks to loopback only.
  await context.route((url) => url.hostname !== "127.0.0.1", (route) => route.abort());
  const page = await context.newPage();
  page.on("pageerror", (e) => pageErrors.push(e.message));

  step = "open the page";
  await page.goto(options.uiUrl, { waitUntil: "domcontentloaded" });

  step = "log in with a wrong password";
  await page.getByLabel("Server URL").fill(options.serverUrl);
  await page.getByLabel("Username").fill(options.username);
  await page.getByLabel("Password").fill(options.password + "-wrong");
  await page.getByRole("button", { name: "Connect" }).click();
  const invalid = page.getByText("Invalid credentials");
  await invalid.waitFor();
  const invalidText = (await invalid.innerText()).trim();

  step = "log in";
  await page.getByLabel("Password").fill(options.password);
  await page.getByRole("button", { name: "Connect" }).click();
  await page.getByLabel("Server URL").waitFor({ state: "hidden" });

  await show(page, "#/sockets/");
  const firstSockets = await waitForRows(page, "sockets", options.sockets);
  await show(page, "#/rooms/");
  const firstRooms = await waitForRows(page, "rooms", Object.keys(options.rooms));
  print({ event: "listed", sockets: firstSockets, rooms: firstRooms });

  // The test connects one more client, in the room "late", when it reads "listed": the
  // page shows the room once it knows the socket (socket_connected lists its rooms).
  const roomsAfter = await waitForRows(page, "rooms", ["late"]);
  const rooms = await screenshot(page, "rooms.png");
  await show(page, "#/sockets/");
  const socketsAfter = await waitForRows(page, "sockets", options.sockets,
                                         options.sockets.length + 1);
  const sockets = await screenshot(page, "sockets.png");

  await show(page, "#/servers/");
  // Its statistics come every 2 s: wait for those that count the late client too.
  const servers = await waitForRows(page, "servers", [[options.serverId, options.hostname,
    String(options.pid), null, String(options.clients)]], 1);
  const serversShot = await screenshot(page, "servers.png");

  print({
    event: "result",
    invalid: invalidText,
    sockets: socketsAfter,
    rooms: roomsAfter,
    servers,
    screenshots: [sockets, rooms, serversShot],
  });
}

try {
  await run();
  if (pageErrors.length) throw new Error("errors in the page: " + pageErrors.join("; "));
  print({ event: "done" });
  process.exitCode = 0;
} catch (e) {
  print({ event: "error", step, message: String(e && e.stack ? e.stack : e) });
  process.exitCode = 1;
} finally {
  clearTimeout(deadline);
  if (context) await context.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
