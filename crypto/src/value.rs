//! Encrypting a secret value under its data key. The path and version are associated data, so a
//! ciphertext moved to another path or version does not decrypt.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand08::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{invalid, CryptoError, SecretBytes};

/// The 256-bit key a value is encrypted with. Derived from the shared scalar, never stored.
pub struct DataKey(pub(crate) Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// What a value ciphertext is bound to.
pub fn value_aad(cluster_id: &str, path: &str, version: u64) -> Vec<u8> {
    let mut aad = Vec::new();
    for part in [
        b"tessera/value/v1".as_slice(),
        cluster_id.as_bytes(),
        path.as_bytes(),
    ] {
        aad.extend_from_slice(&(part.len() as u32).to_be_bytes());
        aad.extend_from_slice(part);
    }
    aad.extend_from_slice(&version.to_be_bytes());
    aad
}

/// A value ciphertext: public, safe to replicate (its key exists only as shares).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueCiphertext {
    #[serde(with = "crate::b64::array")]
    pub nonce: [u8; 12],
    #[serde(with = "crate::b64::bytes")]
    pub ciphertext: Vec<u8>,
}

pub fn encrypt(key: &DataKey, aad: &[u8], plaintext: &[u8]) -> ValueCiphertext {
    let cipher = Aes256Gcm::new_from_slice(&key.0[..]).expect("32-byte key");
    let mut nonce = [0u8; 12];
    crate::rng().fill_bytes(&mut nonce);
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption cannot fail for in-range inputs");
    ValueCiphertext { nonce, ciphertext }
}

pub fn decrypt(
    key: &DataKey,
    aad: &[u8],
    ct: &ValueCiphertext,
) -> Result<SecretBytes, CryptoError> {
    if ct.ciphertext.len() < 16 {
        return Err(invalid("ciphertext", "shorter than its tag"));
    }
    let cipher = Aes256Gcm::new_from_slice(&key.0[..]).expect("32-byte key");
    cipher
        .decrypt(
            Nonce::from_slice(&ct.nonce),
            Payload {
                msg: &ct.ciphertext,
                aad,
            },
        )
        .map(SecretBytes::new)
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> DataKey {
        DataKey(Zeroizing::new([b; 32]))
    }

    #[test]
    fn round_trip_and_binding() {
        let aad = value_aad("c", "prod/db", 3);
        let ct = encrypt(&key(1), &aad, b"s3cret");
        assert_eq!(decrypt(&key(1), &aad, &ct).unwrap().expose(), b"s3cret");
        assert_eq!(decrypt(&key(2), &aad, &ct), Err(CryptoError::Decrypt));
        let other = value_aad("c", "prod/db", 4);
        assert_eq!(decrypt(&key(1), &other, &ct), Err(CryptoError::Decrypt));
        assert!(!format!("{:?}", key(7)).contains('7'));
    }
}
