// Opens stomp_page.html in headless Chromium against a Web-STOMP URL, says "subscribed" once
// the page's subscription is live, waits for EXPECTED events on the page (after "published"
// on stdin), and prints what the page shows as JSON.
//   node stomp_page.mjs WS_URL EXPECTED
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launch, screenshot } from "./chromium.mjs";

const [ws, expected] = process.argv.slice(2);
const page_url = "file://" + join(dirname(fileURLToPath(import.meta.url)), "stomp_page.html") + "?ws=" + encodeURIComponent(ws);
const rl = createInterface({ input: process.stdin });
const lines = rl[Symbol.asyncIterator]();
const browser = await launch();
try {
  const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
  await page.goto(page_url);
  await page.waitForFunction(() => document.getElementById("status").textContent === "subscribed", null, { timeout: 15000 });
  console.log("subscribed");
  await lines.next();
  await page.waitForFunction((n) => document.querySelectorAll("#events li").length >= n, Number(expected), { timeout: 15000 });
  const shown = await page.$$eval("#events li", (lis) => lis.map((li) => ({ key: li.dataset.key, body: li.querySelector("span").textContent })));
  await screenshot(page, "web-stomp-page");
  console.log(JSON.stringify(shown));
} finally {
  rl.close();
  await browser.close();
}
