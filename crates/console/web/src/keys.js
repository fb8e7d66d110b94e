// A member's key in the browser: the hex seed of `detente member keygen`,
// imported into WebCrypto (Ed25519) as a non-extractable signing key. It
// never leaves the page; the node sees only signatures.
import { encode, hexToBytes, bytesToHex } from './cbor.js';

const PKCS8_PREFIX = hexToBytes('302e020100300506032b657004220420');
const utf8 = new TextEncoder();

function b64urlToBytes(s) {
  const b = atob(s.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(b, (c) => c.charCodeAt(0));
}

export async function importSeed(text) {
  const hex = text.trim();
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) {
    throw new Error('a member key file holds 64 hex digits (made by `detente member keygen`)');
  }
  const der = new Uint8Array(48);
  der.set(PKCS8_PREFIX);
  der.set(hexToBytes(hex), 16);
  // Import once extractable to learn the public key, then keep a copy that
  // cannot be exported.
  const tmp = await crypto.subtle.importKey('pkcs8', der, { name: 'Ed25519' }, true, ['sign']);
  const jwk = await crypto.subtle.exportKey('jwk', tmp);
  const key = await crypto.subtle.importKey('pkcs8', der, { name: 'Ed25519' }, false, ['sign']);
  der.fill(0);
  return { key, publicHex: bytesToHex(b64urlToBytes(jwk.x)) };
}

async function sign(member, bytes) {
  const sig = await crypto.subtle.sign({ name: 'Ed25519' }, member.key, bytes);
  return bytesToHex(new Uint8Array(sig));
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a); out.set(b, a.length);
  return out;
}

// A seen marker: liaison::seen_text.
export function signSeen(member, node, message, atMs) {
  return sign(member, utf8.encode(`detente-seen/v1\n${node}\n${message}\n${atMs}`));
}

export function signLogin(member, domain, node, challenge) {
  return sign(member, utf8.encode(`${domain}${node}\n${challenge}`));
}

// The message as the node encodes it (liaison::Message::to_value): ids as
// text, the sender's key as bytes.
function bodyValue(b) {
  switch (b.type) {
    case 'text': return { type: 'text', text: b.text };
    case 'operation-notification':
      return { type: b.type, intent: b.intent, extents_sha256: b.extents_sha256 ? hexToBytes(b.extents_sha256) : null, text: b.text };
    case 'deconfliction-request': return { type: b.type, intents: b.intents, proposal: b.proposal };
    case 'reply': return { type: b.type, in_reply_to: b.in_reply_to, verdict: b.verdict, text: b.text };
    default: throw new Error(`unknown body type ${b.type}`);
  }
}

export function signMessage(member, m) {
  const v = {
    id: m.id, from: m.from, to: m.to, sphere: m.sphere, precedence: m.precedence,
    sender: hexToBytes(m.sender), seq: m.seq, created_ms: m.created_ms, body: bodyValue(m.body),
  };
  // Only a message sent to several peers at once has a group.
  if (m.group) v.group = { id: m.group.id, to: m.group.to };
  return sign(member, concat(utf8.encode('detente-message/v1\n'), encode(v)));
}

export function signAck(member, a) {
  const v = {
    message: a.message, from: a.from, to: a.to, by: hexToBytes(a.by),
    verdict: a.verdict, text: a.text, at_ms: a.at_ms,
  };
  return sign(member, concat(utf8.encode('detente-ack/v1\n'), encode(v)));
}
