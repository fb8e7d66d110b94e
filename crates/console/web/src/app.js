// The console's shell: login, tabs, the live connection, and the fetch
// helper every view uses. Views render from the node's own endpoints.
import { importSeed, signLogin } from './keys.js';
import * as mapView from './map.js';
import * as lineView from './line.js';
import * as missionsView from './missions.js';
import * as evidenceView from './evidence.js';

const $ = (s) => document.querySelector(s);
const views = { map: mapView, line: lineView, missions: missionsView, evidence: evidenceView };

export const app = {
  session: null, // what /console/api/session says
  member: null, // { key: CryptoKey, publicHex }
  view: 'map',
  online: true,
};

export class ApiError extends Error {
  constructor(status, body) {
    super(body && body.message ? body.message : `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

// Calls the node; state-changing calls carry the session's CSRF token.
export async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && app.session) headers['x-detente-csrf'] = app.session.csrf;
  let r;
  try {
    r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin' });
  } catch (e) {
    setOnline(false);
    throw new ApiError(0, { message: 'the node cannot be reached' });
  }
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = { message: text }; }
  if (r.status === 401 && path !== '/console/api/login') {
    showLogin('Your session has ended: log in again.');
  }
  if (!r.ok) throw new ApiError(r.status, json);
  return json;
}

// A human sentence for an error body: the message, and the field at fault.
export function describe(e) {
  const b = e.body || {};
  const field = b.field ? ` (${b.field})` : '';
  const code = b.code ? `${b.code}: ` : '';
  return `${code}${e.message}${field}`;
}

export function utc(ms) {
  if (ms === null || ms === undefined) return '—';
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function setOnline(on) {
  if (app.online === on) return;
  app.online = on;
  const c = $('#conn');
  if (on) {
    c.textContent = '● live';
    c.className = 'conn online';
  } else {
    c.textContent = `● OFFLINE since ${utc(Date.now())} — reconnecting`;
    c.className = 'conn offline';
  }
}

let events = null;
let refreshing = null;
function refresh() {
  if (!app.session) return;
  if (refreshing) { refreshing.again = true; return; }
  refreshing = { again: false };
  const work = [views[app.view].refresh(app)];
  if (app.view !== 'line') work.push(lineView.alerts());
  Promise.all(work).catch((e) => {
    // Try again shortly: a view must not stay stale until the next change.
    if (e.status !== 401) { console.warn('refresh', e); setTimeout(refresh, 2000); }
  }).finally(() => {
    const again = refreshing.again;
    refreshing = null;
    if (again) refresh();
  });
}

function connect() {
  if (events) events.close();
  events = new EventSource('/console/api/events');
  events.addEventListener('state', () => { setOnline(true); refresh(); });
  events.onopen = () => setOnline(true);
  events.onerror = () => {
    setOnline(false);
    // The browser retries by itself; if the session ended meanwhile, say so.
    if (events.readyState === EventSource.CLOSED) setTimeout(() => app.session && connect(), 2000);
  };
}

function show(view) {
  app.view = view;
  for (const [name] of Object.entries(views)) {
    $(`#view-${name}`).hidden = name !== view;
    const tab = document.querySelector(`[data-view="${name}"]`);
    tab.setAttribute('aria-selected', String(name === view));
  }
  views[view].shown?.(app);
  refresh();
}

function showLogin(message) {
  app.session = null;
  if (events) { events.close(); events = null; }
  $('#bar').hidden = true;
  for (const name of Object.keys(views)) $(`#view-${name}`).hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
  $('#key-text').focus();
}

function started(session) {
  app.session = session;
  $('#login').hidden = true;
  $('#bar').hidden = false;
  $('#node-name').textContent = session.node;
  $('#who').textContent = `${session.name} · ${session.role}${session.admin ? ' · administrator' : ''}`;
  document.body.classList.toggle('admin', session.admin);
  for (const v of Object.values(views)) v.init?.(app);
  connect();
  show(app.view);
}

async function login(ev) {
  ev.preventDefault();
  $('#login-error').textContent = '';
  try {
    const file = $('#key-file').files[0];
    const text = file ? await file.text() : $('#key-text').value;
    const member = await importSeed(text);
    $('#key-text').value = '';
    const c = await api('GET', '/console/api/challenge');
    const signature = await signLogin(member, c.domain, c.node, c.challenge);
    const session = await api('POST', '/console/api/login', { member: member.publicHex, challenge: c.challenge, signature });
    app.member = member;
    started(session);
  } catch (e) {
    $('#login-error').textContent = e instanceof ApiError ? describe(e) : e.message;
  }
}

async function logout() {
  try { await api('POST', '/console/api/logout'); } catch { /* ended anyway */ }
  app.member = null;
  showLogin('Logged out.');
}

// Needs the member's key in this page (after a reload, load it again).
export async function needKey() {
  if (app.member) return app.member;
  const text = window.prompt('Your member key is needed to sign: paste it (64 hex digits)');
  if (!text) throw new Error('not signed: no key');
  const m = await importSeed(text);
  if (m.publicHex !== app.session.member) throw new Error('that key is not the key of the member logged in');
  app.member = m;
  return m;
}

function keys(ev) {
  const t = ev.target;
  const typing = t && (t.tagName === 'TEXTAREA' || t.tagName === 'SELECT'
    || (t.tagName === 'INPUT' && !['checkbox', 'radio', 'range', 'button', 'submit', 'file'].includes(t.type)));
  if (ev.key === 'Escape' && typing) { t.blur(); return; }
  if (typing || ev.ctrlKey || ev.metaKey || ev.altKey || !app.session) return;
  const tabs = { 1: 'map', 2: 'line', 3: 'missions', 4: 'evidence' };
  if (tabs[ev.key]) { ev.preventDefault(); show(tabs[ev.key]); return; }
  views[app.view].key?.(ev, app);
}

export function alertBar(text) {
  $('#alerts').textContent = text || '';
  $('#alerts').classList.toggle('on', Boolean(text));
}

async function boot() {
  $('#login-form').addEventListener('submit', login);
  $('#logout').addEventListener('click', logout);
  for (const b of document.querySelectorAll('[data-view]')) b.addEventListener('click', () => show(b.dataset.view));
  document.addEventListener('keydown', keys);
  // Countdowns tick every second without asking the node.
  setInterval(() => views[app.view].tick?.(app), 1000);
  try {
    started(await api('GET', '/console/api/session'));
  } catch {
    showLogin();
  }
}

boot();
