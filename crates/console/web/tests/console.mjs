// The console in a real browser (Debian's Chromium driven by
// playwright-core) against the two nodes of `detente demo --keep-running`.
// Run by crates/detente/tests/console.rs, which starts the demo and checks
// the exported bundle offline. Env: ALLIANCE, FEDERATION (node base URLs),
// KEYS (the demo's key folder), SHOTS (where screenshots and the bundle go),
// CHROMIUM (the browser).
import { chromium } from 'playwright-core';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';

const { ALLIANCE, FEDERATION, KEYS, SHOTS } = process.env;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
mkdirSync(SHOTS, { recursive: true });
const T = 20000;
let step = 'start';
const pages = [];

function ok(what) { console.log(`ok - ${what}`); }
function check(cond, what) {
  if (!cond) throw new Error(`failed: ${what}`);
  ok(what);
}

const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'], headless: true });

// A page of one node's console; every request it makes must go to that node.
async function open(base, who) {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 860 }, acceptDownloads: true });
  const page = await ctx.newPage();
  page.outside = [];
  page.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(`${base}/`) && !u.startsWith('data:') && !u.startsWith('blob:')) page.outside.push(u);
  });
  page.on('pageerror', (e) => console.log(`# page error (${who}): ${e.message}`));
  pages.push(page);
  await page.goto(`${base}/console/`);
  return page;
}

async function login(page, keyFile, name) {
  await page.locator('#key-file').setInputFiles(join(KEYS, keyFile));
  await page.locator('#login-form button[type=submit]').click();
  await page.locator('#who', { hasText: name }).waitFor({ timeout: T });
}

try {
  step = 'login';
  const a = await open(ALLIANCE, 'alliance');
  await page0Checks(a);
  await login(a, 'adams.key', 'Col. Adams');
  ok('Col. Adams logs in to Alliance\'s console with his key file (signed challenge)');
  check((await a.locator('#who').textContent()).includes('administrator'), 'his role makes him an administrator');

  step = 'map';
  await a.locator('path.op-own').first().waitFor({ timeout: T });
  await a.locator('path.op-peer').first().waitFor({ timeout: T });
  await a.locator('path.op-conflict').first().waitFor({ timeout: T });
  check(await a.locator('path.op-own').count() >= 2, 'the map draws Alliance\'s operations (ALPHA, CHARLIE)');
  check(await a.locator('path.op-peer').count() >= 1, 'and Federation\'s (BRAVO, a read-only copy)');
  check((await a.locator('#conflict-count').textContent()) === '1', 'one conflict listed (CHARLIE × the buffer)');
  check(await a.locator('#conflicts li').count() === 1, 'the conflict is in the side list');
  // Land and borders: two non-interactive layers, clipped to the view;
  // zoomed out, Italy's coasts and the Alps' borders are in it.
  for (let i = 0; i < 3; i++) { await a.locator('.leaflet-control-zoom-out').click(); await a.waitForTimeout(400); }
  const basemap = await a.evaluate(() => [...document.querySelectorAll('.leaflet-basemap-pane path')]
    .map((p) => (p.getAttribute('d') || '').length));
  check(basemap.length === 2 && basemap.every((n) => n > 1000), `the offline basemap (Natural Earth land and borders) is drawn (${basemap.join(' + ')} bytes of outline)`);
  for (let i = 0; i < 3; i++) { await a.locator('.leaflet-control-zoom-in').click(); await a.waitForTimeout(400); }
  await a.locator('path.op-conflict').first().click({ force: true });
  await a.locator('#selected', { hasText: 'm (WGS-84)' }).waitFor({ timeout: T });
  ok('selecting an operation shows its altitude band and times');
  await a.screenshot({ path: join(SHOTS, 'map.png') });

  step = 'time slider';
  // The slider spans the buffer's 24 h from the demo's start: ALPHA flies
  // at +1 h to +3 h, CHARLIE at +20 h to +22 h.
  await a.locator('#all-times').uncheck();
  const drawnAt = async (v) => {
    await a.locator('#time').fill(String(v));
    return [await a.locator('path.op-own').count(), await a.locator('#time-label').textContent()];
  };
  const [atStart] = await drawnAt(0);
  const [atTwo, labelTwo] = await drawnAt(83);
  const [atTwentyOne, labelTwentyOne] = await drawnAt(875);
  check(atStart === 0 && atTwo === 1 && atTwentyOne === 1 && labelTwo !== labelTwentyOne,
    `the time slider shows what is active when (our operations drawn: ${atStart} at the start, ${atTwo} at ${labelTwo}, ${atTwentyOne} at ${labelTwentyOne})`);
  await a.locator('#all-times').check();

  step = 'flash';
  const f = await open(FEDERATION, 'federation');
  await login(f, 'sokolov.key', 'Gen. Sokolov');
  ok('Gen. Sokolov logs in to Federation\'s console');
  await a.keyboard.press('2');
  await f.keyboard.press('2');
  const text = `FLASH from the console ${Date.now()}: hold all flights west of 10.3E`;
  await a.locator('#c-to').selectOption({ label: 'federation.detente.demo' });
  await a.locator('#c-sphere').selectOption('direct-line');
  await a.locator('#c-precedence').selectOption('FLASH');
  await a.locator('#c-text').fill(text);
  await a.locator('#compose button[type=submit]').click();
  const outRow = a.locator('tr.msg', { hasText: text });
  await outRow.locator('.st.delivered').waitFor({ timeout: T });
  ok('Adams signs a FLASH in his browser and sends it: delivered, with Federation\'s receipt');
  const inRow = f.locator('tr.msg', { hasText: text });
  await inRow.waitFor({ timeout: T });
  check(await inRow.locator('.prec.prec-FLASH').count() === 1, 'the FLASH appears in Federation\'s inbox, marked FLASH');
  check(/due in/.test(await inRow.locator('.countdown').textContent()), 'with the acknowledgement countdown running');
  await a.screenshot({ path: join(SHOTS, 'line-sent.png') });
  // Its first display to Sokolov is recorded in Federation's log, signed
  // with his key: who saw what, before any acknowledgement.
  await inRow.locator('.seen', { hasText: 'Gen. Sokolov' }).waitFor({ timeout: T });
  const access = await f.evaluate(async () => (await (await fetch('/line/v1/access')).json()).access);
  const seenId = await inRow.getAttribute('data-id');
  check(access.some((x) => x.what === 'message.seen' && x.subject === seenId && x.name === 'Gen. Sokolov' && x.signed_by_member),
    'the FLASH\'s first display to Sokolov is a seen marker he signed, in Federation\'s log');
  check(access.some((x) => x.what === 'console.login' && x.name === 'Gen. Sokolov' && x.signed_by_member),
    'and so is his login');
  await inRow.locator('button.ack').click();
  await inRow.locator('.st.acked').waitFor({ timeout: T });
  ok('Sokolov acknowledges it (signed in his browser)');
  await outRow.locator('.st.acked', { hasText: 'Gen. Sokolov' }).waitFor({ timeout: T });
  check(await outRow.locator('.countdown').count() === 0, 'Alliance\'s console shows the acknowledgement live and the timer is cleared');
  await a.screenshot({ path: join(SHOTS, 'line.png') });
  await f.screenshot({ path: join(SHOTS, 'line-federation.png') });

  step = 'contact line';
  // Adams draws a line of contact on the map and proposes it; it binds
  // only once Sokolov, in Federation's console, agrees to the same.
  for (const n of [a, f]) {
    await n.evaluate(() => document.activeElement && document.activeElement.blur());
    await n.keyboard.press('1');
  }
  const fedRow = (n, what) => n.locator(`#agreements li[data-peer="${n === a ? 'federation' : 'alliance'}.detente.demo"] .agreement.${what}`);
  check(await fedRow(a, 'area').getAttribute('data-status') === 'agreed', 'the map lists the deconfliction area agreed with Federation');
  await a.locator('#d-peer').selectOption('federation.detente.demo');
  await a.locator('#d-buffer').fill('3000');
  await a.locator('#d-start').click();
  await a.locator('#map').click({ position: { x: 380, y: 420 } });
  await a.locator('#map').click({ position: { x: 520, y: 380 } });
  await a.locator('#map').click({ position: { x: 660, y: 430 } });
  check(await a.locator('path.sketch-line').count() === 1, 'Adams draws three points of the line on the map');
  await a.locator('#d-propose').click();
  await a.locator('#d-status', { hasText: 'Proposed to federation.detente.demo' }).waitFor({ timeout: T });
  await a.locator('path.contact-proposed').waitFor({ timeout: T });
  check(await fedRow(a, 'contact-line').getAttribute('data-status') === 'proposed', 'proposed to Federation: drawn dashed, nothing binds yet');
  await fedRow(f, 'contact-line').locator('button.accept-contact-line').waitFor({ timeout: T });
  await f.locator('path.contact-proposed').waitFor({ timeout: T });
  ok('Federation\'s console shows the line offered, drawn on its map, with Accept');
  await fedRow(f, 'contact-line').locator('button.accept-contact-line').click();
  await f.locator('#agreements .agreement.contact-line[data-status="agreed"]').waitFor({ timeout: T });
  await a.locator('#agreements .agreement.contact-line[data-status="agreed"]').waitFor({ timeout: T });
  await a.locator('path.contact-agreed').waitFor({ timeout: T });
  await f.locator('path.contact-agreed').waitFor({ timeout: T });
  ok('Sokolov accepts: both consoles show the same line agreed, drawn solid');
  const bound = await a.evaluate(async () => {
    for (let i = 0; i < 100; i++) {
      const p = (await (await fetch('/line/v1/peers')).json()).peers.find((x) => x.name === 'federation.detente.demo').contact_line;
      if (p.bound) return p;
      await new Promise((r) => setTimeout(r, 100));
    }
    return null;
  });
  check(bound && bound.agreed.buffer_m === 3000 && bound.agreed.line.length === 3, 'Alliance\'s node binds the agreed line, buffered 3 km each side');
  await a.screenshot({ path: join(SHOTS, 'contact-line.png') });
  for (const n of [a, f]) await n.keyboard.press('2');

  step = 'channel';
  // Adams (administrator) suspends the information channel; Federation's
  // console shows it live; he reopens it.
  a.once('dialog', (d) => d.accept('maintenance of the relay'));
  await a.locator('#channels tr[data-peer="federation.detente.demo"][data-sphere="information"] button.chan-suspended').click();
  await f.locator('#channels tr[data-peer="alliance.detente.demo"][data-sphere="information"] .chstate.suspended').waitFor({ timeout: T });
  ok('Adams suspends the information channel; Federation\'s console shows it SUSPENDED, live');
  a.once('dialog', (d) => d.accept('relay back'));
  await a.locator('#channels tr[data-peer="federation.detente.demo"][data-sphere="information"] button.chan-open').click();
  await f.locator('#channels tr[data-peer="alliance.detente.demo"][data-sphere="information"] .chstate.open').waitFor({ timeout: T });
  ok('and reopens it');

  step = 'group';
  // One FLASH to both peers at once: a signed message each, shown together.
  const both = `FLASH to both peers ${Date.now()}: formation crossing sector 4`;
  await a.locator('#c-to').selectOption(['federation.detente.demo', 'commonwealth.detente.demo']);
  await a.locator('#c-sphere').selectOption('direct-line');
  await a.locator('#c-precedence').selectOption('FLASH');
  await a.locator('#c-text').fill(both);
  await a.locator('#compose button[type=submit]').click();
  await a.locator('tr.msg', { hasText: both }).nth(1).waitFor({ timeout: T });
  await a.locator('tr.msg', { hasText: both }).first().locator('.group', { hasText: 'group of 2' }).waitFor({ timeout: T });
  ok('Adams sends one FLASH to Federation and Commonwealth: two signed messages, shown as a group of 2');
  const note = f.locator('tr.msg', { hasText: both }).locator('.group', { hasText: 'one of a group sent to' });
  await note.waitFor({ timeout: T });
  const noteText = await note.textContent();
  check(noteText.includes('federation.detente.demo') && noteText.includes('commonwealth.detente.demo'), `Federation's console shows whom else it went to ("${noteText}")`);
  await f.locator('tr.msg', { hasText: both }).locator('button.ack').click();
  await a.locator('tr.msg', { hasText: both }).first().locator('.group', { hasText: '1 acknowledged' }).waitFor({ timeout: T });
  ok('Sokolov\'s acknowledgement shows in the group on Alliance\'s side, Commonwealth\'s still awaited');

  step = 'csrf';
  const csrf = await a.evaluate(async () => (await fetch('/console/api/logout', { method: 'POST' })).status);
  check(csrf === 403, 'a state-changing request without the session\'s CSRF token is refused (403)');

  step = 'revoked';
  const o = await open(FEDERATION, 'orlov');
  await login(o, 'orlov.key', 'Capt. Orlov');
  await o.keyboard.press('2');
  await o.locator('#c-to').selectOption({ label: 'alliance.detente.demo' });
  await o.locator('#c-sphere').selectOption('military');
  await o.locator('#c-precedence').selectOption('ROUTINE');
  await o.locator('#c-text').fill('Requesting a meeting');
  await o.locator('#compose button[type=submit]').click();
  await o.locator('#compose-status.error').waitFor({ timeout: T });
  const refusal = await o.locator('#compose-status').textContent();
  check(/not_accredited/.test(refusal) && /revoked at/.test(refusal), `the revoked Capt. Orlov is refused with a clear message: "${refusal}"`);
  check(!(await o.locator('#messages').textContent()).includes('Requesting a meeting'), 'and nothing was sent');
  await o.screenshot({ path: join(SHOTS, 'revoked.png') });
  const adminOnly = await o.evaluate(async () => {
    const s = await (await fetch('/console/api/session')).json();
    const r = await fetch('/line/v1/missions/alliance.detente.demo/close', {
      method: 'POST', headers: { 'content-type': 'application/json', 'x-detente-csrf': s.csrf }, body: JSON.stringify({ reason: 'no' }),
    });
    return r.status;
  });
  check(adminOnly === 403, 'a member without an administrator role cannot take the host\'s decisions (403)');

  step = 'missions';
  await a.keyboard.press('3');
  await a.locator('.mission', { hasText: 'REVOKED' }).waitFor({ timeout: T });
  check(await a.locator('.mission', { hasText: 'CLOSED' }).count() >= 1, 'the missions view shows the revocation and the closure');
  check(await a.locator('#accredit').isVisible(), 'and the host\'s actions to an administrator');
  await a.screenshot({ path: join(SHOTS, 'missions.png') });

  step = 'evidence';
  await a.keyboard.press('4');
  await a.locator('#cosigners li.sig-cosigner', { hasText: 'federation.detente.demo' }).waitFor({ timeout: T });
  ok('the evidence view shows Federation\'s cosignature on Alliance\'s checkpoint (the nodes witness each other)');
  check((await a.locator('#checkpoint').textContent()).startsWith('alliance.detente.demo\n'), 'the evidence view shows the latest signed checkpoint');
  const id = await a.evaluate(async (t) => {
    const m = await (await fetch('/line/v1/messages?direction=out')).json();
    return m.messages.find((x) => x.message.body.text === t).message.id;
  }, text);
  // The checkpoint must cover the acknowledgement (checkpoints follow the
  // log within 0.5 s): wait for one covering everything appended so far —
  // the log stops growing, the checkpoint's size stays put for 2 s.
  let last = -1;
  for (let stable = 0; stable < 4;) {
    const size = Number((await (await a.request.get(`${ALLIANCE}/log/checkpoint`)).text()).split('\n')[1]);
    stable = size === last ? stable + 1 : 0;
    last = size;
    await a.waitForTimeout(500);
  }
  await a.locator('#e-entity').selectOption(id);
  const [download] = await Promise.all([a.waitForEvent('download', { timeout: T }), a.locator('#export button').click()]);
  await download.saveAs(join(SHOTS, 'evidence.tar'));
  ok('one click exports the evidence bundle of the FLASH');
  await a.screenshot({ path: join(SHOTS, 'evidence.png') });

  for (const p of pages) check(p.outside.length === 0, `no request leaves the node (${p.outside.join(', ') || 'none'})`);
  console.log('console: all checks passed');
} catch (e) {
  console.log(`not ok - at ${step}: ${e.message}`);
  for (const [i, p] of pages.entries()) await p.screenshot({ path: join(SHOTS, `failure-${i}.png`) }).catch(() => {});
  process.exitCode = 1;
} finally {
  await browser.close();
}

async function page0Checks(page) {
  await page.locator('#login').waitFor({ timeout: T });
  ok('an unauthenticated visitor sees the login form');
  const status = await page.evaluate(async () => (await fetch('/line/v1/messages')).status);
  check(status === 401, 'and the line\'s endpoints answer 401 without a session');
}
