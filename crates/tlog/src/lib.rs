//! The evidence log's pure core: RFC 6962 / RFC 9162 §2.1 Merkle tree
//! hashing, inclusion and consistency proofs (generation and verification),
//! and the C2SP text formats — `signed-note` v1.0.0,
//! `tlog-checkpoint` v1.0.0 and `tlog-cosignature` v1.0.1 — byte for byte.
//!
//! Never does I/O, reads the clock or draws randomness: tree hashes come from
//! a [`tree::HashSource`] the caller implements (in memory here, in the
//! store later), timestamps and key seeds are passed in.

pub mod archive;
pub mod bundle;
pub mod cbor;
pub mod checkpoint;
pub mod cosignature;
pub mod ed25519;
pub mod entry;
pub mod hash;
pub mod note;
pub mod policy;
pub mod proof;
pub mod tiles;
pub mod tree;
pub mod witness;

pub use checkpoint::Checkpoint;
pub use hash::{Hash, leaf_hash, node_hash};
pub use note::{Note, NoteError, NoteSigner, Verifier};

/// Entry points for fuzzing and corpus regression tests: every parser of
/// outside input, with the round-trip properties that must hold.
pub mod fuzzing {
    /// Runs every parser on `data`; panics only if a property is broken.
    pub fn all(data: &[u8]) {
        if let Ok(v) = crate::cbor::decode(data) {
            assert_eq!(crate::cbor::encode(&v), data, "CBOR re-encodes identically");
        }
        if let Ok(e) = crate::entry::SignedEntry::parse(data) {
            assert_eq!(e.to_bytes(), data, "entries re-encode identically");
        }
        if let Ok(files) = crate::archive::read(data) {
            // Whatever reads writes back (under a folder) and reads the same.
            let under: Vec<(String, Vec<u8>)> = files.clone();
            if let Ok(again) = crate::archive::write("f", &under, 0) {
                let back = crate::archive::read(&again).expect("a written archive reads");
                let prefixed: Vec<(String, Vec<u8>)> = files
                    .into_iter()
                    .map(|(p, b)| (format!("f/{p}"), b))
                    .collect();
                assert_eq!(back, prefixed, "archives round-trip");
            }
        }
        if let Ok(n) = crate::note::Note::parse(data) {
            let _ = crate::checkpoint::Checkpoint::parse(&n.text);
        }
        if let Ok(text) = std::str::from_utf8(data) {
            if let Ok(p) = crate::bundle::TlogProof::parse(text) {
                let _ = p.to_text();
            }
            let _ = crate::note::Verifier::parse(text);
            if let Ok(p) = crate::policy::Policy::parse(text) {
                // A parsed policy always names its quorum, whatever is cosigned.
                let none = vec![false; p.witnesses.len()];
                let all = vec![true; p.witnesses.len()];
                assert!(
                    p.satisfied(&all) || p.witnesses.is_empty(),
                    "all witnesses meet any quorum"
                );
                let _ = p.satisfied(&none);
            }
            if let Some((level, index, width)) = crate::tiles::parse_tile_path(text) {
                let path = match level {
                    Some(l) => crate::tiles::tile_path(l, index, width),
                    None => crate::tiles::tile_path(0, index, width).replacen(
                        "tile/0/",
                        "tile/entries/",
                        1,
                    ),
                };
                assert_eq!(path, format!("tile/{text}"), "tile paths have one spelling");
            }
        }
        if let Ok(w) = crate::cosignature::Cosigner::from_seed("fuzz.example/w", &[1; 32]) {
            let _ = crate::witness::add_checkpoint(data, &[w.verifier()], |_| None, &w, 0);
        }
    }
}
