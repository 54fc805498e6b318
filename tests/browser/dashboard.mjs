// Drives the management dashboard in headless Chromium as its users do, in step with the
// Python test on stdin/stdout: sign in, watch a queue's depth change when the test publishes,
// look at its messages, purge it from the page, close a connection, watch live events.
//   node dashboard.mjs URL QUEUE
import { createInterface } from "node:readline";
import { launch, screenshot } from "./chromium.mjs";

const [url, queue] = process.argv.slice(2);
const rl = createInterface({ input: process.stdin });
const lines = rl[Symbol.asyncIterator]();
const say = (word) => console.log(word);
const hear = async (word) => {
  const { value } = await lines.next();
  if (value !== word) throw new Error(`expected ${word} on stdin, got ${value}`);
};

const browser = await launch();
const result = {};
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
  page.on("dialog", (d) => d.accept());
  await page.goto(url);
  await screenshot(page, "dashboard-login");
  result.tabsBeforeLogin = await page.isVisible("#tabs");
  await page.fill("#password", "wrong");
  await page.click("#login button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#login-error").textContent.length > 0);
  result.loginError = await page.textContent("#login-error");
  await page.fill("#password", "guest");
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#overview:not([hidden])");
  result.tabsAfterLogin = await page.isVisible("#tabs");
  result.user = await page.textContent("#user");

  await page.click("button[data-tab=queues]");
  const row = `#queue-rows tr[data-queue="${queue}"]`;
  await page.waitForSelector(row);
  result.readyBefore = await page.textContent(`${row} td.ready`);
  say("watching");
  await hear("published");
  await page.waitForFunction((r) => document.querySelector(`${r} td.ready`)?.textContent === "5", row, { timeout: 15000 });
  result.readyAfter = await page.textContent(`${row} td.ready`);
  await page.click(`${row} button[data-act=get]`);
  await page.waitForSelector("#messages:not([hidden]) .message");
  result.firstPayload = await page.textContent("#message-list .message pre");
  await screenshot(page, "dashboard-queues");
  await page.click(`${row} button[data-act=purge]`);
  await page.waitForFunction((r) => document.querySelector(`${r} td.ready`)?.textContent === "0", row, { timeout: 15000 });
  result.readyPurged = await page.textContent(`${row} td.ready`);
  say("purged");

  await page.click("button[data-tab=connections]");
  await page.waitForSelector("#connection-rows tr");
  result.clients = await page.$$eval("#connection-rows tr td:first-child b", (bs) => bs.map((b) => b.textContent));
  await screenshot(page, "dashboard-connections");
  await page.click("#connection-rows tr button[data-close]");
  await page.waitForFunction(() => document.querySelectorAll("#connection-rows tr").length === 0, null, { timeout: 15000 });
  say("closed");
  await hear("checked");

  await page.click("button[data-tab=tail]");
  await page.fill("#tail-pattern", "theboard.#");
  await page.click("#tail-form button[type=submit]");
  await page.waitForSelector("#tail-list li.muted");
  await page.waitForTimeout(300);
  say("tailing");
  await hear("events-published");
  await page.waitForSelector("#tail-list li .key", { timeout: 15000 });
  await page.waitForTimeout(300);
  result.tailed = await page.$$eval("#tail-list li .key", (ks) => ks.map((k) => k.textContent));
  await screenshot(page, "dashboard-tail");

  await page.click("button[data-tab=exchanges]");
  await page.waitForSelector("#exchange-rows tr");
  await screenshot(page, "dashboard-exchanges");
  await page.click("button[data-tab=overview]");
  await page.waitForTimeout(6000);
  result.published = await page.textContent("#t-queues");
  await screenshot(page, "dashboard-overview");
  say(JSON.stringify(result));
} finally {
  rl.close();
  await browser.close();
}
