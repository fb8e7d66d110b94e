//! Ed25519 verification with the strict rules of ed25519-dalek's
//! `verify_strict`, for less work.
//!
//! `verify_strict` accepts a signature `(R, s)` by key `A` on `M` when `s`
//! is canonical (`s < ℓ`), `R` decodes to a point of more than small order,
//! `A` is not of small order, and the compressed encoding of
//! `[s]B − [H(R‖A‖M)]A` equals `R`'s bytes (RFC 8032 §5.1.7, without the
//! cofactor). It decodes `R` (a square root in the field, a sixth of the
//! work) only to test its order. Here the equation is checked first, on
//! the bytes: when it holds, `R` is the canonical encoding of that point,
//! and the point is of small order exactly when the bytes are one of the
//! eight canonical encodings of the curve's eight points of order dividing
//! 8 ([`SMALL_ORDER`]). The answer is `verify_strict`'s in every case
//! (tested against it below, on valid, altered and crafted signatures).

use ed25519_dalek::ed25519::signature::MultipartVerifier as _;
use ed25519_dalek::{Signature, VerifyingKey};

/// The canonical encodings (RFC 8032 §5.1.2) of the eight points of
/// edwards25519 whose order divides 8: the identity, the point of order 2,
/// the two of order 4 and the four of order 8.
const SMALL_ORDER: [[u8; 32]; 8] = [
    hex32("0100000000000000000000000000000000000000000000000000000000000000"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("0000000000000000000000000000000000000000000000000000000000000000"),
    hex32("0000000000000000000000000000000000000000000000000000000000000080"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
];

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("not a lowercase hex digit"),
        }
    }
    let s = s.as_bytes();
    assert!(s.len() == 64, "32 bytes are 64 hex digits");
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = nibble(s[2 * i]) << 4 | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// Whether `signature` is `key`'s signature of the concatenation of
/// `message` (its parts, so that a domain prefix is not copied in front of
/// the body), by `verify_strict`'s rules (module doc).
pub fn verify_strict(key: &VerifyingKey, message: &[&[u8]], signature: &Signature) -> bool {
    if key.is_weak() {
        return false;
    }
    if key.multipart_verify(message, signature).is_err() {
        return false;
    }
    !SMALL_ORDER.contains(signature.r_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::{Signer as _, SigningKey};
    use proptest::prelude::*;
    use sha2::Digest as _;

    fn strict(key: &VerifyingKey, message: &[u8], sig: &Signature) -> bool {
        key.verify_strict(message, sig).is_ok()
    }

    fn both(key: &VerifyingKey, message: &[u8], sig: &Signature) -> (bool, bool) {
        let (a, b) = message.split_at(message.len() / 2);
        (verify_strict(key, &[a, b], sig), strict(key, message, sig))
    }

    #[test]
    fn the_eight_encodings_are_the_whole_small_order_subgroup() {
        let mut seen = std::collections::BTreeSet::new();
        for bytes in SMALL_ORDER {
            let p = CompressedEdwardsY(bytes)
                .decompress()
                .expect("a small-order encoding decodes");
            assert!(p.is_small_order(), "{bytes:02x?} is of small order");
            assert_eq!(p.compress().to_bytes(), bytes, "and canonical");
            assert!(seen.insert(bytes), "distinct");
        }
        // edwards25519 has order 8ℓ with a cyclic subgroup of order 8: the
        // multiples of a point of order 8 are all of it, and all listed.
        let p8 = CompressedEdwardsY(SMALL_ORDER[4]).decompress().unwrap();
        let mut p = EdwardsPoint::default();
        for _ in 0..8 {
            assert!(seen.contains(&p.compress().to_bytes()));
            p += p8;
        }
        assert_eq!(p, EdwardsPoint::default(), "of order 8");
    }

    /// `(R, s)` with `R` the identity passing the cofactorless equation for
    /// a key of prime order: `s = k·a` makes `[s]B − [k]A` the identity.
    #[test]
    fn a_signature_whose_r_is_of_small_order_is_refused_as_verify_strict_refuses_it() {
        let a = Scalar::from(0x1234_5678_9abc_def0_u64);
        let key_point = a * B;
        let key = VerifyingKey::from(key_point);
        let r = SMALL_ORDER[0];
        let message = b"detente-entry/v1\nany body";
        let mut h = sha2::Sha512::new();
        h.update(r);
        h.update(key_point.compress().as_bytes());
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&r);
        bytes[32..].copy_from_slice((k * a).as_bytes());
        let sig = Signature::from_bytes(&bytes);
        use ed25519_dalek::Verifier as _;
        assert!(key.verify(message, &sig).is_ok(), "the equation holds");
        assert_eq!(both(&key, message, &sig), (false, false));
    }

    #[test]
    fn a_weak_key_is_refused_even_where_the_equation_holds() {
        // A the identity: [s]B − [k]A is [s]B whatever k, so R = [s]B (of
        // prime order) passes the equation for any message; only the key's
        // order refuses it.
        let key = VerifyingKey::from_bytes(&SMALL_ORDER[0]).unwrap();
        let s = Scalar::from(5u8);
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice((s * B).compress().as_bytes());
        bytes[32..].copy_from_slice(s.as_bytes());
        let sig = Signature::from_bytes(&bytes);
        for message in [&b"anything"[..], b"detente-entry/v1\n", b""] {
            use ed25519_dalek::Verifier as _;
            assert!(key.verify(message, &sig).is_ok(), "the equation holds");
            assert_eq!(both(&key, message, &sig), (false, false));
        }
    }

    #[test]
    fn a_non_canonical_s_is_refused() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let sig = key.sign(b"m").to_bytes();
        // s + ℓ: the same scalar, not canonical.
        let l = Scalar::ZERO - Scalar::ONE;
        let mut s = [0u8; 32];
        s.copy_from_slice(&sig[32..]);
        let mut wide = [0u8; 32];
        let mut carry = 1u16; // ℓ = (ℓ − 1) + 1
        for i in 0..32 {
            let v = u16::from(s[i]) + u16::from(l.as_bytes()[i]) + carry;
            wide[i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0, "s + ℓ < 2²⁵⁴ fits in 32 bytes");
        let mut altered = sig;
        altered[32..].copy_from_slice(&wide[..32]);
        let altered = Signature::from_bytes(&altered);
        assert_eq!(both(&key.verifying_key(), b"m", &altered), (false, false));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn agrees_with_verify_strict_on_valid_and_altered_signatures(
            seed in any::<[u8; 32]>(),
            message in proptest::collection::vec(any::<u8>(), 0..200),
            flip in 0usize..(64 * 8 + 32 * 8),
            other in any::<[u8; 32]>(),
        ) {
            let signer = SigningKey::from_bytes(&seed);
            let key = signer.verifying_key();
            let sig = signer.sign(&message);
            prop_assert_eq!(both(&key, &message, &sig), (true, true));
            // One bit of the signature or of the key changed.
            if flip < 64 * 8 {
                let mut b = sig.to_bytes();
                b[flip / 8] ^= 1 << (flip % 8);
                let altered = Signature::from_bytes(&b);
                let (ours, theirs) = both(&key, &message, &altered);
                prop_assert_eq!(ours, theirs);
                prop_assert!(!ours);
            } else {
                let f = flip - 64 * 8;
                let mut k = key.to_bytes();
                k[f / 8] ^= 1 << (f % 8);
                if let Ok(altered) = VerifyingKey::from_bytes(&k) {
                    let (ours, theirs) = both(&altered, &message, &sig);
                    prop_assert_eq!(ours, theirs);
                }
            }
            // Another key altogether.
            let stranger = SigningKey::from_bytes(&other).verifying_key();
            let (ours, theirs) = both(&stranger, &message, &sig);
            prop_assert_eq!(ours, theirs);
            // R replaced by each small-order encoding.
            for r in SMALL_ORDER {
                let mut b = sig.to_bytes();
                b[..32].copy_from_slice(&r);
                let (ours, theirs) = both(&key, &message, &Signature::from_bytes(&b));
                prop_assert_eq!(ours, theirs);
            }
        }
    }
}
