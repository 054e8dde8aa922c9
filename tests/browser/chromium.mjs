// Headless Chromium for the real-browser scripts (chat.mjs, admin.mjs): Debian's chromium
// (/usr/bin/chromium) driven by npm playwright-core from tests/node, in a throwaway profile.
import { createRequire } from "node:module";

const require = createRequire(new URL("../node/package.json", import.meta.url));
const { chromium } = require("playwright-core");

// No sandbox (CI runs as root), no GPU, and no traffic of Chromium's own (updates, sync,
// QUIC probes): the machine talks to loopback only.
const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

// A persistent context on `profile`; `executable` defaults to /usr/bin/chromium, and
// `settings` (viewport, ignoreHTTPSErrors...) go to Playwright's launchPersistentContext.
export function launchChromium(profile, executable, settings) {
  return chromium.launchPersistentContext(profile, {
    executablePath: executable || "/usr/bin/chromium",
    headless: true,
    args: FLAGS,
    colorScheme: "light",
    ...settings,
  });
}
