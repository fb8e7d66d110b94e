//! C2SP `tlog-cosignature` v1.0.1: a witness's timestamped Ed25519
//! signature (type 0x04) over `cosignature/v1\ntime <t>\n` followed by the
//! checkpoint's note text.

use crate::note::{NoteError, NoteSignature, TYPE_COSIGNATURE, Verifier, key_id};
use ed25519_dalek::Signer as _;

/// The message a cosignature signs.
pub fn signed_message(checkpoint_text: &str, timestamp: u64) -> String {
    format!("cosignature/v1\ntime {timestamp}\n{checkpoint_text}")
}

/// A witness's cosigning key.
#[derive(Clone)]
pub struct Cosigner {
    inner: crate::note::NoteSigner,
}

impl std::fmt::Debug for Cosigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cosigner")
            .field("name", &self.inner.name)
            .finish_non_exhaustive()
    }
}

impl Cosigner {
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        Ok(Cosigner {
            inner: crate::note::NoteSigner::from_seed(name, seed)?,
        })
    }
    pub fn key_id(&self) -> u32 {
        key_id(
            &self.inner.name,
            TYPE_COSIGNATURE,
            self.inner.signing_key().verifying_key().as_bytes(),
        )
    }
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.inner.name.clone(),
            key_id: self.key_id(),
            kind: TYPE_COSIGNATURE,
            key: self.inner.signing_key().verifying_key(),
        }
    }
    /// Cosigns a checkpoint's note text at `timestamp` (POSIX seconds, ≤ 2⁶³−1).
    pub fn cosign(&self, checkpoint_text: &str, timestamp: u64) -> NoteSignature {
        let sig = self
            .inner
            .signing_key()
            .sign(signed_message(checkpoint_text, timestamp).as_bytes());
        let mut bytes = timestamp.to_be_bytes().to_vec();
        bytes.extend_from_slice(&sig.to_bytes());
        NoteSignature {
            name: self.inner.name.clone(),
            key_id: self.key_id(),
            signature: bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::note::{Note, NoteSigner, open};

    /// C2SP tlog-cosignature v1.0.1, the example at the top of the spec: the
    /// witness line carries key ID 0x8d66cf3f and timestamp 1679315147, the
    /// time the spec's "Signed message" section shows.
    const SPEC_EXAMPLE: &str = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";

    #[test]
    fn the_specs_example_cosignature_has_the_specs_timestamp() {
        let note = Note::parse(SPEC_EXAMPLE.as_bytes()).unwrap();
        let w = &note.signatures[1];
        assert_eq!(w.name, "witness.example.com/w1");
        assert_eq!(w.key_id, 0x8d66cf3f);
        assert_eq!(w.signature.len(), 72);
        assert_eq!(
            u64::from_be_bytes(w.signature[..8].try_into().unwrap()),
            1_679_315_147
        );
        assert_eq!(
            signed_message(&note.text, 1_679_315_147),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
    }

    #[test]
    fn a_log_signature_and_a_cosignature_verify_and_tampering_fails() {
        let log = NoteSigner::from_seed("detente.example/alliance", &[1; 32]).unwrap();
        let witness = Cosigner::from_seed("detente.example/federation", &[2; 32]).unwrap();
        let text = Checkpoint {
            origin: "detente.example/alliance".into(),
            size: 3,
            root: [9; 32],
            extensions: vec![],
        }
        .to_text();
        let note = Note {
            text: text.clone(),
            signatures: vec![log.sign(&text), witness.cosign(&text, 1_800_000_000)],
        };
        let bytes = note.to_text();
        let (_, ok) = open(bytes.as_bytes(), &[log.verifier(), witness.verifier()]).unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].timestamp, Some(1_800_000_000));
        // A vkey of type 0x04 round-trips.
        let vk = witness.verifier().to_vkey();
        assert_eq!(Verifier::parse(&vk).unwrap(), witness.verifier());
        // The same key as type 0x01 has another key ID, so it is a different key.
        assert_ne!(
            witness.key_id(),
            NoteSigner::from_seed("detente.example/federation", &[2; 32])
                .unwrap()
                .key_id()
        );
        // Changing the timestamp breaks the cosignature.
        let mut forged = note.clone();
        forged.signatures[1].signature[7] ^= 1;
        assert!(open(forged.to_text().as_bytes(), &[witness.verifier()]).is_err());
    }
}
