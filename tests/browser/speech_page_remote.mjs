// Opens the speech page the way a browser on another machine sees it: over plain HTTP on a
// host that is not localhost (a name mapped to loopback, so no traffic leaves this machine),
// where the browser offers no microphone. Prints what the page shows as JSON.
//   node speech_page_remote.mjs PORT
import { launch, screenshot } from "./chromium.mjs";

const [port] = process.argv.slice(2);
const browser = await launch(["--host-resolver-rules=MAP bloodbank.test 127.0.0.1"]);
try {
  const page = await browser.newPage();
  await page.goto(`http://bloodbank.test:${port}/`);
  await page.waitForSelector("#notice:not([hidden])", { timeout: 10000 });
  await screenshot(page, "speech-page-remote");
  console.log(JSON.stringify({
    secure: await page.evaluate(() => window.isSecureContext),
    notice: await page.textContent("#notice"),
    status: await page.textContent("#status"),
    startDisabled: await page.isDisabled("#start"),
  }));
} finally {
  await browser.close();
}
