//! Sealing a node's secrets at rest (its shares, its private keys) under its key-encryption key
//! (KEK), with AES-256-GCM. The label (what and where the item is) is associated data, so a
//! sealed item copied to another slot does not open.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand08::RngCore;
use zeroize::Zeroizing;

use crate::{invalid, CryptoError, SecretBytes};

/// The key-encryption key. Comes from a `KeyProvider` (a 0600 file today).
pub struct Kek(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(<redacted>)")
    }
}

impl Kek {
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        crate::rng().fill_bytes(&mut k[..]);
        Kek(k)
    }

    pub fn from_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = b.try_into().map_err(|_| {
            invalid(
                "key-encryption key",
                format!("{} bytes, expected 32", b.len()),
            )
        })?;
        Ok(Kek(Zeroizing::new(arr)))
    }

    pub fn to_bytes(&self) -> SecretBytes {
        SecretBytes::new(self.0.to_vec())
    }

    /// `nonce || ciphertext`.
    pub fn seal(&self, label: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new_from_slice(&self.0[..]).expect("32-byte key");
        let mut nonce = [0u8; 12];
        crate::rng().fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: label,
                },
            )
            .expect("AES-GCM encryption cannot fail for in-range inputs");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, label: &[u8], sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        if sealed.len() < 12 + 16 {
            return Err(invalid("sealed item", "too short"));
        }
        let cipher = Aes256Gcm::new_from_slice(&self.0[..]).expect("32-byte key");
        cipher
            .decrypt(
                Nonce::from_slice(&sealed[..12]),
                Payload {
                    msg: &sealed[12..],
                    aad: label,
                },
            )
            .map(SecretBytes::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_items_open_only_with_their_kek_and_label() {
        let kek = Kek::generate();
        let sealed = kek.seal(b"share/prod/db/1", b"abc");
        assert_eq!(
            kek.open(b"share/prod/db/1", &sealed).unwrap().expose(),
            b"abc"
        );
        assert!(kek.open(b"share/prod/db/2", &sealed).is_err());
        assert!(Kek::generate().open(b"share/prod/db/1", &sealed).is_err());
        assert!(!sealed.windows(3).any(|w| w == b"abc"));
    }
}
