//! RFC 6962 §2.1 / RFC 9162 §2.1.1 hashing: leaves and interior nodes are
//! domain-separated by a prefix byte; the empty tree hashes to SHA-256("").

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// Plain SHA-256.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// MTH({}) = SHA-256() — the root of the empty tree.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// MTH({d}) = SHA-256(0x00 || d).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// SHA-256(0x01 || left || right).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The largest power of two strictly smaller than `n` (n ≥ 2), the split
/// point k of RFC 9162 §2.1.1.
pub fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH of a list of leaf hashes, computed directly (reference for tests and
/// small trees).
pub fn root_of(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root_of(&leaves[..k]), &root_of(&leaves[k..]))
        }
    }
}

pub fn to_hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hashes() {
        // SHA-256 of the empty string (RFC 9162 §2.1.1: MTH({}) = HASH()).
        assert_eq!(
            to_hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // SHA-256(0x00): the hash of an empty leaf.
        assert_eq!(
            to_hex(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }

    #[test]
    fn split_is_the_largest_power_of_two_below() {
        assert_eq!(split(2), 1);
        assert_eq!(split(3), 2);
        assert_eq!(split(4), 2);
        assert_eq!(split(5), 4);
        assert_eq!(split(8), 4);
        assert_eq!(split(9), 8);
        assert_eq!(split(1 << 40), 1 << 39);
    }
}
