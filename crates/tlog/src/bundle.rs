//! C2SP `tlog-proof` (draft at commit 5ba5ee8): an offline-verifiable proof
//! that an entry is in a log, as text —
//! `c2sp.org/tlog-proof@v1`, optional `extra <base64>`, `index <n>`, the
//! inclusion proof hashes one per line, an empty line, then the checkpoint
//! (a signed note, with any cosignatures) verbatim — and its verification
//! against trusted log and witness keys.

use crate::checkpoint::Checkpoint;
use crate::hash::{Hash, leaf_hash};
use crate::note::{self, NoteError, TYPE_COSIGNATURE, Verifier};
use crate::proof::verify_inclusion;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    pub extra: Option<Vec<u8>>,
    pub index: u64,
    pub proof: Vec<Hash>,
    /// The checkpoint note, verbatim (text, blank line, signature lines).
    pub checkpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("malformed tlog-proof: {0}")]
    Malformed(String),
    #[error("the checkpoint: {0}")]
    Checkpoint(String),
    #[error("the checkpoint's origin is {found:?}, not the trusted log {expected:?}")]
    WrongOrigin { expected: String, found: String },
    #[error("{found} valid witness cosignature(s), {required} required")]
    NotEnoughCosignatures { found: usize, required: usize },
    #[error("the inclusion proof does not bind this entry to the checkpoint's root: {0}")]
    NotIncluded(String),
}

impl TlogProof {
    pub fn to_text(&self) -> String {
        let mut s = format!("{HEADER}\n");
        if let Some(e) = &self.extra {
            s.push_str(&format!("extra {}\n", B64.encode(e)));
        }
        s.push_str(&format!("index {}\n", self.index));
        for h in &self.proof {
            s.push_str(&B64.encode(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    pub fn parse(text: &str) -> Result<TlogProof, BundleError> {
        let bad = |s: &str| BundleError::Malformed(s.to_string());
        let (head, checkpoint) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line before the checkpoint"))?;
        let mut lines = head.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad("the first line must be c2sp.org/tlog-proof@v1"));
        }
        let mut line = lines.next().ok_or_else(|| bad("no index line"))?;
        let mut extra = None;
        if let Some(e) = line.strip_prefix("extra ") {
            extra = Some(B64.decode(e).map_err(|_| bad("extra is not base64"))?);
            line = lines.next().ok_or_else(|| bad("no index line"))?;
        }
        let idx = line
            .strip_prefix("index ")
            .ok_or_else(|| bad("expected 'index <n>'"))?;
        if idx.is_empty()
            || !idx.bytes().all(|b| b.is_ascii_digit())
            || (idx.len() > 1 && idx.starts_with('0'))
        {
            return Err(bad("the index must be decimal without leading zeroes"));
        }
        let index: u64 = idx
            .parse()
            .map_err(|_| bad("the index does not fit 64 bits"))?;
        let mut proof = Vec::new();
        for l in lines {
            let raw = B64
                .decode(l)
                .map_err(|_| bad("a proof line is not base64"))?;
            proof.push(
                raw.as_slice()
                    .try_into()
                    .map_err(|_| bad("a proof hash must be 32 bytes"))?,
            );
            if proof.len() > 64 {
                return Err(bad("too many proof hashes"));
            }
        }
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }

    /// Verifies that `entry` (the leaf bytes) is at `index` in the log whose
    /// key is `log`, under a checkpoint cosigned by at least
    /// `min_cosignatures` of `witnesses`. Returns the checkpoint.
    pub fn verify(
        &self,
        entry: &[u8],
        log: &Verifier,
        witnesses: &[Verifier],
        min_cosignatures: usize,
    ) -> Result<Checkpoint, BundleError> {
        let mut trusted = vec![log.clone()];
        trusted.extend(witnesses.iter().cloned());
        let (note, verified) = note::open(self.checkpoint.as_bytes(), &trusted)
            .map_err(|e: NoteError| BundleError::Checkpoint(e.to_string()))?;
        if !verified
            .iter()
            .any(|v| v.name == log.name && v.key_id == log.key_id)
        {
            return Err(BundleError::Checkpoint(format!(
                "not signed by the log key {}",
                log.name
            )));
        }
        let c =
            Checkpoint::parse(&note.text).map_err(|e| BundleError::Checkpoint(e.to_string()))?;
        if c.origin != log.name {
            return Err(BundleError::WrongOrigin {
                expected: log.name.clone(),
                found: c.origin,
            });
        }
        let cosigned = witnesses
            .iter()
            .filter(|w| {
                w.kind == TYPE_COSIGNATURE
                    && verified
                        .iter()
                        .any(|v| v.name == w.name && v.key_id == w.key_id)
            })
            .count();
        if cosigned < min_cosignatures {
            return Err(BundleError::NotEnoughCosignatures {
                found: cosigned,
                required: min_cosignatures,
            });
        }
        verify_inclusion(&leaf_hash(entry), self.index, c.size, &self.proof, &c.root)
            .map_err(|e| BundleError::NotIncluded(e.to_string()))?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosignature::Cosigner;
    use crate::note::{Note, NoteSigner};
    use crate::proof::inclusion_proof;
    use crate::tree::MemoryTree;

    /// The structure of the spec's example (its signatures are elided there).
    #[test]
    fn the_specs_layout_parses() {
        let text = "c2sp.org/tlog-proof@v1\nextra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\nindex 73894\ngSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\nB95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n\nexample.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n\u{2014} example.com/fancylog AAAAAA==\n";
        let p = TlogProof::parse(text).unwrap();
        assert_eq!(p.index, 73894);
        assert_eq!(p.proof.len(), 2);
        assert!(p.extra.is_some());
        assert_eq!(p.to_text(), text, "re-encoding is byte-identical");
    }

    fn setup() -> (MemoryTree, NoteSigner, Cosigner, String) {
        let mut t = MemoryTree::new();
        for i in 0..13u8 {
            t.append(&[i; 5]);
        }
        let log = NoteSigner::from_seed("detente.example/alliance", &[1; 32]).unwrap();
        let w = Cosigner::from_seed("detente.example/federation", &[2; 32]).unwrap();
        let text = Checkpoint {
            origin: log.name.clone(),
            size: 13,
            root: t.root(13).unwrap(),
            extensions: vec![],
        }
        .to_text();
        let note = Note {
            signatures: vec![log.sign(&text), w.cosign(&text, 1_800_000_000)],
            text,
        };
        (t, log, w, note.to_text())
    }

    #[test]
    fn proofs_verify_and_every_kind_of_tampering_is_named() {
        let (t, log, w, cp) = setup();
        let p = TlogProof {
            extra: None,
            index: 7,
            proof: inclusion_proof(&t, 7, 13).unwrap().unwrap(),
            checkpoint: cp.clone(),
        };
        let text = p.to_text();
        let p = TlogProof::parse(&text).unwrap();
        let c = p
            .verify(&[7; 5], &log.verifier(), &[w.verifier()], 1)
            .unwrap();
        assert_eq!(c.size, 13);
        assert!(matches!(
            p.verify(&[8; 5], &log.verifier(), &[w.verifier()], 1),
            Err(BundleError::NotIncluded(_))
        ));
        let mut q = p.clone();
        q.proof[0][0] ^= 1;
        assert!(matches!(
            q.verify(&[7; 5], &log.verifier(), &[], 0),
            Err(BundleError::NotIncluded(_))
        ));
        let mut q = p.clone();
        q.checkpoint = q.checkpoint.replacen("13\n", "14\n", 1);
        assert!(matches!(
            q.verify(&[7; 5], &log.verifier(), &[], 0),
            Err(BundleError::Checkpoint(_))
        ));
        assert!(matches!(
            p.verify(&[7; 5], &log.verifier(), &[], 1),
            Err(BundleError::NotEnoughCosignatures {
                found: 0,
                required: 1
            })
        ));
        let stranger = NoteSigner::from_seed("detente.example/alliance", &[9; 32]).unwrap();
        assert!(matches!(
            p.verify(&[7; 5], &stranger.verifier(), &[], 0),
            Err(BundleError::Checkpoint(_))
        ));
    }
}
