//! Log entries: what a node appends to its Merkle log. An entry's leaf bytes
//! are the deterministic CBOR (RFC 8949 §4.2.1) map
//! `{"body": any, "kind": text, "origin": text, "sig": bytes(64), "ts": uint}`
//! where `ts` is milliseconds since the Unix epoch and `sig` is the origin
//! node's Ed25519 signature over `"detente-entry/v1\n"` followed by the
//! same map without `sig`. At most [`MAX_ENTRY_BYTES`]; larger bodies are
//! committed to by hash.
//!
//! An entry a log keeps of its own doing that no one else receives (a
//! node's airspace writes) may be *unattested*: the same map without `sig`,
//! `{"body", "kind", "origin", "ts"}`. It is attested only by the log's
//! signed (and cosigned) checkpoints, through an inclusion proof, as the
//! entries of any transparency log are; an entry that crosses to another
//! party (a record of the line, a receipt) is always signed.

use crate::cbor::{self, Value};
use crate::note::{NoteSigner, Verifier};
use ed25519_dalek::Signer as _;

/// The most bytes an entry's leaf may have: C2SP tlog-tiles serves entries
/// in bundles, each after its length as a big-endian uint16, so a longer
/// entry could be logged but never served.
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;
const DOMAIN: &[u8] = b"detente-entry/v1\n";

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub kind: String,
    pub origin: String,
    pub timestamp_ms: u64,
    pub body: Value,
}

/// An entry as logged: signed by its origin, or (the log's own entries
/// that stay with it) unattested, `signature` `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedEntry {
    pub entry: Entry,
    pub signature: Option<[u8; 64]>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("entry is {0} bytes; at most {MAX_ENTRY_BYTES} are allowed")]
    TooLarge(usize),
    #[error(transparent)]
    Cbor(#[from] cbor::CborError),
    #[error("malformed entry: {0}")]
    Malformed(&'static str),
    #[error("the entry's signature does not verify")]
    BadSignature,
    #[error("the entry carries no signature (a log's own entry, attested by its checkpoints only)")]
    Unsigned,
}

fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}

/// An entry's map with its body already encoded, with or without `sig`,
/// in canonical key order (`ts`, `sig`, `body`, `kind`, `origin`).
fn leaf_map(kind: &str, origin: &str, ts: u64, body: &[u8], sig: Option<&[u8; 64]>) -> Vec<u8> {
    let mut w = cbor::Writer::with_capacity(body.len() + kind.len() + origin.len() + 96);
    w.map(4 + usize::from(sig.is_some()));
    w.text("ts").uint(ts);
    if let Some(sig) = sig {
        w.text("sig").bytes(sig);
    }
    w.text("body").encoded(body);
    w.text("kind").text(kind);
    w.text("origin").text(origin);
    w.into_bytes()
}

/// The leaf bytes of an unattested entry (module doc) of `kind` by
/// `origin` at `timestamp_ms`, whose body's CBOR encoding is `body`:
/// what [`Entry::unsigned_encoded_to_bytes`] gives, without the body as a
/// [`Value`].
pub fn unattested_leaf(
    kind: &str,
    origin: &str,
    timestamp_ms: u64,
    body: &[u8],
) -> Result<Vec<u8>, EntryError> {
    let leaf = leaf_map(kind, origin, timestamp_ms, body, None);
    if leaf.len() > MAX_ENTRY_BYTES {
        return Err(EntryError::TooLarge(leaf.len()));
    }
    Ok(leaf)
}

impl Entry {
    /// The entry's map with its body already encoded, with or without
    /// `sig`: the body is encoded once however many times the entry is.
    fn encode_with(&self, body: &[u8], sig: Option<&[u8; 64]>) -> Vec<u8> {
        leaf_map(&self.kind, &self.origin, self.timestamp_ms, body, sig)
    }

    fn message_with(&self, body: &[u8]) -> Vec<u8> {
        let mut m = DOMAIN.to_vec();
        m.extend(self.encode_with(body, None));
        m
    }

    /// The bytes the origin signs.
    pub fn signed_message(&self) -> Vec<u8> {
        self.message_with(&cbor::encode(&self.body))
    }

    /// The signature and the leaf bytes, with `body` the encoding of
    /// `self.body` (encoded once however many times the entry is).
    fn sign_parts(
        &self,
        signer: &NoteSigner,
        body: &[u8],
    ) -> Result<([u8; 64], Vec<u8>), EntryError> {
        let signature = signer
            .signing_key()
            .sign(&self.message_with(body))
            .to_bytes();
        let leaf = self.encode_with(body, Some(&signature));
        if leaf.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge(leaf.len()));
        }
        Ok((signature, leaf))
    }

    pub fn sign(self, signer: &NoteSigner) -> Result<SignedEntry, EntryError> {
        let (signature, _) = self.sign_parts(signer, &cbor::encode(&self.body))?;
        Ok(SignedEntry {
            entry: self,
            signature: Some(signature),
        })
    }

    /// The leaf bytes of the entry unattested (no `sig`: module doc), with
    /// `body` the CBOR encoding of `self.body`.
    pub fn unsigned_encoded_to_bytes(&self, body: &[u8]) -> Result<Vec<u8>, EntryError> {
        debug_assert_eq!(body, cbor::encode(&self.body).as_slice());
        unattested_leaf(&self.kind, &self.origin, self.timestamp_ms, body)
    }

    /// Signs the entry and answers its leaf bytes (what
    /// `self.sign(signer)?.to_bytes()` gives, for less work).
    pub fn sign_to_bytes(&self, signer: &NoteSigner) -> Result<Vec<u8>, EntryError> {
        self.sign_encoded_to_bytes(signer, &cbor::encode(&self.body))
    }

    /// [`sign_to_bytes`](Self::sign_to_bytes) for a caller that already
    /// holds `body`, the CBOR encoding of `self.body` (not encoded again).
    pub fn sign_encoded_to_bytes(
        &self,
        signer: &NoteSigner,
        body: &[u8],
    ) -> Result<Vec<u8>, EntryError> {
        debug_assert_eq!(body, cbor::encode(&self.body).as_slice());
        Ok(self.sign_parts(signer, body)?.1)
    }
}

impl SignedEntry {
    /// The leaf bytes (hashed into the log as RFC 6962 leaf data).
    pub fn to_bytes(&self) -> Vec<u8> {
        self.entry
            .encode_with(&cbor::encode(&self.entry.body), self.signature.as_ref())
    }

    /// Whether the entry carries its origin's signature.
    pub fn is_signed(&self) -> bool {
        self.signature.is_some()
    }

    /// Parses leaf bytes; the result re-encodes to exactly these bytes.
    pub fn parse(bytes: &[u8]) -> Result<SignedEntry, EntryError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge(bytes.len()));
        }
        let Value::Map(pairs) = cbor::decode(bytes)? else {
            return Err(EntryError::Malformed("not a map"));
        };
        let get = |k: &str| pairs.iter().find(|(key, _)| *key == t(k)).map(|(_, v)| v);
        const FIELDS: &str = "an entry has exactly body, kind, origin, ts and (when signed) sig";
        let sig = get("sig");
        if pairs.len() != 4 + usize::from(sig.is_some()) {
            return Err(EntryError::Malformed(FIELDS));
        }
        let (Some(body), Some(Value::Text(kind)), Some(Value::Text(origin)), Some(Value::Uint(ts))) =
            (get("body"), get("kind"), get("origin"), get("ts"))
        else {
            return Err(EntryError::Malformed(FIELDS));
        };
        let signature = match sig {
            None => None,
            Some(Value::Bytes(sig)) => Some(
                <[u8; 64]>::try_from(sig.as_slice())
                    .map_err(|_| EntryError::Malformed("sig must be 64 bytes"))?,
            ),
            Some(_) => return Err(EntryError::Malformed("sig must be 64 bytes")),
        };
        Ok(SignedEntry {
            entry: Entry {
                kind: kind.clone(),
                origin: origin.clone(),
                timestamp_ms: *ts,
                body: body.clone(),
            },
            signature,
        })
    }

    /// Checks the origin's signature with its (Ed25519, type 0x01) key; an
    /// unattested entry fails with [`EntryError::Unsigned`].
    pub fn verify(&self, origin_key: &Verifier) -> Result<(), EntryError> {
        let sig = ed25519_dalek::Signature::from_bytes(
            self.signature.as_ref().ok_or(EntryError::Unsigned)?,
        );
        if crate::ed25519::verify_strict(&origin_key.key, &[&self.entry.signed_message()], &sig) {
            Ok(())
        } else {
            Err(EntryError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            kind: "operational_intent.upserted".into(),
            origin: "detente.example/alliance".into(),
            timestamp_ms: 1_795_000_000_000,
            body: Value::Map(vec![
                (t("id"), t("2f8343be-6482-4d1b-a474-16847e01af1e")),
                (t("version"), Value::Uint(1)),
                (t("lat"), Value::Float(45.05)),
            ]),
        }
    }

    #[test]
    fn leaf_bytes_are_the_whole_map_encoded_as_one_value() {
        // The entry's map built as one `Value`, the way the format is
        // specified (module doc), against the bytes the signer assembles
        // from the body encoded once.
        let signer = NoteSigner::from_seed("detente.example/alliance", &[3; 32]).unwrap();
        let e = entry();
        let unsigned = vec![
            (t("ts"), Value::Uint(e.timestamp_ms)),
            (t("origin"), t(&e.origin)),
            (t("kind"), t(&e.kind)),
            (t("body"), e.body.clone()),
        ];
        let mut message = DOMAIN.to_vec();
        message.extend(cbor::encode(&Value::Map(unsigned.clone())));
        assert_eq!(e.signed_message(), message);
        let leaf = e.sign_to_bytes(&signer).unwrap();
        let signed = e.clone().sign(&signer).unwrap();
        assert_eq!(signed.to_bytes(), leaf);
        let mut whole = unsigned;
        whole.push((t("sig"), Value::Bytes(signed.signature.unwrap().to_vec())));
        assert_eq!(leaf, cbor::encode(&Value::Map(whole)));
        signed.verify(&signer.verifier()).unwrap();
    }

    #[test]
    fn entries_round_trip_byte_identically_and_verify() {
        let signer = NoteSigner::from_seed("detente.example/alliance", &[3; 32]).unwrap();
        let s = entry().sign(&signer).unwrap();
        let bytes = s.to_bytes();
        let back = SignedEntry::parse(&bytes).unwrap();
        // Maps come back in canonical key order; the bytes are what must match.
        assert_eq!(back.to_bytes(), bytes);
        assert_eq!(
            (
                &back.entry.kind,
                &back.entry.origin,
                back.entry.timestamp_ms
            ),
            (&s.entry.kind, &s.entry.origin, s.entry.timestamp_ms)
        );
        assert_eq!(cbor::encode(&back.entry.body), cbor::encode(&s.entry.body));
        back.verify(&signer.verifier()).unwrap();
        let other = NoteSigner::from_seed("detente.example/federation", &[4; 32]).unwrap();
        assert_eq!(
            back.verify(&other.verifier()),
            Err(EntryError::BadSignature)
        );
    }

    #[test]
    fn any_flipped_byte_is_refused_or_fails_verification() {
        let signer = NoteSigner::from_seed("detente.example/alliance", &[3; 32]).unwrap();
        let bytes = entry().sign(&signer).unwrap().to_bytes();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            let ok = SignedEntry::parse(&b).is_ok_and(|e| e.verify(&signer.verifier()).is_ok());
            assert!(!ok, "flipping byte {i} went unnoticed");
        }
    }

    #[test]
    fn unattested_entries_are_the_map_without_sig_and_never_verify() {
        let signer = NoteSigner::from_seed("detente.example/alliance", &[3; 32]).unwrap();
        let e = entry();
        let leaf = e.unsigned_encoded_to_bytes(&cbor::encode(&e.body)).unwrap();
        let map = vec![
            (t("ts"), Value::Uint(e.timestamp_ms)),
            (t("origin"), t(&e.origin)),
            (t("kind"), t(&e.kind)),
            (t("body"), e.body.clone()),
        ];
        assert_eq!(leaf, cbor::encode(&Value::Map(map)));
        let back = SignedEntry::parse(&leaf).unwrap();
        assert!(!back.is_signed());
        // Maps come back in canonical key order: compare the encodings.
        assert_eq!(
            (
                &back.entry.kind,
                &back.entry.origin,
                back.entry.timestamp_ms
            ),
            (&e.kind, &e.origin, e.timestamp_ms)
        );
        assert_eq!(cbor::encode(&back.entry.body), cbor::encode(&e.body));
        assert_eq!(back.to_bytes(), leaf);
        assert_eq!(back.verify(&signer.verifier()), Err(EntryError::Unsigned));
        // A signed entry stripped of its signature is a different leaf.
        let signed = e.sign_to_bytes(&signer).unwrap();
        assert_ne!(signed, leaf);
        assert!(SignedEntry::parse(&signed).unwrap().is_signed());
    }

    #[test]
    fn a_sig_of_the_wrong_type_or_an_extra_field_is_malformed() {
        let e = entry();
        let base = vec![
            (t("ts"), Value::Uint(e.timestamp_ms)),
            (t("origin"), t(&e.origin)),
            (t("kind"), t(&e.kind)),
            (t("body"), e.body.clone()),
        ];
        for extra in [
            (t("sig"), t("not bytes")),
            (t("sig"), Value::Bytes(vec![0; 63])),
            (t("other"), Value::Uint(1)),
        ] {
            let mut m = base.clone();
            m.push(extra.clone());
            assert!(
                matches!(
                    SignedEntry::parse(&cbor::encode(&Value::Map(m))),
                    Err(EntryError::Malformed(_))
                ),
                "{extra:?}"
            );
        }
    }

    #[test]
    fn oversized_entries_are_refused() {
        let signer = NoteSigner::from_seed("detente.example/alliance", &[3; 32]).unwrap();
        let mut e = entry();
        e.body = Value::Bytes(vec![0; MAX_ENTRY_BYTES]);
        assert!(matches!(e.sign(&signer), Err(EntryError::TooLarge(_))));
        assert!(matches!(
            SignedEntry::parse(&vec![0; MAX_ENTRY_BYTES + 1]),
            Err(EntryError::TooLarge(_))
        ));
    }

    #[test]
    fn the_largest_entry_fits_an_entry_bundle_length() {
        let signer = NoteSigner::from_seed("detente.example/alliance", &[3; 32]).unwrap();
        let sized = |n: usize| {
            let mut e = entry();
            e.body = Value::Bytes(vec![7; n]);
            e.sign_to_bytes(&signer)
        };
        // Bodies of 256..65,535 bytes carry a 3-byte CBOR head: the rest
        // of the entry is a fixed overhead.
        let overhead = sized(1000).unwrap().len() - 1000;
        let fits = MAX_ENTRY_BYTES - overhead;
        let leaf = sized(fits).unwrap();
        assert_eq!(leaf.len(), 65_535);
        assert!(u16::try_from(leaf.len()).is_ok());
        assert_eq!(SignedEntry::parse(&leaf).unwrap().to_bytes(), leaf);
        assert!(matches!(sized(fits + 1), Err(EntryError::TooLarge(65_536))));
    }
}
