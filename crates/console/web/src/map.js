// The map: operations and constraints of every party on an offline
// basemap (Natural Earth, shipped in the build), conflicts highlighted, a
// time slider, altitude and times on selection.
import { api, app, el, utc, describe } from './app.js';

const $ = (s) => document.querySelector(s);
const PEER_COLOURS = ['#c0392b', '#8e44ad', '#d35400', '#16a085'];
let map = null;
let layer = null;
let data = null;
let fitted = false;
let selected = null;
// The peers with their agreements (areas, lines of contact).
let peers = [];
// The line being drawn: its points, and whether clicks add to it.
let drawing = null;
let sketch = null;

// Ours blue; the first peer red (as the legend says), further peers in
// other colours, in the order the node lists them.
const peerOrder = [];
function colour(owner) {
  if (owner === 'own') return '#1f5fbf';
  if (!peerOrder.includes(owner)) peerOrder.push(owner);
  return PEER_COLOURS[peerOrder.indexOf(owner) % PEER_COLOURS.length];
}

export async function init() {
  if (map) return;
  map = L.map('map', { zoomControl: true, attributionControl: true, worldCopyJump: true, keyboard: true })
    .setView([50, 20], 4);
  map.attributionControl.setPrefix(false);
  map.attributionControl.addAttribution('Basemap: Natural Earth 1:50m');
  // The basemap in its own pane below the operations, whenever it arrives.
  map.createPane('basemap').style.zIndex = 350;
  layer = L.layerGroup().addTo(map);
  sketch = L.layerGroup().addTo(map);
  map.on('click', (ev) => {
    if (!drawing) return;
    drawing.push([Number(ev.latlng.lat.toFixed(6)), Number(ev.latlng.lng.toFixed(6))]);
    drawSketch();
  });
  $('#d-start').addEventListener('click', () => {
    drawing = [];
    $('#map').classList.add('drawing');
    $('#d-status').textContent = 'Click the line\'s points on the map, in order; then Propose.';
    drawSketch();
  });
  $('#d-clear').addEventListener('click', () => { drawing = null; $('#map').classList.remove('drawing'); drawSketch(); $('#d-status').textContent = ''; });
  $('#draw-line').addEventListener('submit', propose);
  const until = new Date(Date.now() + 24 * 3600e3);
  $('#d-until').value = new Date(until.getTime() - until.getTimezoneOffset() * 60e3).toISOString().slice(0, 16);
  $('#all-times').addEventListener('change', () => { $('#time').disabled = $('#all-times').checked; draw(); });
  $('#time').addEventListener('input', draw);
  draw();
  // The operator's own raster tiles, when the node has some (MBTiles),
  // under Natural Earth's coasts and borders.
  let local = null;
  try { local = (await api('GET', '/console/api/basemap')).tiles; } catch { local = null; }
  if (local) {
    map.createPane('tiles').style.zIndex = 340;
    L.tileLayer(local.url, {
      pane: 'tiles', minNativeZoom: local.min_zoom, maxNativeZoom: local.max_zoom,
      attribution: local.attribution || local.name, className: 'local-tiles',
    }).addTo(map);
  }
  const base = await (await fetch('basemap.json')).json();
  L.geoJSON(base.land, { pane: 'basemap', interactive: false, style: { color: '#9c9480', weight: 0.6, fillColor: '#ece6d6', fillOpacity: local ? 0 : 1 } }).addTo(map);
  L.geoJSON(base.borders, { pane: 'basemap', interactive: false, style: { color: '#8a7f6a', weight: 0.8, dashArray: '3 3' } }).addTo(map);
}

export function shown() {
  if (map) setTimeout(() => map.invalidateSize(), 0);
}

export async function refresh() {
  const [airspace, p] = await Promise.all([api('GET', '/console/api/airspace'), api('GET', '/line/v1/peers')]);
  data = airspace;
  peers = p.peers;
  draw();
  agreements();
}

function drawSketch() {
  sketch.clearLayers();
  const pts = drawing || [];
  for (const p of pts) L.circleMarker(p, { radius: 4, color: '#b00020', className: 'sketch-point' }).addTo(sketch);
  if (pts.length > 1) L.polyline(pts, { color: '#b00020', weight: 3, dashArray: '2 6', className: 'sketch-line' }).addTo(sketch);
  $('#d-propose').disabled = pts.length < 2;
}

// The line drawn, proposed to the peer: the node buffers it on the
// ellipsoid; it binds once the peer proposes the same.
async function propose(ev) {
  ev.preventDefault();
  const status = $('#d-status');
  try {
    const v = await api('POST', '/line/v1/contact-line', {
      peer: $('#d-peer').value, line: drawing, buffer_m: Number($('#d-buffer').value),
      time_end: new Date($('#d-until').value).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    });
    status.textContent = `Proposed to ${v.peer} (${v.vertices} vertices buffered): ${v.contact_line.status}.`;
    status.className = 'small';
    drawing = null;
    $('#map').classList.remove('drawing');
    drawSketch();
    await refresh();
  } catch (e) {
    status.textContent = `Not proposed: ${e.body ? describe(e) : e.message}`;
    status.className = 'small error';
  }
}

const WORDS = { agreed: 'agreed', proposed: 'proposed by us, awaiting theirs', offered: 'offered by them', none: 'none' };

// Per peer: the deconfliction area and the line of contact, as agreed or
// proposed; an administrator accepts what the peer offers.
function agreements() {
  const admin = app.session && app.session.admin;
  $('#draw-line').hidden = !admin;
  const sel = $('#d-peer');
  if (sel.options.length !== peers.length) sel.replaceChildren(...peers.map((p) => el('option', { value: p.name }, p.name)));
  $('#agreements').replaceChildren(...peers.map((p) => {
    const row = (what, a, path) => el('div', { class: `agreement ${path}`, dataset: { status: a.status } },
      `${what}: `, el('span', { class: `st ${a.status}` }, WORDS[a.status] || a.status),
      a.agreed_index !== null && a.status !== 'agreed' ? ' (the agreed one binds meanwhile)' : '',
      admin && a.status === 'offered'
        ? el('button', { type: 'button', class: `accept-${path}`, onclick: () => accept(p.name, path) }, 'Accept')
        : null);
    return el('li', { dataset: { peer: p.name } }, el('strong', {}, p.name),
      row('area', p.area_agreement, 'area'), row('line of contact', p.contact_line, 'contact-line'));
  }));
}

async function accept(peer, what) {
  try {
    await api('POST', `/line/v1/peers/${encodeURIComponent(peer)}/${what}/accept`);
    await refresh();
  } catch (e) {
    $('#d-status').textContent = `Not accepted: ${e.body ? describe(e) : e.message}`;
  }
}

function span() {
  const all = [...data.intents, ...data.constraints];
  if (!all.length) return [data.now_ms, data.now_ms + 3600e3];
  return [Math.min(...all.map((x) => x.time_start_ms)), Math.max(...all.map((x) => x.time_end_ms))];
}

function at() {
  if ($('#all-times').checked) return null;
  const [a, b] = span();
  return a + ((b - a) * Number($('#time').value)) / 1000;
}

function activeAt(v, t) {
  return t === null || ((v.time_start_ms ?? -Infinity) <= t && t < (v.time_end_ms ?? Infinity));
}

function shape(v, style) {
  if (v.outline.polygon) return L.polygon(v.outline.polygon, style);
  const c = v.outline.circle;
  return L.circle(c.center, { ...style, radius: c.radius_m });
}

function band(v) {
  return `${Math.round(v.altitude_lower_m)}–${Math.round(v.altitude_upper_m)} m (WGS-84)`;
}

function select(kind, x) {
  selected = { kind, id: x.id };
  const box = $('#selected');
  box.replaceChildren(
    el('div', { class: 'sel-title' }, kind === 'intent' ? 'Operation ' : x.contact ? 'Line of contact ' : 'Constraint ', el('code', {}, x.id)),
    el('div', {}, `Owner: ${x.owner === 'own' ? `us (${data.me})` : x.owner}`),
    el('div', {}, `Manager: ${x.manager}`),
    kind === 'intent' ? el('div', {}, `State: ${x.state} · version ${x.version}`) : el('div', {}, `Version ${x.version}`),
    el('div', {}, `${utc(x.time_start_ms)} → ${utc(x.time_end_ms)}`),
    el('ul', { class: 'volumes' }, x.volumes.map((v, i) => el('li', {}, `Volume ${i + 1}: ${band(v)}, ${utc(v.time_start_ms)} → ${utc(v.time_end_ms)}`))),
  );
}

function draw() {
  if (!map || !layer || !data) return;
  const t = at();
  const [a, b] = span();
  $('#time-label').textContent = t === null ? `${utc(a)} → ${utc(b)}` : utc(t);
  layer.clearLayers();
  const inConflict = new Set();
  for (const c of data.conflicts) { inConflict.add(c.a.id); inConflict.add(c.b.id); }
  const bounds = [];
  // What each pair agreed: areas dotted green; lines of contact as drawn
  // (agreed: solid; proposed or offered: dashed).
  for (const p of peers) {
    for (const poly of p.area) {
      L.polygon(poly, { color: '#2e7d32', weight: 1.5, dashArray: '2 6', fill: false, interactive: false, className: 'area-agreed' }).addTo(layer);
    }
    const c = p.contact_line;
    const lines = [];
    if (c.agreed) lines.push([c.agreed.line, 'agreed']);
    for (const [x, who] of [[c.ours, 'proposed by us'], [c.theirs, `offered by ${p.name}`]]) {
      if (x && x.terms.line.length && c.status !== 'agreed' && !(c.agreed && JSON.stringify(c.agreed.line) === JSON.stringify(x.terms.line))) lines.push([x.terms.line, who]);
    }
    for (const [line, how] of lines) {
      const agreed = how === 'agreed';
      L.polyline(line, { color: agreed ? '#7a0019' : '#e67e22', weight: 3, dashArray: agreed ? null : '8 6', className: `contact-line contact-${agreed ? 'agreed' : 'proposed'}` })
        .bindTooltip(`Line of contact with ${p.name}: ${how}`).addTo(layer);
    }
  }
  for (const c of data.constraints) {
    for (const v of c.volumes.filter((v) => activeAt(v, t))) {
      const style = c.contact
        ? { color: '#b00020', weight: 3, dashArray: '10 6', fillColor: '#b00020', fillOpacity: 0.12 }
        : { color: '#555', weight: 1.5, dashArray: '4 4', fillColor: '#777', fillOpacity: 0.15 };
      if (inConflict.has(c.id)) style.weight = 4;
      const s = shape(v, style).addTo(layer);
      s.bindTooltip(`${c.contact ? 'LINE OF CONTACT' : 'Constraint'} · ${c.owner === 'own' ? 'ours' : c.owner} · ${band(v)}`);
      s.on('click', () => select('constraint', c));
      bounds.push(s.getBounds());
    }
  }
  for (const i of data.intents) {
    for (const v of i.volumes.filter((v) => activeAt(v, t))) {
      const col = colour(i.owner);
      const style = {
        color: inConflict.has(i.id) ? '#f2b400' : col,
        weight: inConflict.has(i.id) ? 4 : 2,
        dashArray: i.state === 'Accepted' ? '6 4' : null,
        fillColor: col,
        fillOpacity: i.state === 'Activated' ? 0.45 : 0.2,
        className: `op op-${i.owner === 'own' ? 'own' : 'peer'}${inConflict.has(i.id) ? ' op-conflict' : ''}`,
      };
      const s = shape(v, style).addTo(layer);
      s.bindTooltip(`${i.owner === 'own' ? 'Ours' : i.owner} · ${i.state} · ${band(v)}`);
      s.on('click', () => select('intent', i));
      bounds.push(s.getBounds());
    }
  }
  if (!fitted && bounds.length) {
    map.fitBounds(bounds.reduce((acc, x) => acc.extend(x), L.latLngBounds(bounds[0].getSouthWest(), bounds[0].getNorthEast())), { padding: [30, 30], maxZoom: 9 });
    fitted = true;
  }
  $('#conflict-count').textContent = String(data.conflicts.length);
  $('#conflicts').replaceChildren(...data.conflicts.map((c) => {
    const name = (p) => {
      const x = [...data.intents, ...data.constraints].find((e) => e.id === p.id);
      return x ? `${x.owner === 'own' ? 'ours' : x.owner} ${p.id.slice(0, 8)}` : p.id.slice(0, 8);
    };
    const o = c.overlaps[0];
    return el('li', { class: 'conflict', tabindex: 0 },
      el('strong', {}, c.kind === 'intent-intent' ? 'Operations' : 'Operation × constraint'), ' ',
      `${name(c.a)} × ${name(c.b)}`,
      o ? el('div', { class: 'mono small' }, `${o.time_start.value} → ${o.time_end.value}, ${Math.round(o.altitude_lower.value)}–${Math.round(o.altitude_upper.value)} m`) : null);
  }));
  if (selected) {
    const x = (selected.kind === 'intent' ? data.intents : data.constraints).find((e) => e.id === selected.id);
    if (x) select(selected.kind, x);
  }
}
