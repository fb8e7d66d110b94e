// The console of a node with a local tile source (MBTiles), and through a
// node restart: it shows that it is offline, comes back by itself, and
// shows what changed meanwhile without a reload. Run by
// crates/detente/tests/console.rs, which stops and restarts the node when
// this script asks (a line on stdout, answered on stdin). Env: NODE_URL,
// KEY (a member's key file), SHOTS, CHROMIUM.
import { chromium } from 'playwright-core';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { createInterface } from 'node:readline';

const { NODE_URL, KEY, SHOTS } = process.env;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
mkdirSync(SHOTS, { recursive: true });
const T = 20000;
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(what) {
  console.log(what);
  const answer = await lines.next();
  if (answer.done) throw new Error(`no answer to ${what}`);
  return answer.value;
}
function check(cond, what) {
  if (!cond) throw new Error(`failed: ${what}`);
  console.log(`ok - ${what}`);
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });
const page = await browser.newPage({ viewport: { width: 1400, height: 860 } });
const tiles = [];
page.on('response', (r) => { if (r.url().includes('/console/api/tiles/')) tiles.push(r.status()); });
try {
  await page.goto(`${NODE_URL}/console/`);
  await page.locator('#key-file').setInputFiles(KEY);
  await page.locator('#login-form button[type=submit]').click();
  await page.locator('#conn.online').waitFor({ timeout: T });
  await page.locator('.local-tiles img.leaflet-tile-loaded').first().waitFor({ timeout: T });
  check(tiles.length > 0 && tiles.every((s) => s === 200), `the map draws the node's local MBTiles basemap (${tiles.length} tiles, all from the node)`);
  check((await page.locator('.leaflet-control-attribution').textContent()).includes('Test theatre grid'), 'with its attribution');
  await page.screenshot({ path: join(SHOTS, 'local-tiles.png') });
  await page.keyboard.press('3');
  await page.locator('#members tbody tr').first().waitFor({ timeout: T });
  const before = await page.locator('#members tbody tr').count();
  check(true, `logged in and live; ${before} member(s) listed`);
  await ask('STOP');
  await page.locator('#conn.offline', { hasText: 'OFFLINE since' }).waitFor({ timeout: T });
  check(true, 'the console shows that the node is offline, and since when');
  await page.screenshot({ path: join(SHOTS, 'offline.png') });
  await ask('START');
  await page.locator('#conn.online').waitFor({ timeout: T });
  check(true, 'it reconnects by itself when the node is back');
  await ask('CHANGE');
  await page.locator('#members tbody tr', { hasText: 'Lt. Nowak' }).waitFor({ timeout: T });
  check(await page.locator('#members tbody tr').count() === before + 1, 'and shows a change made after the restart, without a reload (the session survived it)');
  console.log('restart: all checks passed');
} catch (e) {
  console.log(`not ok - ${e.message}`);
  await page.screenshot({ path: join(SHOTS, 'restart-failure.png') }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
  process.exit();
}
