// Evidence: the latest checkpoint with its signatures and the peers'
// cosignatures; one-click export of a bundle about an operation or a
// message, verifiable offline with `detente verify`.
import { api, el, describe } from './app.js';

const $ = (s) => document.querySelector(s);
let inited = false;

export function init() {
  if (inited) return;
  inited = true;
  $('#export').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const id = $('#e-entity').value;
    if (!id) return;
    $('#export-status').textContent = 'Preparing the bundle…';
    // A plain navigation: the browser saves the tar the node answers with.
    const a = el('a', { href: `/console/api/evidence?entity=${encodeURIComponent(id)}`, download: `evidence-${id}.tar` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => { $('#export-status').textContent = `Saved evidence-${id}.tar: untar it, then run detente verify on the folder.`; }, 500);
  });
}

export async function refresh() {
  const r = await fetch('/log/checkpoint');
  const note = await r.text();
  $('#checkpoint').textContent = note;
  const lines = note.split('\n');
  const sigs = lines.filter((l) => l.startsWith('\u2014 '));
  const origin = lines[0];
  $('#cosigners').replaceChildren(...sigs.map((l) => {
    const name = l.slice(2).split(' ')[0];
    const what = name === origin ? 'signed by this node' : 'cosigned by the witness';
    return el('li', { class: name === origin ? 'sig-own' : 'sig-cosigner' }, `${what} `, el('strong', {}, name), ' ',
      el('span', { class: 'mono small' }, `${l.slice(2 + name.length + 1, 2 + name.length + 20)}…`));
  }));
  if (sigs.length < 2) $('#cosigners').append(el('li', { class: 'small' }, 'No witness has cosigned this checkpoint yet (witnesses are configured with --witness).'));
  try {
    const [air, msgs] = await Promise.all([api('GET', '/console/api/airspace'), api('GET', '/line/v1/messages?limit=100')]);
    const sel = $('#e-entity');
    const keep = sel.value;
    sel.replaceChildren(
      el('optgroup', { label: 'Operations' }, air.intents.map((i) => el('option', { value: i.id }, `${i.owner === 'own' ? 'ours' : i.owner} · ${i.state} · ${i.id}`))),
      el('optgroup', { label: 'Constraints' }, air.constraints.map((c) => el('option', { value: c.id }, `${c.contact ? 'line of contact' : 'constraint'} · ${c.id}`))),
      el('optgroup', { label: 'Messages' }, [...msgs.messages].reverse().map((m) => el('option', { value: m.message.id }, `${m.message.precedence} ${m.direction} · ${m.message.id}`))),
    );
    if (keep) sel.value = keep;
  } catch (e) {
    $('#export-status').textContent = describe(e);
  }
}
