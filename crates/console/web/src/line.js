// The line: channels per peer, the inbox and outbox with precedence,
// delivery (queued / delivered with the peer's receipt / refused),
// acknowledgement countdowns and overdue alerts; compose, sign (in this
// browser, with the member's own key) and send; acknowledge.
import { api, app, el, utc, describe, needKey, alertBar } from './app.js';
import { signMessage, signAck, signSeen } from './keys.js';

const $ = (s) => document.querySelector(s);
const RANK = { FLASH: 0, IMMEDIATE: 1, PRIORITY: 2, ROUTINE: 3 };
let messages = [];
let inited = false;

export function init() {
  if (inited) return;
  inited = true;
  $('#compose').addEventListener('submit', send);
  $('#m-filter').addEventListener('change', () => refresh());
}

export function key(ev) {
  if (ev.key === 'n') { ev.preventDefault(); $('#c-text').focus(); }
  if (ev.key === 'a') {
    ev.preventDefault();
    const due = messages
      .filter((m) => m.direction === 'in' && !m.ack && m.delivery.state !== 'refused')
      .sort((x, y) => RANK[x.message.precedence] - RANK[y.message.precedence] || x.deadline_ms - y.deadline_ms)[0];
    if (due) acknowledge(due, 'accept');
  }
}

function countdown(deadline, now) {
  const s = Math.round((deadline - now) / 1000);
  const a = Math.abs(s);
  const t = `${Math.floor(a / 3600) ? `${Math.floor(a / 3600)}h ` : ''}${String(Math.floor((a % 3600) / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`;
  return s >= 0 ? `due in ${t}` : `OVERDUE by ${t}`;
}

export function tick() {
  const now = Date.now();
  for (const c of document.querySelectorAll('#messages .countdown')) {
    const d = Number(c.dataset.deadline);
    c.textContent = countdown(d, now);
    c.classList.toggle('overdue', d < now);
  }
}

function text(m) {
  const b = m.body;
  switch (b.type) {
    case 'text': return b.text;
    case 'operation-notification': return `Operation notification ${b.intent.slice(0, 8)}${b.text ? ` — ${b.text}` : ''}`;
    case 'deconfliction-request': return `Deconfliction request ${b.intents.map((i) => i.slice(0, 8)).join(' × ')} — ${b.proposal}`;
    case 'reply': return `Reply (${b.verdict}) to ${b.in_reply_to.slice(0, 8)}${b.text ? ` — ${b.text}` : ''}`;
    default: return b.type;
  }
}

function delivery(v) {
  const d = v.delivery;
  if (d.state === 'refused') return el('span', { class: 'st refused' }, `REFUSED — ${d.reason}`);
  if (v.direction === 'in') return el('span', { class: 'st delivered' }, `received · log #${v.index}`);
  if (d.state === 'delivered') return el('span', { class: 'st delivered' }, `✔ delivered · peer's receipt, their log #${d.index}`);
  return el('span', { class: 'st queued' }, '⏳ queued — not yet receipted');
}

// A message of a group: on the sender's side every addressee's state
// together, on an addressee's side who else it went to.
function groupNote(v) {
  const g = v.group;
  if (!g) return null;
  if (v.direction === 'in') return el('div', { class: 'small group' }, `one of a group sent to ${g.to.join(', ')}`);
  const each = g.messages.map((x) => `${x.to} ${x.ack ? `✔ ${x.ack}` : x.overdue ? 'OVERDUE' : x.delivery === 'delivered' ? '✔ delivered' : '⏳ queued'}`);
  return el('div', { class: 'small group' }, `group of ${g.to.length}, ${g.acknowledged} acknowledged: ${each.join(' · ')}`);
}

function ackCell(v) {
  if (v.ack) {
    return el('span', { class: `st acked ${v.ack.verdict}` },
      `✔ ${v.ack.verdict === 'accept' ? 'acknowledged' : 'acknowledged with objection'} by ${v.ack.by_name || v.ack.by.slice(0, 12)} at ${utc(v.ack.at_ms)}${v.ack.text ? ` — ${v.ack.text}` : ''}`);
  }
  if (v.delivery.state === 'refused') return '—';
  const cd = el('span', { class: `countdown${v.overdue ? ' overdue' : ''}`, dataset: { deadline: v.deadline_ms } }, countdown(v.deadline_ms, Date.now()));
  if (v.direction === 'out') return el('span', {}, 'awaiting their acknowledgement · ', cd);
  return el('span', {}, cd, ' ',
    el('button', { type: 'button', class: 'ack', onclick: () => acknowledge(v, 'accept') }, 'Acknowledge'),
    el('button', { type: 'button', class: 'object', onclick: () => acknowledge(v, 'object') }, 'Object'));
}

export async function refresh() {
  const dir = $('#m-filter').value;
  const [ch, list, inDue, outDue] = await Promise.all([
    api('GET', '/line/v1/channels'),
    api('GET', `/line/v1/messages?limit=300${dir ? `&direction=${dir}` : ''}`),
    api('GET', '/line/v1/messages?direction=in&limit=1'),
    api('GET', '/line/v1/messages?direction=out&limit=1'),
  ]);
  overdueAlert(inDue.overdue, outDue.overdue);
  const peers = [...new Set(ch.channels.map((c) => c.peer))];
  const to = $('#c-to');
  if (to.options.length !== peers.length) {
    // The first peer chosen by default; ctrl/shift-click adds more.
    to.replaceChildren(...peers.map((p, i) => el('option', { value: p, selected: i === 0 }, p)));
  }
  $('#channels tbody').replaceChildren(...ch.channels.map((c) => el('tr', { class: `ch-${c.state}`, dataset: { peer: c.peer, sphere: c.sphere } },
    el('td', {}, c.peer), el('td', {}, c.sphere),
    el('td', {}, el('span', { class: `chstate ${c.state}` }, c.state.toUpperCase()),
      c.since && c.since.reason ? el('div', { class: 'small' }, `${c.since.by}: ${c.since.reason}`) : null,
      app.session.admin ? channelActions(c) : null))));
  messages = list.messages;
  $('#overdue-count').textContent = list.overdue ? `${list.overdue} overdue` : '';
  $('#messages tbody').replaceChildren(...[...messages].reverse().map((v) => {
    const m = v.message;
    return el('tr', { class: `msg prec-${m.precedence} dir-${v.direction}${v.overdue ? ' is-overdue' : ''}`, dataset: { id: m.id } },
      el('td', { class: 'mono' }, utc(m.created_ms)),
      el('td', {}, el('span', { class: `prec prec-${m.precedence}` }, m.precedence)),
      el('td', {}, `${v.sender_name || m.sender.slice(0, 12)} (${m.from}) → ${m.to}`, groupNote(v)),
      el('td', {}, m.sphere),
      el('td', { class: 'text' }, v.suspect
        ? el('div', { class: 'st refused suspect' }, `SUSPECT — signed by a key declared compromised from ${utc(v.suspect.compromised_from_ms)}: ${v.suspect.reason}`)
        : null, text(m)),
      el('td', {}, delivery(v), v.seen && v.seen.length
        ? el('div', { class: 'small seen' }, `seen by ${v.seen.map((x) => `${x.name || x.member.slice(0, 12)} ${utc(x.at_ms)}`).join(', ')}`)
        : null),
      el('td', {}, ackCell(v)));
  }));
  markSeen();
}

// Incoming messages shown to this member for the first time: a seen
// marker signed with the member's key (when it is in the page), recorded
// in this party's log. Never asks for the key just for this.
async function markSeen() {
  if (!app.member) return;
  for (const v of messages) {
    if (v.direction !== 'in' || (v.seen || []).some((x) => x.member === app.session.member)) continue;
    const at = Date.now();
    try {
      const signature = await signSeen(app.member, app.session.node, v.message.id, at);
      await api('POST', '/console/api/seen', { message: v.message.id, at_ms: at, signature });
      v.seen = [...(v.seen || []), { member: app.session.member, at_ms: at }];
    } catch (e) {
      // A marker that cannot be recorded now is tried at the next refresh.
    }
  }
}

// An administrator's notices on a channel: a mission channel is
// suspended, closed or reopened by either party's notice; the direct line
// closes only once both parties have signed its closure.
function channelActions(c) {
  const notice = (state, what) => el('button', {
    type: 'button', class: `chan chan-${state}${state === 'open' ? '' : ' danger'}`,
    onclick: async () => {
      const reason = window.prompt(`${what} the ${c.sphere} channel with ${c.peer}: reason`);
      if (!reason) return;
      try {
        await api('POST', `/line/v1/channels/${encodeURIComponent(c.peer)}/${c.sphere}`, { state, reason });
        alertBar('');
        await refresh();
      } catch (e) {
        alertBar(`Channel notice refused: ${describe(e)}`);
      }
    },
  }, what);
  const out = [];
  if (c.state !== 'open') out.push(notice('open', 'Reopen'));
  if (c.sphere !== 'direct-line' && c.state === 'open') out.push(notice('suspended', 'Suspend'));
  if (c.state !== 'closed') out.push(notice('closed', c.sphere === 'direct-line' ? 'Sign closure' : 'Close'));
  return el('div', { class: 'actions' }, out);
}

// The overdue banner, whatever view is shown.
export async function alerts() {
  const [inDue, outDue] = await Promise.all([
    api('GET', '/line/v1/messages?direction=in&limit=1'),
    api('GET', '/line/v1/messages?direction=out&limit=1'),
  ]);
  overdueAlert(inDue.overdue, outDue.overdue);
}

function overdueAlert(ours, theirs) {
  const parts = [];
  if (ours) parts.push(`${ours} awaiting OUR acknowledgement`);
  if (theirs) parts.push(`${theirs} awaiting the peer's`);
  alertBar(parts.length ? `⚠ Overdue: ${parts.join(', ')} — see Line (2)` : '');
}

async function send(ev) {
  ev.preventDefault();
  const status = $('#compose-status');
  status.textContent = 'Signing…';
  status.className = '';
  try {
    const member = await needKey();
    const members = await api('GET', '/line/v1/members');
    const me = members.members.find((x) => x.key === app.session.member);
    let seq = (me ? me.last_seq : 0) + 1;
    const to = [...$('#c-to').selectedOptions].map((o) => o.value);
    if (!to.length) throw new Error('choose at least one peer');
    // Several peers: one message each, all naming the group and every
    // addressee; each is receipted, acknowledged and timed on its own.
    const group = to.length > 1 ? { id: crypto.randomUUID(), to } : null;
    const createdMs = Date.now();
    if (group) {
      // One request, one commit: each peer's message signed here.
      for (let attempt = 0; attempt < 5; attempt++) {
        const messages = [];
        for (const [i, peer] of to.entries()) {
          const message = {
            id: crypto.randomUUID(), from: app.session.node, to: peer,
            sphere: $('#c-sphere').value, precedence: $('#c-precedence').value,
            sender: app.session.member, body: { type: 'text', text: $('#c-text').value },
            seq: seq + i, created_ms: createdMs, group,
          };
          messages.push({ message, signature: await signMessage(member, message) });
        }
        const r = await api('POST', '/line/v1/messages/group', { messages });
        const first = r.messages[0].refused;
        if (first && first.code === 'out_of_sequence' && first.expected > seq) { seq = first.expected; continue; }
        const refused = r.messages.filter((m) => m.refused);
        if (refused.length) throw new Error(refused.map((m) => `${m.to}: ${m.refused.code} — ${m.refused.message}`).join('; '));
        status.textContent = `Signed and sent (${$('#c-precedence').value}) to ${to.join(', ')}: delivery and acknowledgement show below.`;
        $('#c-text').value = '';
        await refresh();
        return;
      }
      throw new Error('the sequence kept moving; try again');
    }
    for (const peer of to) {
      const base = {
        id: crypto.randomUUID(), from: app.session.node, to: peer,
        sphere: $('#c-sphere').value, precedence: $('#c-precedence').value,
        sender: app.session.member, body: { type: 'text', text: $('#c-text').value },
        ...(group ? { group } : {}),
      };
      let sent = false;
      for (let attempt = 0; attempt < 5 && !sent; attempt++) {
        const message = { ...base, seq, created_ms: createdMs };
        const signature = await signMessage(member, message);
        try {
          await api('POST', '/line/v1/messages', { message, signature });
          sent = true;
          seq += 1;
        } catch (e) {
          if (e.body && e.body.code === 'out_of_sequence' && e.body.expected > seq) { seq = e.body.expected; continue; }
          throw e;
        }
      }
      if (!sent) throw new Error('the sequence kept moving; try again');
    }
    status.textContent = `Signed and sent (${$('#c-precedence').value}) to ${to.join(', ')}: delivery and acknowledgement show below.`;
    $('#c-text').value = '';
    await refresh();
  } catch (e) {
    status.textContent = `Not sent: ${e.body ? describe(e) : e.message}`;
    status.className = 'error';
  }
}

async function acknowledge(v, verdict) {
  let textValue = '';
  if (verdict === 'object') {
    textValue = window.prompt('Objection (sent with the acknowledgement):') || '';
    if (!textValue) return;
  }
  try {
    const member = await needKey();
    const ack = {
      message: v.message.id, from: app.session.node, to: v.message.from, by: app.session.member,
      verdict, text: textValue, at_ms: Date.now(),
    };
    const signature = await signAck(member, ack);
    await api('POST', '/line/v1/acks', { ack, signature });
    await refresh();
  } catch (e) {
    alertBar(`Acknowledgement not recorded: ${e.body ? describe(e) : e.message}`);
  }
}
