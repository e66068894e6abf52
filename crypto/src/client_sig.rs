//! Clients' Ed25519 signatures on the commands they submit, as every node checks them: one at a
//! time, or all the commands of one Raft entry at once.
//!
//! # Security
//!
//! Every node must reach the same verdict on every signature, or their replicated states part.
//! Ed25519 has two verification equations that disagree on signatures with a small-order
//! component (which any client can make with its own key): the cofactorless `[s]B = R + [k]A`
//! and the cofactored `[8][s]B = [8]R + [8][k]A`. ed25519-dalek's single check is cofactorless
//! and its batch check is cofactorless over random weights, so its batch verdict on such a
//! signature depends on the other signatures in the batch, and two nodes whose batches differ
//! (one had already checked some of the entry's signatures as they arrived through its API)
//! would apply the same entry differently. So this module checks both ways with the cofactored
//! equation (as ZIP-215 does): a batch passes exactly when each of its signatures would pass
//! alone, but for a chance of 2^-128 from its weights, whatever else is in it.
//!
//! The weights are derived from every signature, key and message of the batch (SHA-512), so a
//! signer cannot choose them; the signature scalar must be canonical (`s < l`).
//!
//! A client's key is read (decompressed) once, into a [`ClientKey`] kept by the node's signer
//! cache, instead of once per signature.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

/// A client's Ed25519 public key, decompressed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClientKey {
    compressed: [u8; 32],
    point: EdwardsPoint,
}

impl ClientKey {
    /// The key these 32 bytes encode, or `None` if they encode no curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<ClientKey> {
        let point = CompressedEdwardsY(*bytes).decompress()?;
        Some(ClientKey {
            compressed: *bytes,
            point,
        })
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.compressed
    }
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKey({:02x?})", &self.compressed[..8])
    }
}

/// One signature to check.
#[derive(Clone, Copy)]
pub struct Signed<'a> {
    pub key: &'a ClientKey,
    pub message: &'a [u8],
    pub signature: &'a [u8],
}

/// A signature read for checking: `R`, `s` and the challenge `k = H(R || A || M)`.
struct Parsed {
    r_bytes: [u8; 32],
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

/// Reads a signature; `None` if it is not 64 bytes, `R` is no point or `s` is not canonical.
fn parse(item: &Signed<'_>) -> Option<Parsed> {
    let sig: &[u8; 64] = item.signature.try_into().ok()?;
    let (r_bytes, s_bytes) = sig.split_at(32);
    let r_bytes: [u8; 32] = r_bytes.try_into().ok()?;
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    let s = Option::from(Scalar::from_canonical_bytes(s_bytes.try_into().ok()?))?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(item.key.compressed);
    h.update(item.message);
    let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    Some(Parsed { r_bytes, r, s, k })
}

/// Whether one signature verifies: `[8]([s]B - [k]A - R) = 0`.
pub fn verify_one(key: &ClientKey, message: &[u8], signature: &[u8]) -> bool {
    let item = Signed {
        key,
        message,
        signature,
    };
    let Some(p) = parse(&item) else { return false };
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-key.point, &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// Whether every signature verifies under the rule above, checked together:
/// `[8](-(sum z_i s_i) B + sum z_i R_i + sum z_i k_i A_i) = 0` with 128-bit weights `z_i`. An
/// unreadable key or signature fails.
pub fn verify_all(items: &[Signed<'_>]) -> bool {
    match items {
        [] => return true,
        [one] => return verify_one(one.key, one.message, one.signature),
        _ => {}
    }
    let mut parsed = Vec::with_capacity(items.len());
    // The weights' seed: every input of the batch.
    let mut seed = Sha512::new();
    seed.update(b"tessera client signature batch v1");
    for it in items {
        let Some(p) = parse(it) else { return false };
        seed.update(p.k.as_bytes());
        seed.update(p.r_bytes);
        seed.update(p.s.as_bytes());
        parsed.push(p);
    }
    let seed = seed.finalize();
    let mut b_coefficient = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(2 * items.len() + 1);
    let mut points = Vec::with_capacity(2 * items.len() + 1);
    for (i, (it, p)) in items.iter().zip(&parsed).enumerate() {
        let mut h = Sha512::new();
        h.update(seed);
        h.update((i as u64).to_le_bytes());
        let mut z = [0u8; 32];
        z[..16].copy_from_slice(&h.finalize()[..16]);
        let z = Scalar::from_bytes_mod_order(z);
        b_coefficient += z * p.s;
        scalars.push(z);
        points.push(p.r);
        scalars.push(z * p.k);
        points.push(it.key.point);
    }
    scalars.push(-b_coefficient);
    points.push(ED25519_BASEPOINT_POINT);
    EdwardsPoint::vartime_multiscalar_mul(scalars, points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn a_batch_passes_when_each_passes_and_fails_for_one_bad_signature() {
        let keys: Vec<SigningKey> = (0..5)
            .map(|_| SigningKey::generate(&mut rand08::rngs::OsRng))
            .collect();
        let publics: Vec<ClientKey> = keys
            .iter()
            .map(|k| ClientKey::from_bytes(&k.verifying_key().to_bytes()).unwrap())
            .collect();
        let messages: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 40]).collect();
        let mut sigs: Vec<[u8; 64]> = keys
            .iter()
            .zip(&messages)
            .map(|(k, m)| k.sign(m).to_bytes())
            .collect();
        let items = |sigs: &[[u8; 64]]| -> Vec<(usize, [u8; 64])> {
            sigs.iter().copied().enumerate().collect()
        };
        let check = |sigs: &[[u8; 64]]| {
            let owned = items(sigs);
            let batch: Vec<Signed<'_>> = owned
                .iter()
                .map(|(i, s)| Signed {
                    key: &publics[*i],
                    message: &messages[*i],
                    signature: s,
                })
                .collect();
            verify_all(&batch)
        };
        assert!(check(&sigs));
        for i in 0..5 {
            assert!(verify_one(&publics[i], &messages[i], &sigs[i]));
        }
        sigs[3][10] ^= 1;
        assert!(!check(&sigs));
        assert!(!verify_one(&publics[3], &messages[3], &sigs[3]));
        assert!(verify_one(&publics[2], &messages[2], &sigs[2]));
        // Another message, or a malformed signature, fails.
        assert!(!verify_one(&publics[0], b"other", &sigs[0]));
        assert!(!verify_one(&publics[0], &messages[0], &sigs[0][..63]));
    }

    /// A signature whose `R` carries a small-order component `T`: `R' = [r]B + T`, `s = r + k a`
    /// with `k = H(R' || A || M)`. The cofactored equation holds, the cofactorless one does not
    /// (unless `[k]T` happens to vanish).
    fn torsioned(key: &SigningKey, message: &[u8], t: usize) -> [u8; 64] {
        use curve25519_dalek::constants::EIGHT_TORSION;
        // ed25519's secret scalar: the clamped first half of the seed's hash.
        let h = Sha512::digest(key.to_bytes());
        let mut x = [0u8; 32];
        x.copy_from_slice(&h[..32]);
        x[0] &= 248;
        x[31] &= 127;
        x[31] |= 64;
        let a = Scalar::from_bytes_mod_order(x);
        let public = ED25519_BASEPOINT_POINT * a;
        assert_eq!(public.compress().to_bytes(), key.verifying_key().to_bytes());
        let r = Scalar::from_bytes_mod_order([message.len() as u8 + t as u8; 32]);
        let big_r = (ED25519_BASEPOINT_POINT * r + EIGHT_TORSION[t]).compress();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(public.compress().as_bytes());
        h.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        let s = r + k * a;
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(big_r.as_bytes());
        sig[32..].copy_from_slice(s.as_bytes());
        sig
    }

    #[test]
    fn a_small_order_component_gets_the_same_verdict_alone_and_in_any_batch() {
        // What a client can make with its own key, and a Byzantine leader then order into
        // batches that differ from node to node. Every composition must agree with the single
        // check, or nodes would apply the same entry differently.
        let mallory = SigningKey::generate(&mut rand08::rngs::OsRng);
        let key = ClientKey::from_bytes(&mallory.verifying_key().to_bytes()).unwrap();
        let others: Vec<(SigningKey, Vec<u8>)> = (0..12u8)
            .map(|i| (SigningKey::generate(&mut rand08::rngs::OsRng), vec![i; 33]))
            .collect();
        let other_keys: Vec<ClientKey> = others
            .iter()
            .map(|(k, _)| ClientKey::from_bytes(&k.verifying_key().to_bytes()).unwrap())
            .collect();
        let other_sigs: Vec<[u8; 64]> = others.iter().map(|(k, m)| k.sign(m).to_bytes()).collect();
        let mut cofactorless_refused = 0;
        for t in 1..8 {
            let message = format!("attach root to mallory {t}").into_bytes();
            let sig = torsioned(&mallory, &message, t);
            if mallory
                .verifying_key()
                .verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&sig))
                .is_err()
            {
                cofactorless_refused += 1;
            }
            assert!(verify_one(&key, &message, &sig), "torsion {t}");
            // The same signature with one bit of s changed passes nowhere.
            let mut bad = sig;
            bad[40] ^= 1;
            assert!(!verify_one(&key, &message, &bad));
            for n in 1..others.len() {
                let mut batch = vec![Signed {
                    key: &key,
                    message: &message,
                    signature: &sig,
                }];
                for i in 0..n {
                    batch.push(Signed {
                        key: &other_keys[(i + t) % others.len()],
                        message: &others[(i + t) % others.len()].1,
                        signature: &other_sigs[(i + t) % others.len()],
                    });
                }
                assert!(verify_all(&batch), "torsion {t}, batch of {}", n + 1);
                batch[0].signature = &bad;
                assert!(!verify_all(&batch), "torsion {t}, batch of {}", n + 1);
            }
        }
        assert!(
            cofactorless_refused >= 6,
            "the crafted signatures have a small-order part"
        );
    }

    #[test]
    fn a_non_canonical_s_or_a_short_signature_fails() {
        let k = SigningKey::generate(&mut rand08::rngs::OsRng);
        let key = ClientKey::from_bytes(&k.verifying_key().to_bytes()).unwrap();
        let mut sig = k.sign(b"m").to_bytes();
        assert!(verify_one(&key, b"m", &sig));
        // s + l: the same value, not canonical.
        let s = Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()).unwrap();
        let l_bytes: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut sum = [0u8; 32];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s.as_bytes()[i]) + u16::from(l_bytes[i]) + carry;
            sum[i] = v as u8;
            carry = v >> 8;
        }
        sig[32..].copy_from_slice(&sum);
        assert!(!verify_one(&key, b"m", &sig));
        assert!(!verify_one(&key, b"m", &sig[..63]));
    }
}
