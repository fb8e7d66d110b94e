//! Deterministically encoded CBOR (RFC 8949 §4.2.1, core deterministic
//! encoding requirements) — the canonical bytes of log entries.
//!
//! Encoding: shortest argument heads, definite lengths only, map keys sorted
//! by the bytewise order of their encodings, floats in their shortest exact
//! form (half, single or double precision, §4.2.2 preferred serialization;
//! NaN as `0xf97e00`). Decoding is strict: anything that would not
//! re-encode to the same bytes is refused, so encode → decode → encode is
//! the identity and every value has exactly one encoding.

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Major type 0.
    Uint(u64),
    /// Major type 1: the value −1 − n.
    Nint(u64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Value>),
    /// Pairs in any order; encoding sorts them.
    Map(Vec<(Value, Value)>),
    Bool(bool),
    Null,
    Float(f64),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not deterministic CBOR at byte {at}: {why}")]
pub struct CborError {
    pub at: usize,
    pub why: &'static str,
}

/// Deepest nesting accepted when decoding.
const MAX_DEPTH: usize = 64;

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u8::MAX as u64 {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u16::MAX as u64 {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u32::MAX as u64 {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// The half-precision bits of `f`, if `f` is exactly representable.
fn f32_to_f16_exact(f: f32) -> Option<u16> {
    let bits = f.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0xff {
        // Infinity (NaN is handled by the caller).
        return if mant == 0 { Some(sign | 0x7c00) } else { None };
    }
    if exp == 0 && mant == 0 {
        return Some(sign);
    }
    if exp == 0 {
        return None; // f32 subnormals are far below f16's range
    }
    let e = exp - 127;
    if (-14..=15).contains(&e) {
        if mant & 0x1fff != 0 {
            return None;
        }
        return Some(sign | (((e + 15) as u16) << 10) | (mant >> 13) as u16);
    }
    if (-24..-14).contains(&e) {
        // f16 subnormal: value = m · 2^-24 with m < 1024.
        let full = mant | 0x80_0000; // 1.mant · 2^23
        let shift = (-14 - e) + 13;
        if full & ((1u32 << shift) - 1) != 0 {
            return None;
        }
        return Some(sign | (full >> shift) as u16);
    }
    None
}

fn f16_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let mant = (h & 0x3ff) as f64;
    match exp {
        0 => sign * mant * 2f64.powi(-24),
        31 => {
            if mant == 0.0 {
                sign * f64::INFINITY
            } else {
                f64::NAN
            }
        }
        _ => sign * (1.0 + mant / 1024.0) * 2f64.powi(exp - 15),
    }
}

fn float(out: &mut Vec<u8>, x: f64) {
    if x.is_nan() {
        out.extend_from_slice(&[0xf9, 0x7e, 0x00]);
        return;
    }
    let single = x as f32;
    if single as f64 == x {
        if let Some(h) = f32_to_f16_exact(single) {
            out.push(0xf9);
            out.extend_from_slice(&h.to_be_bytes());
        } else {
            out.push(0xfa);
            out.extend_from_slice(&single.to_bits().to_be_bytes());
        }
    } else {
        out.push(0xfb);
        out.extend_from_slice(&x.to_bits().to_be_bytes());
    }
}

pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, v);
    out
}

/// Writes deterministic CBOR item by item, for an encoder that knows its
/// maps' keys and gives each map's pairs in the order of their keys'
/// encodings (shorter text first, then bytewise): the bytes [`encode`] gives
/// for the same value, without building it (an entry body as a [`Value`]
/// is about a hundred small allocations). A pair out of order makes bytes
/// that [`decode`] refuses, so a writer's tests catch it.
#[derive(Default)]
pub struct Writer {
    out: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(n: usize) -> Writer {
        Writer {
            out: Vec::with_capacity(n),
        }
    }
    pub fn uint(&mut self, n: u64) -> &mut Self {
        head(&mut self.out, 0, n);
        self
    }
    /// An integer: major type 0 when ≥ 0, else 1.
    pub fn int(&mut self, n: i64) -> &mut Self {
        if n >= 0 {
            head(&mut self.out, 0, n as u64);
        } else {
            head(&mut self.out, 1, (-1 - n) as u64);
        }
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        head(&mut self.out, 2, b.len() as u64);
        self.out.extend_from_slice(b);
        self
    }
    pub fn text(&mut self, t: &str) -> &mut Self {
        head(&mut self.out, 3, t.len() as u64);
        self.out.extend_from_slice(t.as_bytes());
        self
    }
    /// An array's head: its `n` items follow.
    pub fn array(&mut self, n: usize) -> &mut Self {
        head(&mut self.out, 4, n as u64);
        self
    }
    /// A map's head: its `n` pairs follow, keys in canonical order.
    pub fn map(&mut self, n: usize) -> &mut Self {
        head(&mut self.out, 5, n as u64);
        self
    }
    pub fn bool(&mut self, b: bool) -> &mut Self {
        self.out.push(if b { 0xf5 } else { 0xf4 });
        self
    }
    pub fn null(&mut self) -> &mut Self {
        self.out.push(0xf6);
        self
    }
    pub fn float(&mut self, x: f64) -> &mut Self {
        float(&mut self.out, x);
        self
    }
    /// An item already encoded.
    pub fn encoded(&mut self, item: &[u8]) -> &mut Self {
        self.out.extend_from_slice(item);
        self
    }
    pub fn len(&self) -> usize {
        self.out.len()
    }
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

/// A map's head, then its pairs: `spans` are (key start, value start, end)
/// in `scratch`, already in order.
fn write_map(out: &mut Vec<u8>, scratch: &[u8], spans: &[(usize, usize, usize)]) {
    head(out, 5, spans.len() as u64);
    for (start, _, end) in spans {
        out.extend_from_slice(&scratch[*start..*end]);
    }
}

fn encode_into(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Uint(n) => head(out, 0, *n),
        Value::Nint(n) => head(out, 1, *n),
        Value::Bytes(b) => {
            head(out, 2, b.len() as u64);
            out.extend_from_slice(b);
        }
        Value::Text(s) => {
            head(out, 3, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            for i in items {
                encode_into(out, i);
            }
        }
        Value::Map(pairs) => {
            // Every pair into one scratch buffer, then copied out in the
            // order of the keys' encodings (one allocation per map, not two
            // per pair: entries' bodies are maps of maps).
            let mut scratch = Vec::new();
            let mut spans: Vec<(usize, usize, usize)> = Vec::with_capacity(pairs.len());
            for (k, v) in pairs {
                let key = scratch.len();
                encode_into(&mut scratch, k);
                let value = scratch.len();
                encode_into(&mut scratch, v);
                spans.push((key, value, scratch.len()));
            }
            spans.sort_by(|a, b| scratch[a.0..a.1].cmp(&scratch[b.0..b.1]));
            write_map(out, &scratch, &spans);
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
        Value::Float(x) => float(out, *x),
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn fail(&self, why: &'static str) -> CborError {
        CborError { at: self.at, why }
    }
    fn take(&mut self, n: usize) -> Result<&[u8], CborError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| self.fail("truncated"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn arg(&mut self, info: u8) -> Result<u64, CborError> {
        let n = match info {
            0..=23 => return Ok(info as u64),
            24 => self.take(1)?[0] as u64,
            25 => u16::from_be_bytes(
                self.take(2)?
                    .try_into()
                    .map_err(|_| self.fail("truncated"))?,
            ) as u64,
            26 => u32::from_be_bytes(
                self.take(4)?
                    .try_into()
                    .map_err(|_| self.fail("truncated"))?,
            ) as u64,
            27 => u64::from_be_bytes(
                self.take(8)?
                    .try_into()
                    .map_err(|_| self.fail("truncated"))?,
            ),
            _ => return Err(self.fail("indefinite lengths and reserved values are not allowed")),
        };
        let min = match info {
            24 => 24,
            25 => 0x100,
            26 => 0x1_0000,
            _ => 0x1_0000_0000,
        };
        if n < min {
            return Err(self.fail("argument not in its shortest form"));
        }
        Ok(n)
    }
    fn len(&mut self, info: u8) -> Result<usize, CborError> {
        let n = self.arg(info)?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.b.len())
            .ok_or_else(|| self.fail("length larger than the input"))
    }
    fn value(&mut self, depth: usize) -> Result<Value, CborError> {
        if depth > MAX_DEPTH {
            return Err(self.fail("nested too deeply"));
        }
        let start = self.at;
        let ib = self.take(1)?[0];
        let (major, info) = (ib >> 5, ib & 0x1f);
        Ok(match major {
            0 => Value::Uint(self.arg(info)?),
            1 => Value::Nint(self.arg(info)?),
            2 => {
                let n = self.len(info)?;
                Value::Bytes(self.take(n)?.to_vec())
            }
            3 => {
                let n = self.len(info)?;
                let at = self.at;
                let raw = self.take(n)?.to_vec();
                let s = String::from_utf8(raw).map_err(|_| CborError {
                    at,
                    why: "text is not UTF-8",
                })?;
                Value::Text(s)
            }
            4 => {
                let n = self.len(info)?;
                let mut items = Vec::with_capacity(n.min(1024));
                for _ in 0..n {
                    items.push(self.value(depth + 1)?);
                }
                Value::Array(items)
            }
            5 => {
                let n = self.len(info)?;
                let mut pairs = Vec::with_capacity(n.min(1024));
                let mut last: Option<Vec<u8>> = None;
                for _ in 0..n {
                    let k_start = self.at;
                    let k = self.value(depth + 1)?;
                    let k_bytes = self.b[k_start..self.at].to_vec();
                    if last.as_ref().is_some_and(|l| *l >= k_bytes) {
                        return Err(self.fail("map keys not in order, or duplicated"));
                    }
                    last = Some(k_bytes);
                    let v = self.value(depth + 1)?;
                    pairs.push((k, v));
                }
                Value::Map(pairs)
            }
            6 => return Err(self.fail("tags are not used in entries")),
            _ => match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 => Value::Null,
                25..=27 => {
                    let x = match info {
                        25 => f16_to_f64(u16::from_be_bytes(
                            self.take(2)?
                                .try_into()
                                .map_err(|_| self.fail("truncated"))?,
                        )),
                        26 => f32::from_bits(u32::from_be_bytes(
                            self.take(4)?
                                .try_into()
                                .map_err(|_| self.fail("truncated"))?,
                        )) as f64,
                        _ => f64::from_bits(u64::from_be_bytes(
                            self.take(8)?
                                .try_into()
                                .map_err(|_| self.fail("truncated"))?,
                        )),
                    };
                    let mut again = Vec::new();
                    float(&mut again, x);
                    if again != self.b[start..self.at] {
                        return Err(self.fail("float not in its shortest form"));
                    }
                    Value::Float(x)
                }
                _ => return Err(self.fail("unsupported simple value")),
            },
        })
    }
}

/// Decodes exactly one value spanning all of `bytes`.
pub fn decode(bytes: &[u8]) -> Result<Value, CborError> {
    let mut r = Reader { b: bytes, at: 0 };
    let v = r.value(0)?;
    if r.at != bytes.len() {
        return Err(r.fail("trailing bytes"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn the_writer_gives_what_encode_gives() {
        let v = Value::Map(vec![
            (
                t("zz"),
                Value::Array(vec![Value::Uint(0), Value::Uint(24), Value::Uint(70_000)]),
            ),
            (t("a"), Value::Nint(0)),
            (
                t("nums"),
                Value::Array(vec![
                    Value::Float(1.5),
                    Value::Float(0.1),
                    Value::Float(1e300),
                    Value::Float(f64::NAN),
                ]),
            ),
            (t("b"), Value::Bytes(vec![1, 2, 3])),
            (
                t("flags"),
                Value::Array(vec![Value::Bool(true), Value::Bool(false), Value::Null]),
            ),
            (t("long key of more than 23 bytes"), t("x")),
        ]);
        let mut w = Writer::default();
        w.map(6);
        w.text("a").int(-1);
        w.text("b").bytes(&[1, 2, 3]);
        w.text("zz").array(3).uint(0).uint(24).int(70_000);
        w.text("nums")
            .array(4)
            .float(1.5)
            .float(0.1)
            .float(1e300)
            .float(f64::NAN);
        w.text("flags").array(3).bool(true).bool(false).null();
        w.text("long key of more than 23 bytes")
            .encoded(&encode(&t("x")));
        assert_eq!(hex(&w.into_bytes()), hex(&encode(&v)));
        // Pairs out of canonical order make bytes the decoder refuses.
        let mut w = Writer::default();
        w.map(2).text("b").null().text("a").null();
        assert!(decode(&w.into_bytes()).is_err());
    }

    /// RFC 8949 Appendix A, "Examples of Encoded CBOR Data Items" (the
    /// preferred-serialization rows this encoder can produce).
    #[test]
    fn rfc8949_appendix_a_examples() {
        let cases: Vec<(Value, &str)> = vec![
            (Value::Uint(0), "00"),
            (Value::Uint(1), "01"),
            (Value::Uint(10), "0a"),
            (Value::Uint(23), "17"),
            (Value::Uint(24), "1818"),
            (Value::Uint(25), "1819"),
            (Value::Uint(100), "1864"),
            (Value::Uint(1000), "1903e8"),
            (Value::Uint(1_000_000), "1a000f4240"),
            (Value::Uint(1_000_000_000_000), "1b000000e8d4a51000"),
            (
                Value::Uint(18_446_744_073_709_551_615),
                "1bffffffffffffffff",
            ),
            (Value::Nint(0), "20"),
            (Value::Nint(9), "29"),
            (Value::Nint(99), "3863"),
            (Value::Nint(999), "3903e7"),
            (Value::Float(0.0), "f90000"),
            (Value::Float(-0.0), "f98000"),
            (Value::Float(1.0), "f93c00"),
            (Value::Float(1.1), "fb3ff199999999999a"),
            (Value::Float(1.5), "f93e00"),
            (Value::Float(65504.0), "f97bff"),
            (Value::Float(100000.0), "fa47c35000"),
            (Value::Float(3.4028234663852886e+38), "fa7f7fffff"),
            (Value::Float(1.0e+300), "fb7e37e43c8800759c"),
            (Value::Float(5.960464477539063e-8), "f90001"),
            (Value::Float(0.00006103515625), "f90400"),
            (Value::Float(-4.0), "f9c400"),
            (Value::Float(-4.1), "fbc010666666666666"),
            (Value::Float(f64::INFINITY), "f97c00"),
            (Value::Float(f64::NAN), "f97e00"),
            (Value::Float(f64::NEG_INFINITY), "f9fc00"),
            (Value::Bool(false), "f4"),
            (Value::Bool(true), "f5"),
            (Value::Null, "f6"),
            (Value::Bytes(vec![]), "40"),
            (Value::Bytes(vec![1, 2, 3, 4]), "4401020304"),
            (t(""), "60"),
            (t("a"), "6161"),
            (t("IETF"), "6449455446"),
            (t("\"\\"), "62225c"),
            (t("\u{00fc}"), "62c3bc"),
            (t("\u{6c34}"), "63e6b0b4"),
            (t("\u{10151}"), "64f0908591"),
            (Value::Array(vec![]), "80"),
            (
                Value::Array(vec![Value::Uint(1), Value::Uint(2), Value::Uint(3)]),
                "83010203",
            ),
            (
                Value::Array(vec![
                    Value::Uint(1),
                    Value::Array(vec![Value::Uint(2), Value::Uint(3)]),
                    Value::Array(vec![Value::Uint(4), Value::Uint(5)]),
                ]),
                "8301820203820405",
            ),
            (
                Value::Array((1..=25).map(Value::Uint).collect()),
                "98190102030405060708090a0b0c0d0e0f101112131415161718181819",
            ),
            (Value::Map(vec![]), "a0"),
            (
                Value::Map(vec![
                    (Value::Uint(1), Value::Uint(2)),
                    (Value::Uint(3), Value::Uint(4)),
                ]),
                "a201020304",
            ),
            (
                Value::Map(vec![
                    (t("a"), Value::Uint(1)),
                    (t("b"), Value::Array(vec![Value::Uint(2), Value::Uint(3)])),
                ]),
                "a26161016162820203",
            ),
            (
                Value::Array(vec![t("a"), Value::Map(vec![(t("b"), t("c"))])]),
                "826161a161626163",
            ),
        ];
        for (v, want) in cases {
            let got = encode(&v);
            assert_eq!(hex(&got), want, "{v:?}");
            let back = decode(&got).unwrap();
            assert_eq!(encode(&back), got, "{v:?} re-encodes identically");
        }
    }

    #[test]
    fn maps_are_sorted_by_encoded_key_whatever_the_input_order() {
        let a = Value::Map(vec![
            (t("b"), Value::Uint(1)),
            (t("a"), Value::Uint(2)),
            (Value::Uint(10), Value::Null),
        ]);
        let b = Value::Map(vec![
            (Value::Uint(10), Value::Null),
            (t("a"), Value::Uint(2)),
            (t("b"), Value::Uint(1)),
        ]);
        assert_eq!(encode(&a), encode(&b));
        assert_eq!(hex(&encode(&a)), "a30af66161026162 01".replace(' ', ""));
    }

    #[test]
    fn non_deterministic_encodings_are_refused() {
        for bad in [
            "1817",               // 23 in a 1-byte argument
            "190017",             // 23 in a 2-byte argument
            "5f4100ff",           // indefinite-length bytes
            "a2616201616101",     // keys out of order
            "a2616101616102",     // duplicate key
            "fa3fc00000",         // 1.5 as single precision
            "fb3ff8000000000000", // 1.5 as double precision
            "0000",               // trailing bytes
            "c100",               // a tag
            "62c3",               // truncated text
            "61ff",               // invalid UTF-8
            "9b7fffffffffffffff", // absurd length
        ] {
            let bytes: Vec<u8> = (0..bad.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&bad[i..i + 2], 16).unwrap())
                .collect();
            assert!(decode(&bytes).is_err(), "{bad}");
        }
        let deep: Vec<u8> = std::iter::repeat_n(0x81, 100).chain([0x00]).collect();
        assert!(decode(&deep).is_err(), "depth is limited");
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<u64>().prop_map(Value::Uint),
            any::<u64>().prop_map(Value::Nint),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
            ".{0,12}".prop_map(Value::Text),
            any::<bool>().prop_map(Value::Bool),
            Just(Value::Null),
            any::<f64>()
                .prop_filter("NaN payloads collapse", |x| !x.is_nan())
                .prop_map(Value::Float),
            any::<f32>()
                .prop_filter("NaN payloads collapse", |x| !x.is_nan())
                .prop_map(|x| Value::Float(x as f64)),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,6}", inner, 0..6).prop_map(|m| Value::Map(
                    m.into_iter().map(|(k, v)| (Value::Text(k), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_decode_encode_is_byte_identical(v in arb_value()) {
            let bytes = encode(&v);
            let back = decode(&bytes).unwrap();
            prop_assert_eq!(encode(&back), bytes);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(v) = decode(&bytes) {
                prop_assert_eq!(encode(&v), bytes, "whatever decodes re-encodes to the same bytes");
            }
        }
    }
}
