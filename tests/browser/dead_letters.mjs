// Drives the dashboard's Dead letters tab in headless Chromium: sign in, see a dead-letter
// queue with its reasons, look at its messages, replay them all; prints what it saw as JSON.
//   node dead_letters.mjs URL DLQ
import { launch, screenshot } from "./chromium.mjs";

const [url, dlq] = process.argv.slice(2);
const browser = await launch();
const result = {};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.on("dialog", (d) => d.accept());
  await page.goto(url);
  await page.fill("#password", "guest");
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#overview:not([hidden])");
  await page.click("button[data-tab=deadletters]");
  const row = `#dlq-rows tr[data-dlq="${dlq}"]`;
  await page.waitForSelector(`${row} .reason`);
  result.count = await page.textContent(`${row} td.ready`);
  result.reasons = await page.$$eval(`${row} .reason`, (ps) => ps.map((p) => p.textContent).sort());
  await page.click(`${row} button[data-dead=show]`);
  await page.waitForSelector("#dead:not([hidden]) .dead-letter");
  result.shown = await page.$$eval("#dead-list .dead-letter", (ds) =>
    ds.map((d) => ({ reason: d.querySelector(".reason").textContent, error: d.querySelector(".error")?.textContent ?? "" })));
  await screenshot(page, "dashboard-dead-letters");
  await page.click(`${row} button[data-dead=replay]`);
  await page.waitForFunction((r) => document.querySelector(`${r} td.ready`)?.textContent === "0", row, { timeout: 15000 });
  result.after = await page.textContent(`${row} td.ready`);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
