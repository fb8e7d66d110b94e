// Deterministic CBOR (RFC 8949 §4.2.1), exactly as the node encodes what a
// member signs (tlog::cbor): shortest heads, definite lengths, map keys
// sorted by the bytes of their encodings. Values: non-negative safe
// integers, strings, Uint8Array (bytes), arrays, plain objects (maps with
// text keys), null.

const utf8 = new TextEncoder();

function head(out, major, n) {
  const m = major << 5;
  if (n < 24) out.push(m | n);
  else if (n < 0x100) out.push(m | 24, n);
  else if (n < 0x10000) out.push(m | 25, n >> 8, n & 0xff);
  else if (n < 0x100000000) out.push(m | 26, (n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  else {
    const hi = Math.floor(n / 0x100000000);
    const lo = n >>> 0;
    out.push(m | 27, (hi >>> 24) & 0xff, (hi >>> 16) & 0xff, (hi >>> 8) & 0xff, hi & 0xff,
      (lo >>> 24) & 0xff, (lo >>> 16) & 0xff, (lo >>> 8) & 0xff, lo & 0xff);
  }
}

function compare(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function into(out, v) {
  if (v === null) { out.push(0xf6); return; }
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v) || v < 0) throw new Error(`not a CBOR unsigned integer: ${v}`);
    head(out, 0, v);
  } else if (typeof v === 'string') {
    const b = utf8.encode(v);
    head(out, 3, b.length);
    for (const x of b) out.push(x);
  } else if (v instanceof Uint8Array) {
    head(out, 2, v.length);
    for (const x of v) out.push(x);
  } else if (Array.isArray(v)) {
    head(out, 4, v.length);
    for (const x of v) into(out, x);
  } else if (typeof v === 'object') {
    const pairs = Object.keys(v).map((k) => {
      const ko = []; into(ko, k);
      const vo = []; into(vo, v[k]);
      return [ko, vo];
    });
    pairs.sort((a, b) => compare(a[0], b[0]));
    head(out, 5, pairs.length);
    for (const [k, x] of pairs) { for (const b of k) out.push(b); for (const b of x) out.push(b); }
  } else {
    throw new Error(`cannot encode ${typeof v}`);
  }
}

export function encode(v) {
  const out = [];
  into(out, v);
  return new Uint8Array(out);
}

export function hexToBytes(h) {
  if (!/^([0-9a-fA-F]{2})*$/.test(h)) throw new Error('not hex');
  const b = new Uint8Array(h.length / 2);
  for (let i = 0; i < b.length; i++) b[i] = parseInt(h.substr(i * 2, 2), 16);
  return b;
}

export function bytesToHex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}
