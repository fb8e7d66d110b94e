//! C2SP `signed-note` v1.0.0: text, a blank line, signature lines
//! `— <name> base64(key ID || signature)`; Ed25519 (type 0x01) keys, key IDs
//! `SHA-256(name || 0x0A || type || public key)[:4]`, verifier keys
//! `<name>+<hex key ID>+base64(type || public key)`. Cosignature keys (type
//! 0x04, C2SP `tlog-cosignature`) are verified here too.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Signature type bytes (signed-note §Signature types).
pub const TYPE_ED25519: u8 = 0x01;
pub const TYPE_COSIGNATURE: u8 = 0x04;

/// Most signature lines accepted in one note (the spec requires ≥ 16).
pub const MAX_SIGNATURES: usize = 100;
/// Largest note accepted, in bytes.
pub const MAX_NOTE_BYTES: usize = 1 << 20;

const DASH: &str = "\u{2014} ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(String),
    #[error("malformed verifier key: {0}")]
    BadVerifierKey(String),
    #[error("the signature of {name} ({key_id:08x}) does not verify")]
    BadSignature { name: String, key_id: u32 },
    #[error("no signature by a trusted key")]
    NoTrustedSignature,
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// The line as it appears in a note, with its newline.
    pub fn line(&self) -> String {
        let mut bytes = self.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.signature);
        format!("{DASH}{} {}\n", self.name, B64.encode(bytes))
    }
}

/// A parsed (not yet verified) note: the text, with its final newline, and
/// its signatures in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c == '+')
}

impl Note {
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        let m = |s: &str| NoteError::Malformed(s.to_string());
        if bytes.len() > MAX_NOTE_BYTES {
            return Err(m("the note is too large"));
        }
        let s = std::str::from_utf8(bytes).map_err(|_| m("not UTF-8"))?;
        if s.chars().any(|c| (c as u32) < 0x20 && c != '\n') {
            return Err(m("control characters other than newline"));
        }
        // The text ends at the last blank line.
        let split = s
            .rfind("\n\n")
            .ok_or_else(|| m("no blank line before the signatures"))?;
        let text = &s[..split + 1];
        let sigs = &s[split + 2..];
        if !sigs.ends_with('\n') {
            return Err(m("the signature block must end with a newline"));
        }
        let mut signatures = Vec::new();
        for line in sigs[..sigs.len() - 1].split('\n') {
            let rest = line
                .strip_prefix(DASH)
                .ok_or_else(|| m("a signature line must start with an em dash and a space"))?;
            let (name, b64) = rest
                .split_once(' ')
                .ok_or_else(|| m("a signature line needs a name and a signature"))?;
            if !valid_name(name) {
                return Err(m("invalid key name"));
            }
            let raw = B64
                .decode(b64)
                .map_err(|_| m("a signature is not base64"))?;
            if raw.len() < 5 {
                return Err(m("a signature is too short"));
            }
            signatures.push(NoteSignature {
                name: name.to_string(),
                key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
                signature: raw[4..].to_vec(),
            });
            if signatures.len() > MAX_SIGNATURES {
                return Err(m("too many signatures"));
            }
        }
        if signatures.is_empty() {
            return Err(m("no signatures"));
        }
        Ok(Note {
            text: text.to_string(),
            signatures,
        })
    }

    /// The note as bytes: text, blank line, signature lines.
    pub fn to_text(&self) -> String {
        let mut s = self.text.clone();
        s.push('\n');
        for sig in &self.signatures {
            s.push_str(&sig.line());
        }
        s
    }
}

/// `SHA-256(name || 0x0A || type || public key)[:4]`, big-endian.
pub fn key_id(name: &str, kind: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([0x0a, kind]);
    h.update(public_key);
    let d = h.finalize();
    u32::from_be_bytes([d[0], d[1], d[2], d[3]])
}

/// A trusted key: Ed25519 note signatures or timestamped cosignatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    pub name: String,
    pub key_id: u32,
    pub kind: u8,
    pub key: VerifyingKey,
}

impl Verifier {
    /// Parses `<name>+<hex id>+base64(type || key)`, checking that the id
    /// is the one the key and name give.
    pub fn parse(vkey: &str) -> Result<Verifier, NoteError> {
        let bad = |s: &str| NoteError::BadVerifierKey(s.to_string());
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected name+hexid+base64"));
        };
        if !valid_name(name) {
            return Err(bad("invalid key name"));
        }
        if hex.len() != 8
            || !hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(bad("the key ID must be 8 lowercase hex digits"));
        }
        let id = u32::from_str_radix(hex, 16).map_err(|_| bad("the key ID is not hex"))?;
        let raw = B64.decode(b64).map_err(|_| bad("the key is not base64"))?;
        let (&kind, key) = raw.split_first().ok_or_else(|| bad("empty key"))?;
        if kind != TYPE_ED25519 && kind != TYPE_COSIGNATURE {
            return Err(bad("unsupported signature type"));
        }
        let bytes: [u8; 32] = key
            .try_into()
            .map_err(|_| bad("an Ed25519 key has 32 bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| bad("not an Ed25519 public key"))?;
        if key_id(name, kind, &bytes) != id {
            return Err(bad("the key ID does not match the name and key"));
        }
        Ok(Verifier {
            name: name.to_string(),
            key_id: id,
            kind,
            key,
        })
    }

    pub fn to_vkey(&self) -> String {
        let mut raw = vec![self.kind];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, B64.encode(raw))
    }

    fn matches(&self, s: &NoteSignature) -> bool {
        self.name == s.name && self.key_id == s.key_id
    }

    /// Verifies one signature of this key over `text`. For cosignatures it
    /// returns the timestamp.
    pub fn verify(&self, text: &str, s: &NoteSignature) -> Result<Option<u64>, NoteError> {
        let fail = || NoteError::BadSignature {
            name: s.name.clone(),
            key_id: s.key_id,
        };
        match self.kind {
            TYPE_ED25519 => {
                let sig = ed25519_dalek::Signature::from_slice(&s.signature).map_err(|_| fail())?;
                if !crate::ed25519::verify_strict(&self.key, &[text.as_bytes()], &sig) {
                    return Err(fail());
                }
                Ok(None)
            }
            _ => {
                if s.signature.len() != 72 {
                    return Err(fail());
                }
                let ts = u64::from_be_bytes(s.signature[..8].try_into().map_err(|_| fail())?);
                if ts > i64::MAX as u64 {
                    return Err(fail());
                }
                let sig =
                    ed25519_dalek::Signature::from_slice(&s.signature[8..]).map_err(|_| fail())?;
                let msg = crate::cosignature::signed_message(text, ts);
                if !crate::ed25519::verify_strict(&self.key, &[msg.as_bytes()], &sig) {
                    return Err(fail());
                }
                Ok(Some(ts))
            }
        }
    }
}

/// A verified signature: who, and (for cosignatures) when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub name: String,
    pub key_id: u32,
    pub timestamp: Option<u64>,
}

/// Parses and verifies a note against trusted keys: signatures of unknown
/// keys are ignored; a known key's bad signature rejects the note; at
/// least one known key must have signed.
pub fn open(bytes: &[u8], trusted: &[Verifier]) -> Result<(Note, Vec<Verified>), NoteError> {
    let note = Note::parse(bytes)?;
    let mut ok = Vec::new();
    for s in &note.signatures {
        for v in trusted.iter().filter(|v| v.matches(s)) {
            let timestamp = v.verify(&note.text, s)?;
            ok.push(Verified {
                name: s.name.clone(),
                key_id: s.key_id,
                timestamp,
            });
        }
    }
    if ok.is_empty() {
        return Err(NoteError::NoTrustedSignature);
    }
    Ok((note, ok))
}

/// An Ed25519 note signer (type 0x01).
#[derive(Clone)]
pub struct NoteSigner {
    pub name: String,
    key: SigningKey,
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// From a 32-byte seed the caller drew (this crate draws no randomness).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        if !valid_name(name) {
            return Err(NoteError::BadVerifierKey("invalid key name".into()));
        }
        Ok(NoteSigner {
            name: name.to_string(),
            key: SigningKey::from_bytes(seed),
        })
    }
    pub fn key_id(&self) -> u32 {
        key_id(
            &self.name,
            TYPE_ED25519,
            self.key.verifying_key().as_bytes(),
        )
    }
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id(),
            kind: TYPE_ED25519,
            key: self.key.verifying_key(),
        }
    }
    pub(crate) fn signing_key(&self) -> &SigningKey {
        &self.key
    }
    /// Signs `text` (which must end with a newline).
    pub fn sign(&self, text: &str) -> NoteSignature {
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id(),
            signature: self.key.sign(text.as_bytes()).to_bytes().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests;
