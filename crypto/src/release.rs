//! Releasing shares to a reader: every share a holder releases in one reply travels sealed to
//! the reader's one-time X25519 key, under one HPKE (RFC 9180, base mode) context per reply.
//!
//! Why one context for several shares: a busy reader has many reads under way and sends them to
//! each holder together. One key agreement per reply, instead of one per share, is what makes
//! that cheap, and it changes nothing about who can open a share: only the holder of the
//! reader's one-time private key can derive the context's secrets.
//!
//! Each item is sealed under its own key, exported from the context with a label that binds its
//! position in the reply, its path and its version (AES-256-GCM; each key seals one message, so
//! a fixed nonce is safe). Items are independent: a reader opens any of them without the others,
//! a share cannot be moved to another item, path or version of the reply, and a share from one
//! reply means nothing in another. The context's `info` binds the cluster, the releasing node
//! and the purpose, so it shares nothing with the envelopes a dealer seals to a node.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::hpke::{self, AeadId};
use crate::seal::{SealingKey, SealingPublicKey};
use crate::{invalid, CryptoError, SecretBytes};

/// What a whole reply is bound to: the cluster and the node that released.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    pub cluster_id: &'a str,
    pub node_id: u64,
}

impl Reply<'_> {
    fn info(&self) -> Vec<u8> {
        let mut info = Vec::new();
        for part in [b"tessera/release/v1".as_slice(), self.cluster_id.as_bytes()] {
            info.extend_from_slice(&(part.len() as u32).to_be_bytes());
            info.extend_from_slice(part);
        }
        info.extend_from_slice(&self.node_id.to_be_bytes());
        info
    }
}

/// What one released share is bound to within its reply.
#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    /// The item's position in the request (and the reply).
    pub position: u32,
    pub path: &'a str,
    pub version: u64,
}

impl Item<'_> {
    fn label(&self) -> Vec<u8> {
        let mut label = Vec::with_capacity(32 + self.path.len());
        label.extend_from_slice(b"tessera/release/item/v1");
        label.extend_from_slice(&self.position.to_be_bytes());
        label.extend_from_slice(&self.version.to_be_bytes());
        label.extend_from_slice(&(self.path.len() as u32).to_be_bytes());
        label.extend_from_slice(self.path.as_bytes());
        label
    }
}

/// An item's one-use key, derived from the context's exporter secret.
fn item_cipher(ctx: &hpke::Context, item: &Item) -> Aes256Gcm {
    let mut key = Zeroizing::new([0u8; 32]);
    ctx.export(&item.label(), &mut key[..]);
    Aes256Gcm::new_from_slice(&key[..]).expect("AES-256-GCM takes a 32-byte key")
}

/// Each item key seals exactly one message.
const NONCE: [u8; 12] = [0; 12];

/// The holder's side: seals the shares of one reply. Holds the context's secrets (zeroized by
/// the HPKE context on drop); never printed.
pub struct Sealer {
    enc: [u8; 32],
    ctx: hpke::Context,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("release::Sealer(<redacted>)")
    }
}

impl Sealer {
    /// Sets up a context to the reader's one-time key (one key agreement).
    pub fn new(reader: &SealingPublicKey, reply: &Reply) -> Result<Sealer, CryptoError> {
        let (enc, ctx) = hpke::setup_sender(&reader.0, &reply.info(), AeadId::ExportOnly).map_err(
            |e| match e {
                CryptoError::Invalid { why, .. } => invalid("reader key", why),
                other => other,
            },
        )?;
        Ok(Sealer { enc, ctx })
    }

    /// The encapsulated key the reader needs to open this reply. Public.
    pub fn enc(&self) -> [u8; 32] {
        self.enc
    }

    /// Seals one item's plaintext (a share) under that item's own key.
    pub fn seal(&self, item: &Item, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        item_cipher(&self.ctx, item)
            .encrypt(Nonce::from_slice(&NONCE), plaintext)
            .map_err(|_| invalid("release", "sealing failed"))
    }
}

/// The reader's side: opens the shares of one reply with its one-time key.
pub struct Opener {
    ctx: hpke::Context,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("release::Opener(<redacted>)")
    }
}

impl Opener {
    /// Sets up the reply's context (one key agreement). Fails if `enc` is not a point.
    pub fn new(reader: &SealingKey, reply: &Reply, enc: &[u8]) -> Result<Opener, CryptoError> {
        let enc: &[u8; 32] = enc.try_into().map_err(|_| {
            invalid(
                "release",
                format!("the encapsulated key is {} bytes, expected 32", enc.len()),
            )
        })?;
        let ctx = reader
            .receiver(enc, &reply.info(), AeadId::ExportOnly)
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(Opener { ctx })
    }

    /// Opens one item; fails unless it was sealed for exactly this item of this reply.
    pub fn open(&self, item: &Item, sealed: &[u8]) -> Result<SecretBytes, CryptoError> {
        item_cipher(&self.ctx, item)
            .decrypt(Nonce::from_slice(&NONCE), sealed)
            .map(SecretBytes::new)
            .map_err(|_| CryptoError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const REPLY: Reply = Reply {
        cluster_id: "c1",
        node_id: 2,
    };

    fn item(position: u32, path: &str, version: u64) -> Item<'_> {
        Item {
            position,
            path,
            version,
        }
    }

    #[test]
    fn every_item_opens_on_its_own_with_the_right_key() {
        let reader = SealingKey::generate();
        let s = Sealer::new(&reader.public(), &REPLY).unwrap();
        let a = s.seal(&item(0, "prod/a", 3), b"share a").unwrap();
        let b = s.seal(&item(1, "prod/b", 1), b"share b").unwrap();
        let o = Opener::new(&reader, &REPLY, &s.enc()).unwrap();
        // Out of order: items do not depend on each other.
        assert_eq!(
            o.open(&item(1, "prod/b", 1), &b).unwrap().expose(),
            b"share b"
        );
        assert_eq!(
            o.open(&item(0, "prod/a", 3), &a).unwrap().expose(),
            b"share a"
        );
        assert!(!format!("{s:?}{o:?}").contains("share"));
    }

    #[test]
    fn an_item_opens_nowhere_else() {
        let reader = SealingKey::generate();
        let s = Sealer::new(&reader.public(), &REPLY).unwrap();
        let sealed = s.seal(&item(0, "prod/a", 3), b"share a").unwrap();
        let o = Opener::new(&reader, &REPLY, &s.enc()).unwrap();
        // Another position, path or version of the same reply.
        for wrong in [
            item(1, "prod/a", 3),
            item(0, "prod/b", 3),
            item(0, "prod/a", 4),
        ] {
            assert_eq!(
                o.open(&wrong, &sealed),
                Err(CryptoError::Decrypt),
                "{wrong:?}"
            );
        }
        // Another reader, cluster or releasing node.
        let other = SealingKey::generate();
        let o2 = Opener::new(&other, &REPLY, &s.enc()).unwrap();
        assert!(o2.open(&item(0, "prod/a", 3), &sealed).is_err());
        for reply in [
            Reply {
                cluster_id: "c2",
                ..REPLY
            },
            Reply {
                node_id: 3,
                ..REPLY
            },
        ] {
            let o3 = Opener::new(&reader, &reply, &s.enc()).unwrap();
            assert!(o3.open(&item(0, "prod/a", 3), &sealed).is_err());
        }
        // Another reply to the same reader.
        let s2 = Sealer::new(&reader.public(), &REPLY).unwrap();
        let o4 = Opener::new(&reader, &REPLY, &s2.enc()).unwrap();
        assert!(o4.open(&item(0, "prod/a", 3), &sealed).is_err());
    }

    #[test]
    fn a_malformed_encapsulated_key_is_refused() {
        let reader = SealingKey::generate();
        assert!(Opener::new(&reader, &REPLY, &[1u8; 31]).is_err());
        // 32 bytes, but on the twist rather than the curve; and a point of small order.
        let mut twist = [0u8; 32];
        twist[0] = 2;
        assert!(Opener::new(&reader, &REPLY, &twist).is_err());
        assert!(Opener::new(&reader, &REPLY, &[0u8; 32]).is_err());
        assert!(Sealer::new(&SealingPublicKey([0u8; 32]), &REPLY).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn a_flipped_bit_never_opens(pos in 0usize..50, bit in 0u8..8) {
            let reader = SealingKey::generate();
            let s = Sealer::new(&reader.public(), &REPLY).unwrap();
            let mut sealed = s.seal(&item(0, "a", 1), &[7u8; 34]).unwrap();
            let p = pos % sealed.len();
            sealed[p] ^= 1 << bit;
            let o = Opener::new(&reader, &REPLY, &s.enc()).unwrap();
            prop_assert!(o.open(&item(0, "a", 1), &sealed).is_err());
        }
    }
}
