//! Feldman verifiable secret sharing of a data key over Ristretto255.
//!
//! Dealing, checking and combining are written here for the hot paths (fixed-base tables for
//! the commitments, Horner's rule with the small public index for a holder's public share,
//! one inversion per combine); the tests hold every result to vsss-rs's own (`verify`).
//!
//! Protocol (names as in Feldman 1987): the dealer picks a random secret scalar `s` and a random
//! polynomial `f` of degree `t - 1` with `f(0) = s`; share `i` is `f(i)`; the commitments are
//! `C_0 = G` (the generator, checked so a dealer cannot pick its own) followed by `a_j·G` for
//! every coefficient. Anyone can check `f(i)·G = Σ a_j·i^j·G` without learning `s`; any `t`
//! shares give `s` by Lagrange interpolation at 0; fewer give nothing. The data key is
//! HKDF-SHA256 of `s`, because a random 32-byte string is not a canonical scalar.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{Identity, VartimeMultiscalarMul};
use hkdf::Hkdf;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use vsss_rs::curve25519::{WrappedRistretto, WrappedScalar};
use vsss_rs::*;
use zeroize::Zeroizing;

use crate::value::DataKey;
use crate::{invalid, CryptoError};

type VShare =
    DefaultShare<IdentifierPrimeField<WrappedScalar>, IdentifierPrimeField<WrappedScalar>>;
type VVerifier = ShareVerifierGroup<WrappedRistretto>;

/// Most shares a secret can be dealt into.
pub const MAX_SHARES: usize = 255;

/// One node's share: the point `(index, f(index))`. Secret: zeroized, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Share {
    /// 1-based x coordinate: the holder's position in the version's holder list, plus one.
    pub index: u16,
    value: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Share {{ index: {}, value: <redacted> }}", self.index)
    }
}

impl Share {
    /// 34 bytes: index (big-endian u16) then the scalar.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(34));
        out.extend_from_slice(&self.index.to_be_bytes());
        out.extend_from_slice(&self.value[..]);
        out
    }

    pub fn from_bytes(b: &[u8]) -> Result<Share, CryptoError> {
        if b.len() != 34 {
            return Err(invalid("share", format!("{} bytes, expected 34", b.len())));
        }
        let index = u16::from_be_bytes([b[0], b[1]]);
        if index == 0 {
            return Err(invalid("share", "index 0 is the secret itself"));
        }
        let mut value = Zeroizing::new([0u8; 32]);
        value.copy_from_slice(&b[2..]);
        if Option::<Scalar>::from(Scalar::from_canonical_bytes(*value)).is_none() {
            return Err(invalid("share", "value is not a canonical scalar"));
        }
        Ok(Share { index, value })
    }

    fn scalar(&self) -> Scalar {
        Scalar::from_canonical_bytes(*self.value).unwrap_or(Scalar::ZERO)
    }

    fn to_vsss(&self) -> VShare {
        VShare {
            identifier: IdentifierPrimeField(WrappedScalar(Scalar::from(u64::from(self.index)))),
            value: IdentifierPrimeField(WrappedScalar(self.scalar())),
        }
    }

    /// A copy with a different value: what a Byzantine holder would send (tests only).
    pub fn corrupted(&self) -> Share {
        let mut value = self.value.clone();
        value[0] ^= 1;
        value[31] &= 0x0f;
        Share {
            index: self.index,
            value,
        }
    }
}

/// Public commitments to the sharing polynomial: `t + 1` compressed Ristretto points, the
/// generator first. Safe to replicate and to show anyone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitments(#[serde(with = "crate::b64::arrays")] pub Vec<[u8; 32]>);

impl Commitments {
    /// The threshold these commitments describe.
    pub fn threshold(&self) -> usize {
        self.0.len().saturating_sub(1)
    }

    /// Checks the shape (so a malformed write is refused before it is stored): `t + 1` valid
    /// points, the first being the standard generator.
    pub fn check(&self, threshold: usize) -> Result<(), CryptoError> {
        if self.0.len() != threshold + 1 {
            return Err(invalid(
                "commitments",
                format!(
                    "{} points for threshold {threshold}, expected {}",
                    self.0.len(),
                    threshold + 1
                ),
            ));
        }
        self.points().map(|_| ())
    }

    /// The commitments decompressed once, for checking several shares: a reader checks `t`
    /// shares against the same commitments, and decompressing a point costs about as much as
    /// the check itself.
    pub fn verifier(&self) -> Result<Verifier, CryptoError> {
        if self.0.len() < 3 {
            return Err(invalid(
                "commitments",
                format!("{} points; a threshold of at least 2 takes 3", self.0.len()),
            ));
        }
        let points = self.points()?.into_iter().map(|p| p.0 .0).collect();
        Ok(Verifier {
            points,
            expected: Vec::new(),
        })
    }

    /// A verifier that has also worked out each of the `holders` holders' public share
    /// `Σ A_j·i^j` (public values only): a reader that keeps it for a version it reads often
    /// then checks a share with one fixed-base multiplication.
    pub fn verifier_for(&self, holders: usize) -> Result<Verifier, CryptoError> {
        let mut v = self.verifier()?;
        v.expected = (1..=holders.min(MAX_SHARES))
            .map(|i| v.public_share(i as u16))
            .collect();
        Ok(v)
    }

    fn points(&self) -> Result<Vec<VVerifier>, CryptoError> {
        let wrap =
            |p: &[RistrettoPoint]| p.iter().map(|p| ValueGroup(WrappedRistretto(*p))).collect();
        if let Some(p) = DECOMPRESSED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|c| c.get(&self.0))
        {
            return Ok(wrap(p));
        }
        let out = self.decompress()?;
        let points: Vec<RistrettoPoint> = out.iter().map(|p| p.0 .0).collect();
        let mut cache = DECOMPRESSED.lock().unwrap_or_else(|e| e.into_inner());
        let cache = cache.get_or_insert_with(Default::default);
        if cache.len() >= DECOMPRESSED_MAX {
            cache.clear();
        }
        cache.insert(self.0.clone(), points);
        Ok(out)
    }

    fn decompress(&self) -> Result<Vec<VVerifier>, CryptoError> {
        let mut out = Vec::with_capacity(self.0.len());
        for (i, b) in self.0.iter().enumerate() {
            let p = CompressedRistretto(*b).decompress().ok_or_else(|| {
                invalid(
                    "commitments",
                    format!("point {i} is not a valid Ristretto255 encoding"),
                )
            })?;
            if i == 0 && p != RISTRETTO_BASEPOINT_POINT {
                return Err(invalid(
                    "commitments",
                    "the first point must be the standard generator",
                ));
            }
            out.push(ValueGroup(WrappedRistretto(p)));
        }
        Ok(out)
    }
}

/// Commitment sets already decompressed (and so found well-formed), by their encoding. A
/// node meets each write's commitments several times (checked when the write is validated,
/// again when it is applied, and to check its own share), and decompressing `t + 1` points
/// costs more than checking a share. Only public values; bounded.
static DECOMPRESSED: std::sync::Mutex<Option<PointCache>> = std::sync::Mutex::new(None);
type PointCache = std::collections::HashMap<Vec<[u8; 32]>, Vec<RistrettoPoint>>;
const DECOMPRESSED_MAX: usize = 4096;

/// The result of dealing: the data key (for the dealer to encrypt with, then drop), one share per
/// holder, and the commitments.
pub struct Dealing {
    pub key: DataKey,
    pub shares: Vec<Share>,
    pub commitments: Commitments,
}

impl std::fmt::Debug for Dealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dealing(<redacted>)")
    }
}

fn derive_key(secret: &Scalar) -> DataKey {
    let ikm = Zeroizing::new(secret.to_bytes());
    let hk = Hkdf::<Sha256>::new(Some(b"tessera/data-key/v1"), &ikm[..]);
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand(b"aes-256-gcm", &mut key[..])
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    DataKey(key)
}

/// Deals a fresh random data key `threshold` of `holders`.
pub fn deal(threshold: usize, holders: usize) -> Result<Dealing, CryptoError> {
    if threshold < 2 || threshold > holders || holders > MAX_SHARES {
        return Err(invalid(
            "threshold",
            format!("need 2 <= t <= n <= {MAX_SHARES}, got t = {threshold}, n = {holders}"),
        ));
    }
    // f(x) = a_0 + a_1·x + .. + a_{t-1}·x^{t-1}, with the secret a_0 and the other
    // coefficients drawn fresh. Commitments are `[G, a_0·G, .., a_{t-1}·G]` (generator first, as
    // vsss-rs lays out a Feldman verifier set), each from the fixed-base table: a third of a
    // general multiplication.
    let mut rng = crate::rng();
    let coefficients: Vec<Zeroizing<Scalar>> = (0..threshold)
        .map(|_| Zeroizing::new(Scalar::random(&mut rng)))
        .collect();
    let secret = &coefficients[0];
    let mut commitments = Vec::with_capacity(threshold + 1);
    commitments.push(RISTRETTO_BASEPOINT_POINT.compress().to_bytes());
    for a in &coefficients {
        commitments.push(RistrettoPoint::mul_base(a).compress().to_bytes());
    }
    let commitments = Commitments(commitments);
    // Share i is f(i), by Horner's rule.
    let shares = (1..=holders)
        .map(|i| {
            let x = Scalar::from(i as u64);
            let mut value = Zeroizing::new(Scalar::ZERO);
            for a in coefficients.iter().rev() {
                *value = *value * x + **a;
            }
            Share {
                index: i as u16,
                value: Zeroizing::new(value.to_bytes()),
            }
        })
        .collect();
    Ok(Dealing {
        key: derive_key(secret),
        shares,
        commitments,
    })
}

/// Decompressed commitments `[G, A_0, .., A_{t-1}]` (see `Commitments::verifier`).
pub struct Verifier {
    points: Vec<RistrettoPoint>,
    /// Holder `i`'s public share at `expected[i - 1]`, when worked out ahead
    /// (`Commitments::verifier_for`).
    expected: Vec<RistrettoPoint>,
}

impl Verifier {
    /// `Σ A_j·i^j`: what share `i` times the generator must be, by Horner's rule
    /// (`((A_{t-1}·i + A_{t-2})·i + ..)·i + A_0`). The index is small (at most 16 bits), so each
    /// step is a handful of doublings and additions, where a general multiscalar product runs
    /// about 250 doublings whatever the scalars. Only public values go in (the index and the
    /// commitments), so variable time is safe.
    fn public_share(&self, index: u16) -> RistrettoPoint {
        let mut acc = RistrettoPoint::identity();
        for a in self.points[1..].iter().rev() {
            acc = mul_small(&acc, index) + a;
        }
        acc
    }

    fn expected(&self, index: u16) -> RistrettoPoint {
        match self.expected.get(usize::from(index).wrapping_sub(1)) {
            Some(p) => *p,
            None => self.public_share(index),
        }
    }

    /// Feldman's check for several shares at once (a reader's `t` shares of one version), as
    /// one random linear combination: `(Σ z_k·f(x_k))·G = Σ z_k·P_k` with fresh random 128-bit
    /// `z_k`. If any share is wrong the two sides differ except with probability 2^-128 (the
    /// shares are fixed before the `z_k` are drawn, and the group has prime order), so this
    /// checks every share, for one fixed-base multiplication in all. It says only whether all
    /// are good: on `false`, check each with `verify` to name the bad ones.
    pub fn verify_all(&self, shares: &[&Share]) -> bool {
        match shares {
            [] => true,
            [one] => self.verify(one).is_ok(),
            _ => {
                let mut rng = crate::rng();
                let zs: Vec<Scalar> = shares
                    .iter()
                    .map(|_| {
                        let mut b = [0u8; 16];
                        rand08::RngCore::fill_bytes(&mut rng, &mut b);
                        Scalar::from(u128::from_le_bytes(b))
                    })
                    .collect();
                let mut combined = Zeroizing::new(Scalar::ZERO);
                for (z, s) in zs.iter().zip(shares) {
                    let value = Zeroizing::new(s.scalar());
                    *combined += *value * z;
                }
                let points: Vec<RistrettoPoint> =
                    shares.iter().map(|s| self.expected(s.index)).collect();
                RistrettoPoint::mul_base(&combined)
                    == RistrettoPoint::vartime_multiscalar_mul(&zs, &points)
            }
        }
    }

    /// Feldman's check `f(i)·G = Σ A_j·i^j`. The left side takes the share, so it is computed
    /// in constant time (fixed-base tables).
    pub fn verify(&self, share: &Share) -> Result<(), CryptoError> {
        let expected = self.expected(share.index);
        let value = Zeroizing::new(share.scalar());
        if RistrettoPoint::mul_base(&value) == expected {
            Ok(())
        } else {
            Err(CryptoError::BadShare { index: share.index })
        }
    }
}

/// `k·P` for a small public `k`, by double-and-add over its bits (variable time: public
/// values only).
fn mul_small(p: &RistrettoPoint, k: u16) -> RistrettoPoint {
    let mut r = RistrettoPoint::identity();
    for bit in (0..16 - k.leading_zeros()).rev() {
        r = r + r;
        if (k >> bit) & 1 == 1 {
            r += p;
        }
    }
    r
}

/// Checks a share against the commitments (vsss-rs's own check; a reader checking several
/// shares uses `Commitments::verifier`).
pub fn verify(share: &Share, commitments: &Commitments) -> Result<(), CryptoError> {
    let points = commitments.points()?;
    let set: Vec<VVerifier> = points;
    set.verify_share(&share.to_vsss())
        .map_err(|_| CryptoError::BadShare { index: share.index })
}

/// Lagrange coefficients at 0 for one set of share indices: `λ_i = Π_{j≠i} x_j / (x_j - x_i)`.
/// They depend only on the (public) indices, so a reader that combines shares from the same
/// holders again keeps them: working them out costs a scalar inversion, more than the rest of
/// a combine.
#[derive(Clone, Debug)]
pub struct Lagrange {
    indices: Vec<u16>,
    coefficients: Vec<Scalar>,
}

impl Lagrange {
    pub fn new(indices: &[u16]) -> Result<Lagrange, CryptoError> {
        if indices.is_empty() {
            return Err(CryptoError::NotEnoughShares { need: 1, have: 0 });
        }
        let mut seen = std::collections::BTreeSet::new();
        if let Some(i) = indices.iter().find(|i| **i == 0 || !seen.insert(**i)) {
            return Err(invalid(
                "shares",
                format!("cannot combine: index {i} is zero or appears twice"),
            ));
        }
        let xs: Vec<Scalar> = indices
            .iter()
            .map(|i| Scalar::from(u64::from(*i)))
            .collect();
        let mut numerators = vec![Scalar::ONE; xs.len()];
        let mut denominators = vec![Scalar::ONE; xs.len()];
        for (i, xi) in xs.iter().enumerate() {
            for (j, xj) in xs.iter().enumerate() {
                if i != j {
                    numerators[i] *= xj;
                    denominators[i] *= xj - xi;
                }
            }
        }
        // Indices are distinct and non-zero, so no denominator is zero; one inversion for all.
        Scalar::batch_invert(&mut denominators);
        let coefficients = numerators
            .iter()
            .zip(&denominators)
            .map(|(n, d)| n * d)
            .collect();
        Ok(Lagrange {
            indices: indices.to_vec(),
            coefficients,
        })
    }

    /// The share indices these coefficients are for, in order.
    pub fn indices(&self) -> &[u16] {
        &self.indices
    }
}

/// Recombines the data key from at least `threshold` shares (verify each one first): Lagrange
/// interpolation at 0 over the first `threshold`.
pub fn combine(shares: &[Share], threshold: usize) -> Result<DataKey, CryptoError> {
    if shares.len() < threshold || threshold == 0 {
        return Err(CryptoError::NotEnoughShares {
            need: threshold.max(1),
            have: shares.len(),
        });
    }
    let pick = &shares[..threshold];
    let indices: Vec<u16> = pick.iter().map(|s| s.index).collect();
    combine_with(pick, &Lagrange::new(&indices)?)
}

/// `combine`, with coefficients worked out before for exactly these shares' indices, in order.
pub fn combine_with(shares: &[Share], lagrange: &Lagrange) -> Result<DataKey, CryptoError> {
    if shares.len() != lagrange.indices.len()
        || shares
            .iter()
            .zip(&lagrange.indices)
            .any(|(s, i)| s.index != *i)
    {
        return Err(invalid(
            "shares",
            "cannot combine: the coefficients are for other share indices",
        ));
    }
    let mut secret = Zeroizing::new(Scalar::ZERO);
    for (share, l) in shares.iter().zip(&lagrange.coefficients) {
        let value = Zeroizing::new(share.scalar());
        *secret += *value * l;
    }
    Ok(derive_key(&secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key_bytes(k: &DataKey) -> [u8; 32] {
        *k.0
    }

    #[test]
    fn every_share_verifies_and_a_changed_one_does_not() {
        let d = deal(3, 5).unwrap();
        assert_eq!(d.commitments.0.len(), 4);
        for s in &d.shares {
            verify(s, &d.commitments).unwrap();
            assert_eq!(
                verify(&s.corrupted(), &d.commitments),
                Err(CryptoError::BadShare { index: s.index })
            );
        }
        // Shares do not verify against another dealing's commitments.
        let other = deal(3, 5).unwrap();
        assert!(verify(&d.shares[0], &other.commitments).is_err());
    }

    #[test]
    fn commitments_shape_is_checked() {
        let d = deal(2, 3).unwrap();
        assert!(d.commitments.check(2).is_ok());
        assert!(d.commitments.check(3).is_err());
        let mut bad = d.commitments.clone();
        bad.0[0] = bad.0[1];
        assert!(
            bad.check(2).is_err(),
            "a dealer-chosen generator is refused"
        );
        let mut bad = d.commitments.clone();
        bad.0[1] = [0xff; 32];
        assert!(bad.check(2).is_err());
    }

    #[test]
    fn share_bytes_round_trip_and_reject_garbage() {
        let d = deal(2, 3).unwrap();
        let b = d.shares[1].to_bytes();
        assert_eq!(Share::from_bytes(&b).unwrap(), d.shares[1]);
        assert!(Share::from_bytes(&b[..33]).is_err());
        assert!(!format!("{:?}", d.shares[1]).contains(&format!("{:?}", &b[2..6])));
        assert!(deal(1, 3).is_err());
        assert!(deal(4, 3).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn any_t_shares_give_the_key_and_t_minus_1_do_not(t in 2usize..6, extra in 0usize..4, seed in any::<u64>()) {
            let n = t + extra;
            let d = deal(t, n).unwrap();
            let want = key_bytes(&d.key);
            // A pseudo-random subset of t shares, in a pseudo-random order.
            let mut idx: Vec<usize> = (0..n).collect();
            let mut s = seed;
            for i in (1..n).rev() {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                idx.swap(i, (s >> 33) as usize % (i + 1));
            }
            let pick: Vec<Share> = idx[..t].iter().map(|i| d.shares[*i].clone()).collect();
            prop_assert_eq!(key_bytes(&combine(&pick, t).unwrap()), want);
            // t - 1 shares: refused as too few, and interpolating them as if they were enough
            // gives a different key.
            prop_assert!(combine(&pick[..t - 1], t).is_err());
            if t > 2 {
                prop_assert_ne!(key_bytes(&combine(&pick[..t - 1], t - 1).unwrap()), want);
            }
        }

        #[test]
        fn combine_agrees_with_vsss_rs(t in 2usize..6, extra in 0usize..4, start in 0usize..8) {
            let d = deal(t, t + extra).unwrap();
            let n = t + extra;
            let pick: Vec<Share> = (0..t).map(|k| d.shares[(start + k) % n].clone()).collect();
            let theirs: Vec<VShare> = pick.iter().map(Share::to_vsss).collect();
            let secret = theirs.combine().unwrap();
            let want = derive_key(&secret.0 .0);
            prop_assert_eq!(key_bytes(&combine(&pick, t).unwrap()), key_bytes(&want));
        }

        #[test]
        fn a_batch_check_passes_exactly_when_every_share_does(t in 2usize..6, bad in 0usize..8) {
            let d = deal(t, t + 2).unwrap();
            let v = d.commitments.verifier_for(t + 2).unwrap();
            let mut pick: Vec<Share> = d.shares[..t].to_vec();
            prop_assert!(v.verify_all(&pick.iter().collect::<Vec<_>>()));
            // One changed share, anywhere, fails the lot (and is the one `verify` names).
            let k = bad % t;
            pick[k] = pick[k].corrupted();
            prop_assert!(!v.verify_all(&pick.iter().collect::<Vec<_>>()));
            let named: Vec<usize> = (0..t).filter(|i| v.verify(&pick[*i]).is_err()).collect();
            prop_assert_eq!(named, vec![k]);
            // A true share presented under another holder's index fails too.
            let mut moved: Vec<Share> = d.shares[..t].to_vec();
            moved[0] = Share { index: d.shares[t].index, value: moved[0].value.clone() };
            prop_assert!(!v.verify_all(&moved.iter().collect::<Vec<_>>()));
        }

        #[test]
        fn kept_coefficients_combine_like_fresh_ones(t in 2usize..6, start in 0usize..8) {
            let d = deal(t, t + 3).unwrap();
            let pick: Vec<Share> = (0..t).map(|k| d.shares[(start + k) % (t + 3)].clone()).collect();
            let indices: Vec<u16> = pick.iter().map(|s| s.index).collect();
            let l = Lagrange::new(&indices).unwrap();
            prop_assert_eq!(key_bytes(&combine_with(&pick, &l).unwrap()), key_bytes(&combine(&pick, t).unwrap()));
            // Coefficients for other indices (or another order) are refused, not misapplied.
            let mut other = pick.clone();
            other.swap(0, 1);
            prop_assert!(combine_with(&other, &l).is_err());
        }

        #[test]
        fn combine_refuses_a_repeated_index(t in 2usize..5) {
            let d = deal(t, t + 1).unwrap();
            let mut pick: Vec<Share> = d.shares[..t].to_vec();
            pick[1] = pick[0].clone();
            prop_assert!(combine(&pick, t).is_err());
        }

        #[test]
        fn horner_public_shares_match_the_multiscalar_product(t in 2usize..8, index in 1u16..u16::MAX) {
            let d = deal(t, t).unwrap();
            let v = d.commitments.verifier().unwrap();
            let x = Scalar::from(u64::from(index));
            let mut power = Scalar::ONE;
            let mut powers = Vec::new();
            for _ in 1..v.points.len() {
                powers.push(power);
                power *= x;
            }
            let msm = RistrettoPoint::vartime_multiscalar_mul(&powers, &v.points[1..]);
            prop_assert_eq!(v.public_share(index), msm);
        }

        #[test]
        fn the_reader_check_agrees_with_vsss_rs(t in 2usize..6, extra in 0usize..4) {
            let d = deal(t, t + extra).unwrap();
            let verifier = d.commitments.verifier().unwrap();
            // Worked out ahead for fewer holders than there are, so both paths run.
            let ahead = d.commitments.verifier_for(t + extra - 1).unwrap();
            for s in &d.shares {
                prop_assert!(verifier.verify(s).is_ok());
                prop_assert!(ahead.verify(s).is_ok());
                prop_assert!(verify(s, &d.commitments).is_ok());
                let bad = s.corrupted();
                prop_assert!(verifier.verify(&bad).is_err());
                prop_assert!(ahead.verify(&bad).is_err());
                prop_assert!(verify(&bad, &d.commitments).is_err());
                // A true value presented as another holder's share.
                let moved = Share { index: s.index % (t + extra) as u16 + 1, value: s.value.clone() };
                prop_assert!(verifier.verify(&moved).is_err());
                prop_assert!(ahead.verify(&moved).is_err());
                prop_assert!(verify(&moved, &d.commitments).is_err());
            }
        }
    }
}
