//! Inclusion and consistency proofs: generation per RFC 9162 §2.1.3.1 and
//! §2.1.4.1, verification per §2.1.3.2 and §2.1.4.2, at any tree size.

use crate::hash::{Hash, node_hash, split};
use crate::tree::{HashSource, range_root};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf index {index} is not below the tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("sizes {first} and {second} cannot have a consistency proof (need first ≤ second)")]
    BadSizes { first: u64, second: u64 },
    #[error("the proof has the wrong number of hashes")]
    WrongLength,
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
}

/// PATH(m, D[start:end]) of RFC 9162 §2.1.3.1.
fn path<S: HashSource + ?Sized>(
    src: &S,
    m: u64,
    start: u64,
    end: u64,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if n <= 1 {
        return Ok(());
    }
    let k = split(n);
    if m < k {
        path(src, m, start, start + k, out)?;
        out.push(range_root(src, start + k, end)?);
    } else {
        path(src, m - k, start + k, end, out)?;
        out.push(range_root(src, start, start + k)?);
    }
    Ok(())
}

/// The inclusion proof of leaf `index` in the tree of `size` leaves.
pub fn inclusion_proof<S: HashSource + ?Sized>(
    src: &S,
    index: u64,
    size: u64,
) -> Result<Result<Vec<Hash>, ProofError>, S::Error> {
    if index >= size {
        return Ok(Err(ProofError::IndexOutOfRange { index, size }));
    }
    let mut out = Vec::new();
    path(src, index, 0, size, &mut out)?;
    Ok(Ok(out))
}

/// SUBPROOF(m, D[start:end], b) of RFC 9162 §2.1.4.1.
fn subproof<S: HashSource + ?Sized>(
    src: &S,
    m: u64,
    start: u64,
    end: u64,
    complete: bool,
    out: &mut Vec<Hash>,
) -> Result<(), S::Error> {
    let n = end - start;
    if m == n {
        if !complete {
            out.push(range_root(src, start, end)?);
        }
        return Ok(());
    }
    let k = split(n);
    if m <= k {
        subproof(src, m, start, start + k, complete, out)?;
        out.push(range_root(src, start + k, end)?);
    } else {
        subproof(src, m - k, start + k, end, false, out)?;
        out.push(range_root(src, start, start + k)?);
    }
    Ok(())
}

/// The consistency proof from size `first` to size `second` (empty when
/// `first` is 0 or equals `second`).
pub fn consistency_proof<S: HashSource + ?Sized>(
    src: &S,
    first: u64,
    second: u64,
) -> Result<Result<Vec<Hash>, ProofError>, S::Error> {
    if first > second {
        return Ok(Err(ProofError::BadSizes { first, second }));
    }
    let mut out = Vec::new();
    if first > 0 && first < second {
        subproof(src, first, 0, second, true, &mut out)?;
    }
    Ok(Ok(out))
}

/// RFC 9162 §2.1.3.2: does `proof` show that `leaf` (a leaf hash) is at
/// `index` in the tree of `size` leaves with root `root`?
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: does `proof` show that the tree of `first` leaves with
/// root `first_root` is a prefix of the tree of `second` leaves with root
/// `second_root`? Equal sizes need an empty proof and equal roots; size 0 is
/// consistent with everything.
pub fn verify_consistency(
    first: u64,
    second: u64,
    proof: &[Hash],
    first_root: &Hash,
    second_root: &Hash,
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::BadSizes { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if first == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength);
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if &fr != first_root || &sr != second_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::tree::MemoryTree;
    use proptest::prelude::*;

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.append(&i.to_le_bytes());
        }
        t
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_up_to_40_leaves() {
        let t = tree(40);
        for size in 1..=40u64 {
            let root = t.root(size).unwrap();
            for index in 0..size {
                let p = inclusion_proof(&t, index, size).unwrap().unwrap();
                verify_inclusion(&leaf_hash(&index.to_le_bytes()), index, size, &p, &root).unwrap();
                assert!(verify_inclusion(&leaf_hash(b"other"), index, size, &p, &root).is_err());
            }
            for first in 0..=size {
                let p = consistency_proof(&t, first, size).unwrap().unwrap();
                verify_consistency(first, size, &p, &t.root(first).unwrap(), &root).unwrap();
                if first > 0 && first < size {
                    let wrong = t.root(first - 1).unwrap();
                    assert!(verify_consistency(first, size, &p, &wrong, &root).is_err());
                }
            }
        }
    }

    #[test]
    fn proof_lengths_are_logarithmic() {
        let t = tree(1000);
        assert_eq!(inclusion_proof(&t, 0, 1000).unwrap().unwrap().len(), 10);
        assert!(inclusion_proof(&t, 999, 1000).unwrap().unwrap().len() <= 10);
        assert!(consistency_proof(&t, 500, 1000).unwrap().unwrap().len() <= 11);
        assert!(inclusion_proof(&t, 1000, 1000).unwrap().is_err());
        assert!(consistency_proof(&t, 7, 3).unwrap().is_err());
    }

    proptest! {
        #[test]
        fn mutated_proofs_fail(size in 2u64..300, idx_seed in any::<u64>(), first_seed in any::<u64>(), flip in any::<usize>(), bit in 0u8..8) {
            let t = tree(size);
            let index = idx_seed % size;
            let root = t.root(size).unwrap();
            let mut p = inclusion_proof(&t, index, size).unwrap().unwrap();
            let leaf = leaf_hash(&index.to_le_bytes());
            prop_assert!(verify_inclusion(&leaf, index, size, &p, &root).is_ok());
            if !p.is_empty() {
                let i = flip % p.len();
                p[i][(flip / 7) % 32] ^= 1 << bit;
                prop_assert!(verify_inclusion(&leaf, index, size, &p, &root).is_err());
                p[i][(flip / 7) % 32] ^= 1 << bit;
                p.pop();
                prop_assert!(verify_inclusion(&leaf, index, size, &p, &root).is_err(), "a shortened proof fails");
            }
            prop_assert!(verify_inclusion(&leaf, index + size, size, &inclusion_proof(&t, index, size).unwrap().unwrap(), &root).is_err());
            let first = 1 + first_seed % (size - 1);
            let mut c = consistency_proof(&t, first, size).unwrap().unwrap();
            let r1 = t.root(first).unwrap();
            prop_assert!(verify_consistency(first, size, &c, &r1, &root).is_ok());
            let i = flip % c.len();
            c[i][(flip / 7) % 32] ^= 1 << bit;
            prop_assert!(verify_consistency(first, size, &c, &r1, &root).is_err());
        }
    }
}
