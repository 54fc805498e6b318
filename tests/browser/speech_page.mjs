// Opens the speech page in headless Chromium whose fake microphone plays a WAV file, presses
// Start, and prints the final transcripts that appear on the page as JSON.
//   node speech_page.mjs URL WAV EXPECTED_FINALS
import { launch, screenshot } from "./chromium.mjs";

const [url, wav, expected] = process.argv.slice(2);
const browser = await launch([
  "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
  `--use-file-for-fake-audio-capture=${wav}%noloop`, "--autoplay-policy=no-user-gesture-required",
]);
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.click("#start");
  await page.waitForFunction((n) => document.querySelectorAll("#finals .final").length >= n, Number(expected), { timeout: 60000 });
  const finals = await page.$$eval("#finals .final", (ps) => ps.map((p) => p.textContent));
  await screenshot(page, "speech-page");
  console.log(JSON.stringify(finals));
} finally {
  await browser.close();
}
