//! Signed acknowledgements: a node states, with its Ed25519 key, that it holds a share of a
//! version that verified against the commitments. Other nodes check the signature against the
//! public key in the replicated membership, so a node cannot be acknowledged by someone else.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::merkle;
use crate::seal::ShareEnvelope;
use crate::vss::Commitments;
use crate::{invalid, CryptoError, SecretBytes};

/// SHA-256 over length-prefixed byte strings then big-endian numbers: an unambiguous digest of
/// a signed statement (no two different statements share an encoding).
pub fn statement_digest(parts: &[&[u8]], numbers: &[u64]) -> Vec<u8> {
    let mut h = Sha256::new();
    for part in parts {
        h.update((part.len() as u32).to_be_bytes());
        h.update(part);
    }
    for n in numbers {
        h.update(n.to_be_bytes());
    }
    h.finalize().to_vec()
}

/// What a holder signs when it has opened and verified its share of a write that is about to
/// be submitted (it counts towards the write's acknowledgements). It names the exact envelope:
/// the node that gathers receipts cannot pair one with a different envelope in the write it
/// submits. A separate statement from `ack_message`, which says "stored at rest" and retires the
/// holder's envelope: a receipt, public in the log, can never be replayed as that.
pub fn receipt_message(
    cluster_id: &str,
    path: &str,
    version: u64,
    node_id: u64,
    commitments: &Commitments,
    envelope: &ShareEnvelope,
) -> Vec<u8> {
    let points: Vec<u8> = commitments.0.concat();
    statement_digest(
        &[
            b"tessera/receipt/v2",
            cluster_id.as_bytes(),
            path.as_bytes(),
            &points,
            &envelope.enc,
            &envelope.ciphertext,
        ],
        &[version, node_id],
    )
}

/// What a holder signs for receipts it answers together: the Merkle root of their statements
/// (`receipt_message`s) and how many there are. A label of its own, so that it can pass for no
/// single receipt, acknowledgement or batch of acknowledgements.
fn receipts_message(cluster_id: &str, node_id: u64, root: &[u8; 32], count: u32) -> Vec<u8> {
    statement_digest(
        &[b"tessera/receipts/v1", cluster_id.as_bytes(), root],
        &[node_id, u64::from(count)],
    )
}

/// Bytes of a receipt that is a signature alone, and of the fixed part of a batched one
/// (signature, then place and count, big-endian; the proof's 32-byte hashes follow).
const SINGLE: usize = 64;
const BATCHED: usize = 64 + 4 + 4;

/// The message and signature a receipt for `statement` stands on. A receipt is either a
/// signature over the statement itself (64 bytes) or a signature over the root of a batch of
/// statements with this one's place in it and its Merkle proof (see `AckKey::sign_receipts`).
/// Refused when it is neither, or its proof does not fit its place; the signature itself is
/// for `verify_ack` to check.
pub fn receipt_signed(
    cluster_id: &str,
    node_id: u64,
    statement: &[u8],
    receipt: &[u8],
) -> Result<(Vec<u8>, [u8; 64]), CryptoError> {
    let malformed = || {
        invalid(
            "receipt",
            format!(
                "{} bytes: neither a signature nor a signature with a batch proof",
                receipt.len()
            ),
        )
    };
    if receipt.len() < SINGLE {
        return Err(malformed());
    }
    let (sig, rest) = receipt.split_at(SINGLE);
    let sig: [u8; 64] = sig.try_into().expect("64 bytes");
    if rest.is_empty() {
        return Ok((statement.to_vec(), sig));
    }
    if receipt.len() < BATCHED || !(receipt.len() - BATCHED).is_multiple_of(32) {
        return Err(malformed());
    }
    let index = u32::from_be_bytes(rest[0..4].try_into().expect("4 bytes"));
    let count = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes"));
    let proof: Vec<[u8; 32]> = rest[8..]
        .chunks_exact(32)
        .map(|c| c.try_into().expect("32 bytes"))
        .collect();
    let root = merkle::root_from_proof(statement, index, count, &proof).ok_or_else(|| {
        invalid(
            "receipt",
            format!("its proof does not fit place {index} of a batch of {count}"),
        )
    })?;
    Ok((receipts_message(cluster_id, node_id, &root, count), sig))
}

/// Checks node `node_id`'s receipt for `statement` (its `receipt_message`) under its key.
pub fn verify_receipt(
    public: &[u8; 32],
    cluster_id: &str,
    node_id: u64,
    statement: &[u8],
    receipt: &[u8],
) -> Result<(), CryptoError> {
    let (msg, sig) = receipt_signed(cluster_id, node_id, statement, receipt)?;
    verify_ack(public, &msg, &sig)
}

/// What an acknowledgement signs.
pub fn ack_message(
    cluster_id: &str,
    path: &str,
    version: u64,
    node_id: u64,
    commitments: &Commitments,
) -> Vec<u8> {
    share_statement(
        b"tessera/ack/v1",
        cluster_id,
        path,
        version,
        node_id,
        commitments,
    )
}

/// A holder's statement about its share of one version; the label says which statement.
fn share_statement(
    label: &[u8],
    cluster_id: &str,
    path: &str,
    version: u64,
    node_id: u64,
    commitments: &Commitments,
) -> Vec<u8> {
    let points: Vec<u8> = commitments.0.concat();
    statement_digest(
        &[label, cluster_id.as_bytes(), path.as_bytes(), &points],
        &[version, node_id],
    )
}

/// What a node signs for a batch of its acknowledgements and complaints: the list of their
/// statements (`ack_message`, `complaint_message`), in order. One signature per batch, not one
/// per version: every node checks it on apply, and batches under load hold dozens of versions.
pub fn batch_message(cluster_id: &str, node_id: u64, statements: &[&[u8]]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::with_capacity(statements.len() + 2);
    parts.push(b"tessera/acks/v1");
    parts.push(cluster_id.as_bytes());
    parts.extend_from_slice(statements);
    statement_digest(&parts, &[node_id, statements.len() as u64])
}

/// What a complaint (a share that did not verify) signs.
pub fn complaint_message(
    cluster_id: &str,
    path: &str,
    version: u64,
    node_id: u64,
    reason: &str,
    evidence: &[u8],
) -> Vec<u8> {
    statement_digest(
        &[
            b"tessera/complaint/v2",
            cluster_id.as_bytes(),
            path.as_bytes(),
            reason.as_bytes(),
            evidence,
        ],
        &[version, node_id],
    )
}

/// A node's acknowledgement signing key. Zeroized on drop, never printed.
pub struct AckKey(SigningKey);

impl std::fmt::Debug for AckKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AckKey(<redacted>)")
    }
}

impl AckKey {
    pub fn generate() -> Self {
        AckKey(SigningKey::generate(&mut crate::rng()))
    }

    pub fn from_secret_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let arr: Zeroizing<[u8; 32]> = Zeroizing::new(
            b.try_into()
                .map_err(|_| invalid("acknowledgement key", "expected 32 bytes"))?,
        );
        Ok(AckKey(SigningKey::from_bytes(&arr)))
    }

    pub fn secret_bytes(&self) -> SecretBytes {
        SecretBytes::new(self.0.to_bytes().to_vec())
    }

    pub fn public(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// Receipts for `statements` (this node's `receipt_message`s), in order, under one
    /// signature: every node verifies every receipt in the log, and one signature per batch
    /// is one verification per batch on each of them instead of one per write. A lone
    /// statement gets a plain signature. (Past the Merkle tree's limit, one signature per
    /// limit's worth.)
    pub fn sign_receipts(
        &self,
        cluster_id: &str,
        node_id: u64,
        statements: &[&[u8]],
    ) -> Vec<Vec<u8>> {
        statements
            .chunks(merkle::MAX_LEAVES as usize)
            .flat_map(|batch| self.sign_receipt_batch(cluster_id, node_id, batch))
            .collect()
    }

    fn sign_receipt_batch(
        &self,
        cluster_id: &str,
        node_id: u64,
        statements: &[&[u8]],
    ) -> Vec<Vec<u8>> {
        if let [one] = statements {
            return vec![self.sign(one).to_vec()];
        }
        let count = statements.len() as u32;
        let (root, proofs) = merkle::tree(statements);
        let sig = self.sign(&receipts_message(cluster_id, node_id, &root, count));
        proofs
            .into_iter()
            .enumerate()
            .map(|(index, proof)| {
                let mut r = Vec::with_capacity(BATCHED + 32 * proof.len());
                r.extend_from_slice(&sig);
                r.extend_from_slice(&(index as u32).to_be_bytes());
                r.extend_from_slice(&count.to_be_bytes());
                proof.iter().for_each(|h| r.extend_from_slice(h));
                r
            })
            .collect()
    }

    /// Signs `msg`. The signature is also filed as verified: a holder's own receipt comes back
    /// to it in the write it applies, and Ed25519 signatures made with this key verify under
    /// it, so checking it again would only spend a verification per write on every holder.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        let sig = self.0.sign(msg).to_bytes();
        remember(verified_digest(&self.public(), &sig, msg));
        sig
    }
}

/// Parsed acknowledgement keys. Parsing (point decompression) is about a quarter of a
/// verification, and the same few members' keys verify every acknowledgement in the log.
static PARSED_KEYS: std::sync::Mutex<Option<std::collections::HashMap<[u8; 32], VerifyingKey>>> =
    std::sync::Mutex::new(None);

fn verifying_key(public: &[u8; 32]) -> Result<VerifyingKey, CryptoError> {
    let mut cache = PARSED_KEYS.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(Default::default);
    if let Some(vk) = cache.get(public) {
        return Ok(*vk);
    }
    let vk = VerifyingKey::from_bytes(public)
        .map_err(|_| invalid("acknowledgement key", "not an Ed25519 public key"))?;
    // Members' keys only, so this stays small; a bound all the same.
    if cache.len() >= 1024 {
        cache.clear();
    }
    cache.insert(*public, vk);
    Ok(vk)
}

/// Signatures already verified (or made by this process), as SHA-256 of (key, signature,
/// message). The node that receives a write checks its receipts as it validates the write and
/// again as it applies it, and every holder meets its own receipt on apply: those checks are
/// then a lookup. Only successes are kept; bounded.
static VERIFIED: std::sync::Mutex<Option<std::collections::HashSet<[u8; 32]>>> =
    std::sync::Mutex::new(None);
const VERIFIED_MAX: usize = 8192;

fn verified_digest(public: &[u8; 32], sig: &[u8; 64], msg: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tessera/verified-ack/v1");
    h.update(public);
    h.update(sig);
    h.update(msg);
    h.finalize().into()
}

fn remember(seen: [u8; 32]) {
    let mut cache = VERIFIED.lock().unwrap_or_else(|e| e.into_inner());
    let cache = cache.get_or_insert_with(Default::default);
    if cache.len() >= VERIFIED_MAX {
        cache.clear();
    }
    cache.insert(seen);
}

pub fn verify_ack(public: &[u8; 32], msg: &[u8], sig: &[u8]) -> Result<(), CryptoError> {
    let sig: [u8; 64] = sig
        .try_into()
        .map_err(|_| invalid("acknowledgement", "signature is not 64 bytes"))?;
    let seen = verified_digest(public, &sig, msg);
    let verified = VERIFIED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .is_some_and(|c| c.contains(&seen));
    if verified {
        return Ok(());
    }
    let vk = verifying_key(public)?;
    vk.verify(msg, &Signature::from_bytes(&sig))
        .map_err(|_| invalid("acknowledgement", "bad signature"))?;
    remember(seen);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> ShareEnvelope {
        ShareEnvelope {
            enc: [9; 32],
            ciphertext: vec![7; 48],
        }
    }

    #[test]
    fn acks_verify_only_for_their_node_and_version() {
        let k = AckKey::generate();
        let c = Commitments(vec![[1; 32]]);
        let m = ack_message("c", "p", 1, 2, &c);
        let sig = k.sign(&m);
        verify_ack(&k.public(), &m, &sig).unwrap();
        assert!(verify_ack(&k.public(), &ack_message("c", "p", 2, 2, &c), &sig).is_err());
        assert!(verify_ack(&AckKey::generate().public(), &m, &sig).is_err());
    }

    #[test]
    fn a_signature_verified_before_still_vouches_only_for_its_key_and_message() {
        let k = AckKey::generate();
        let c = Commitments(vec![[1; 32]]);
        let m = ack_message("c", "cached", 1, 2, &c);
        let sig = k.sign(&m);
        verify_ack(&k.public(), &m, &sig).unwrap();
        verify_ack(&k.public(), &m, &sig).unwrap();
        let mut other = m.clone();
        *other.last_mut().unwrap() ^= 1;
        assert!(verify_ack(&k.public(), &other, &sig).is_err());
        assert!(verify_ack(&AckKey::generate().public(), &m, &sig).is_err());
        let mut bad = sig;
        bad[5] ^= 1;
        assert!(verify_ack(&k.public(), &m, &bad).is_err());
    }

    #[test]
    fn a_receipt_is_not_a_stored_at_rest_acknowledgement() {
        // The receipt sits in the Raft log for anyone to copy; it must not pass as the
        // acknowledgement that retires the holder's envelope.
        let k = AckKey::generate();
        let c = Commitments(vec![[1; 32]]);
        let env = envelope();
        let receipt = k.sign(&receipt_message("c", "p", 1, 2, &c, &env));
        verify_ack(
            &k.public(),
            &receipt_message("c", "p", 1, 2, &c, &env),
            &receipt,
        )
        .unwrap();
        assert!(verify_ack(&k.public(), &ack_message("c", "p", 1, 2, &c), &receipt).is_err());
    }

    #[test]
    fn a_batch_signature_covers_exactly_its_statements_in_order() {
        let k = AckKey::generate();
        let c = Commitments(vec![[1; 32]]);
        let a = ack_message("c", "p", 1, 2, &c);
        let b = complaint_message("c", "q", 3, 2, "does not verify", &[1; 32]);
        let sig = k.sign(&batch_message("c", 2, &[&a, &b]));
        verify_ack(&k.public(), &batch_message("c", 2, &[&a, &b]), &sig).unwrap();
        for other in [
            batch_message("c", 2, &[&b, &a]),
            batch_message("c", 2, &[&a]),
            batch_message("c", 3, &[&a, &b]),
            batch_message("d", 2, &[&a, &b]),
        ] {
            assert!(verify_ack(&k.public(), &other, &sig).is_err());
        }
        // Nor does it pass for any one statement signed alone.
        assert!(verify_ack(&k.public(), &a, &sig).is_err());
    }

    #[test]
    fn receipts_signed_together_each_verify_for_their_own_statement_only() {
        let k = AckKey::generate();
        let c = Commitments(vec![[1; 32]]);
        let env = envelope();
        let statements: Vec<Vec<u8>> = (1..=5)
            .map(|v| receipt_message("c", "p", v, 2, &c, &env))
            .collect();
        let refs: Vec<&[u8]> = statements.iter().map(|s| s.as_slice()).collect();
        let receipts = k.sign_receipts("c", 2, &refs);
        assert_eq!(receipts.len(), 5);
        let other = AckKey::generate();
        for (i, r) in receipts.iter().enumerate() {
            verify_receipt(&k.public(), "c", 2, &statements[i], r).unwrap();
            // Not for another write of the batch, another node, cluster or key.
            let j = (i + 1) % 5;
            assert!(verify_receipt(&k.public(), "c", 2, &statements[j], r).is_err());
            assert!(verify_receipt(&k.public(), "c", 3, &statements[i], r).is_err());
            assert!(verify_receipt(&k.public(), "d", 2, &statements[i], r).is_err());
            assert!(verify_receipt(&other.public(), "c", 2, &statements[i], r).is_err());
            // Nor with its place, count or proof changed.
            for byte in [64 + 3, 64 + 7, r.len() - 1] {
                let mut bad = r.clone();
                bad[byte] ^= 1;
                assert!(verify_receipt(&k.public(), "c", 2, &statements[i], &bad).is_err());
            }
        }
        // The batch signature vouches for none of the statements alone.
        let bare = &receipts[0][..64];
        for s in &statements {
            assert!(verify_receipt(&k.public(), "c", 2, s, bare).is_err());
        }
        // A lone statement gets a plain signature, as a receipt always was; none, none.
        let one = k.sign_receipts("c", 2, &refs[..1]);
        assert_eq!(one[0].len(), 64);
        verify_receipt(&k.public(), "c", 2, &statements[0], &one[0]).unwrap();
        assert!(k.sign_receipts("c", 2, &[]).is_empty());
    }

    #[test]
    fn a_receipt_of_the_wrong_shape_is_refused_with_its_length() {
        let k = AckKey::generate();
        let s = receipt_message("c", "p", 1, 2, &Commitments(vec![[1; 32]]), &envelope());
        for len in [0, 63, 65, 71, 73, 72 + 31] {
            let e = verify_receipt(&k.public(), "c", 2, &s, &vec![0; len]).unwrap_err();
            assert!(e.to_string().contains(&format!("{len} bytes")), "{e}");
        }
    }

    #[test]
    fn a_receipt_names_the_envelope_it_was_given() {
        // A receipt gathered for one envelope must not vouch for a different one put in its
        // place in the submitted write.
        let k = AckKey::generate();
        let c = Commitments(vec![[1; 32]]);
        let env = envelope();
        let receipt = k.sign(&receipt_message("c", "p", 1, 2, &c, &env));
        let mut other = env.clone();
        other.ciphertext[0] ^= 1;
        let msg = receipt_message("c", "p", 1, 2, &c, &other);
        assert!(verify_ack(&k.public(), &msg, &receipt).is_err());
        other = env.clone();
        other.enc[0] ^= 1;
        let msg = receipt_message("c", "p", 1, 2, &c, &other);
        assert!(verify_ack(&k.public(), &msg, &receipt).is_err());
    }
}
