// Missions: the accredited members of each mission, quotas, revocations
// and closures; the host's actions for administrators.
import { api, app, el, utc, describe, alertBar } from './app.js';

const $ = (s) => document.querySelector(s);
let members = [];
let inited = false;

export function init() {
  if (inited) return;
  inited = true;
  $('#accredit').addEventListener('submit', accredit);
  $('#a-guest').addEventListener('change', fillMembers);
}

async function act(what, method, path, body) {
  try {
    await api(method, path, body);
    alertBar('');
    await refresh();
  } catch (e) {
    alertBar(`${what} refused: ${describe(e)}`);
  }
}

function fillMembers() {
  const guest = $('#a-guest').value;
  $('#a-member').replaceChildren(...members
    .filter((m) => m.party === guest && m.removed_ms === null)
    .map((m) => el('option', { value: m.key, dataset: { name: m.name } }, `${m.name} — ${m.role}`)));
}

// "2d 3h 5m" until an expulsion or closure given with notice takes effect.
function leavesIn(ms) {
  const m = Math.ceil(ms / 60000);
  const d = Math.floor(m / 1440), h = Math.floor((m % 1440) / 60);
  return d ? `${d}d ${h}h ${m % 60}m` : (h ? `${h}h ${m % 60}m` : `${m % 60}m`);
}

// A notice period asked of the host: hours, blank or 0 for at once.
function notice(what) {
  const h = window.prompt(`${what}: notice in hours (0 or blank: at once)`, '0');
  if (h === null) return undefined;
  const n = Number(h || 0);
  return n > 0 ? Date.now() + n * 3600000 : null;
}

export async function refresh() {
  const [ms, mem] = await Promise.all([api('GET', '/line/v1/missions'), api('GET', '/line/v1/members')]);
  members = mem.members;
  const me = app.session.node;
  const admin = app.session.admin;
  $('#members tbody').replaceChildren(...members.map((m) => el('tr', {},
    el('td', {}, m.party === me ? `${m.party} (us)` : m.party), el('td', {}, m.name), el('td', {}, m.role),
    el('td', {}, m.spheres.join(', ')),
    el('td', {}, m.removed_ms ? el('span', { class: 'st refused' }, `removed ${utc(m.removed_ms)}`) : 'registered'))));
  $('#missions').replaceChildren(...(ms.missions.length ? ms.missions : []).map((m) => {
    const hosting = m.host === me;
    const closed = !m.closed ? null : m.closed.in_effect
      ? el('div', { class: 'st refused' }, `CLOSED from ${utc(m.closed.effective_ms)} — ${m.closed.reason}`)
      : el('div', { class: 'st pending countdown' }, `CLOSING in ${leavesIn(m.closed.leaves_in_ms)} (at ${utc(m.closed.effective_ms)}) — ${m.closed.reason}`);
    const rows = m.accreditations.map((a) => el('tr', { class: a.active ? '' : 'inactive' },
      el('td', {}, a.name), el('td', {}, a.role), el('td', {}, a.spheres.join(', ')),
      el('td', { class: 'mono' }, `${utc(a.valid_from_ms)} → ${utc(a.valid_until_ms)}`),
      el('td', {}, a.active
        ? (a.revoked && !a.revoked.in_effect
          ? el('span', { class: 'st pending countdown' }, `EXPELLED — leaves in ${leavesIn(a.revoked.leaves_in_ms)} (at ${utc(a.revoked.at_ms)}) — ${a.revoked.reason}`)
          : el('span', { class: 'st delivered' }, 'active'))
        : el('span', { class: 'st refused' }, a.revoked ? `REVOKED ${utc(a.revoked.at_ms)} — ${a.revoked.reason}` : (a.inactive_reason || 'inactive'))),
      el('td', {}, hosting && admin && a.active ? el('button', {
        type: 'button', class: 'revoke',
        onclick: () => {
          const reason = window.prompt(`Revoke the accreditation of ${a.name}: reason`);
          if (!reason) return;
          const at = notice('Revocation');
          if (at === undefined) return;
          act('Revocation', 'POST', `/line/v1/accreditations/${a.id}/revoke`, at ? { reason, effective_ms: at } : { reason });
        },
      }, 'Revoke') : null)));
    return el('div', { class: 'mission' },
      el('h3', {}, hosting ? `${m.guest}'s mission with us` : `Our mission with ${m.host}`),
      el('div', {}, `Positions: ${m.active} of ${m.quota} in use`),
      closed,
      el('table', { class: 'grid' }, el('thead', {}, el('tr', {}, ['Name', 'Role', 'Spheres', 'Valid', 'State', ''].map((h) => el('th', {}, h)))), el('tbody', {}, rows)),
      hosting && admin && !m.closed ? el('div', { class: 'actions' },
        el('button', {
          type: 'button',
          onclick: () => {
            const q = window.prompt(`New positions quota for ${m.guest}'s mission`, String(m.quota));
            if (q !== null) act('Quota', 'PUT', `/line/v1/missions/${m.guest}/quota`, { quota: Number(q), ending: [] });
          },
        }, 'Set quota'),
        el('button', {
          type: 'button', class: 'danger',
          onclick: () => {
            const reason = window.prompt(`Close ${m.guest}'s mission: reason`);
            if (!reason) return;
            const at = notice('Closure');
            if (at === undefined) return;
            act('Closure', 'POST', `/line/v1/missions/${m.guest}/close`, at ? { reason, effective_ms: at } : { reason });
          },
        }, 'Close mission')) : null);
  }));
  if (!ms.missions.length) $('#missions').append(el('p', {}, 'No missions yet.'));
  const peers = [...new Set(members.filter((m) => m.party !== me).map((m) => m.party))];
  const g = $('#a-guest');
  if (g.options.length !== peers.length) { g.replaceChildren(...peers.map((p) => el('option', { value: p }, p))); }
  fillMembers();
  $('#accredit').hidden = !admin;
}

async function accredit(ev) {
  ev.preventDefault();
  const opt = $('#a-member').selectedOptions[0];
  if (!opt) return;
  await act('Accreditation', 'POST', `/line/v1/missions/${$('#a-guest').value}/accreditations`, {
    member: opt.value, name: opt.dataset.name, role: $('#a-role').value,
    spheres: $('#a-spheres').value.split(',').map((s) => s.trim()).filter(Boolean),
    valid_until_ms: Date.now() + Number($('#a-days').value) * 86400e3,
  });
}
