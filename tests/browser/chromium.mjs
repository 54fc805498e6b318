// Debian's Chromium, headless, with the flags this machine needs (no background traffic to
// hosts it cannot reach) and any the test adds. Screenshots go to target/screenshots/.
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const SCREENSHOTS = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "target", "screenshots");

export async function launch(extraArgs = []) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      ...extraArgs,
    ],
  });
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(SCREENSHOTS, name + ".png"), fullPage: true });
}
