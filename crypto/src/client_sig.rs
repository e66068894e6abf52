//! Clients' Ed25519 signatures on the commands they submit, as every node checks them: one at a
//! time, or all the commands of one Raft entry at once.
//!
//! # Security
//!
//! Every node must reach the same verdict on every signature, or their replicated states part.
//! A single check and a batch check of Ed25519 can disagree on crafted signatures (a batch
//! checks the cofactored equation `[8]([s]B - R - [k]A) = 0`, the usual single check the
//! cofactorless one), so this module has one rule for both: the cofactored equation, which
//! ed25519-dalek's batch verification applies (a batch of one for a single signature). A batch
//! passes exactly when each of its signatures would pass alone (but for a negligible chance,
//! from its random weights); when it fails, the caller checks each alone.

use ed25519_dalek::{Signature, VerifyingKey};

/// One signature to check.
#[derive(Clone, Copy)]
pub struct Signed<'a> {
    pub key: &'a [u8; 32],
    pub message: &'a [u8],
    pub signature: &'a [u8],
}

/// Whether every signature verifies under the rule above. An unreadable key or signature fails.
pub fn verify_all(items: &[Signed<'_>]) -> bool {
    let mut keys = Vec::with_capacity(items.len());
    let mut signatures = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    for it in items {
        let (Ok(key), Ok(signature)) = (
            VerifyingKey::from_bytes(it.key),
            Signature::from_slice(it.signature),
        ) else {
            return false;
        };
        keys.push(key);
        signatures.push(signature);
        messages.push(it.message);
    }
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

/// Whether one signature verifies under the same rule.
pub fn verify_one(key: &[u8; 32], message: &[u8], signature: &[u8]) -> bool {
    verify_all(&[Signed {
        key,
        message,
        signature,
    }])
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
        let publics: Vec<[u8; 32]> = keys.iter().map(|k| k.verifying_key().to_bytes()).collect();
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
}
