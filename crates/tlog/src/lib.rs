//! The evidence log's pure core: RFC 6962 / RFC 9162 §2.1 Merkle tree
//! hashing, inclusion and consistency proofs (generation and verification),
//! and the C2SP text formats pinned in DESIGN.md §3 — `signed-note` v1.0.0,
//! `tlog-checkpoint` v1.0.0 and `tlog-cosignature` v1.0.1 — byte for byte.
//!
//! Never does I/O, reads the clock or draws randomness: tree hashes come from
//! a [`tree::HashSource`] the caller implements (in memory here, in the
//! store later), timestamps and key seeds are passed in.

pub mod bundle;
pub mod cbor;
pub mod checkpoint;
pub mod cosignature;
pub mod entry;
pub mod hash;
pub mod note;
pub mod proof;
pub mod tree;
pub mod witness;

pub use checkpoint::Checkpoint;
pub use hash::{Hash, leaf_hash, node_hash};
pub use note::{Note, NoteError, NoteSigner, Verifier};
