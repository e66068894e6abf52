//! Sealing to one node: HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305.
//!
//! The `info` binds the cluster, the secret's path and version, the recipient node and the
//! purpose, so an envelope cannot be replayed for another secret, version, node or use, and only
//! the holder of the recipient's private key can open it.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::hpke::{self, AeadId};
use crate::{invalid, CryptoError, SecretBytes};

/// Why an envelope was made. Part of the HPKE context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// A client dealing a share to a holder on write.
    Deal,
    /// A holder releasing its share to a reader's ephemeral key.
    Release,
    /// A DKG participant sealing its round-2 package to another participant. Distinct from
    /// `Deal`, so that a round-2 envelope can never be taken for a KV share of the same name,
    /// version and node (or the other way round).
    DkgRound2,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Purpose::Deal => b"deal",
            Purpose::Release => b"release",
            Purpose::DkgRound2 => b"dkg-round2",
        }
    }
}

/// Everything an envelope is bound to.
#[derive(Clone, Debug)]
pub struct Context<'a> {
    pub cluster_id: &'a str,
    pub path: &'a str,
    pub version: u64,
    pub node_id: u64,
    pub purpose: Purpose,
}

impl Context<'_> {
    fn info(&self) -> Vec<u8> {
        let mut info = Vec::new();
        for part in [
            b"tessera/seal/v1".as_slice(),
            self.purpose.label(),
            self.cluster_id.as_bytes(),
            self.path.as_bytes(),
        ] {
            info.extend_from_slice(&(part.len() as u32).to_be_bytes());
            info.extend_from_slice(part);
        }
        info.extend_from_slice(&self.version.to_be_bytes());
        info.extend_from_slice(&self.node_id.to_be_bytes());
        info
    }
}

/// An X25519 public key a node (or a reader, for one read) receives envelopes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub struct SealingPublicKey(#[serde(with = "crate::b64::array")] pub [u8; 32]);

impl SealingPublicKey {
    pub fn from_slice(b: &[u8]) -> Result<Self, CryptoError> {
        let arr: [u8; 32] = b.try_into().map_err(|_| {
            invalid(
                "sealing public key",
                format!("{} bytes, expected 32", b.len()),
            )
        })?;
        Ok(Self(arr))
    }
}

/// The private half. Zeroized on drop, never printed.
pub struct SealingKey {
    secret: Zeroizing<[u8; 32]>,
    public: SealingPublicKey,
}

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SealingKey {{ public: {:02x?}, secret: <redacted> }}",
            &self.public.0[..4]
        )
    }
}

impl SealingKey {
    pub fn generate() -> Self {
        let mut secret = Zeroizing::new([0u8; 32]);
        rand08::RngCore::fill_bytes(&mut crate::rng(), &mut secret[..]);
        let public = SealingPublicKey(hpke::public_key(&secret));
        Self { secret, public }
    }

    pub fn from_secret_bytes(b: &[u8]) -> Result<Self, CryptoError> {
        if b.len() != 32 {
            return Err(invalid(
                "sealing key",
                format!("{} bytes, expected a 32-byte X25519 private key", b.len()),
            ));
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(b);
        let public = SealingPublicKey(hpke::public_key(&secret));
        Ok(Self { secret, public })
    }

    /// Sets up the receiving HPKE context of a message sealed to this key.
    pub(crate) fn receiver(
        &self,
        enc: &[u8; 32],
        info: &[u8],
        aead: AeadId,
    ) -> Result<hpke::Context, CryptoError> {
        hpke::setup_receiver(enc, &self.secret, &self.public.0, info, aead)
    }

    pub fn secret_bytes(&self) -> SecretBytes {
        SecretBytes::new(self.secret.to_vec())
    }

    pub fn public(&self) -> SealingPublicKey {
        self.public
    }
}

/// A share (or a DKG package) sealed to one node: the HPKE encapsulated key and the
/// ciphertext. Public; only that node can open it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareEnvelope {
    #[serde(with = "crate::b64::array")]
    pub enc: [u8; 32],
    #[serde(with = "crate::b64::bytes")]
    pub ciphertext: Vec<u8>,
}

impl ShareEnvelope {
    /// Structural check, for refusing malformed requests early.
    pub fn check(&self, max_plaintext: usize) -> Result<(), CryptoError> {
        if self.ciphertext.len() < 16 || self.ciphertext.len() > max_plaintext + 16 {
            return Err(invalid(
                "envelope",
                format!("ciphertext of {} bytes", self.ciphertext.len()),
            ));
        }
        Ok(())
    }
}

pub fn seal(
    to: &SealingPublicKey,
    ctx: &Context,
    plaintext: &[u8],
) -> Result<ShareEnvelope, CryptoError> {
    let (enc, sender) = hpke::setup_sender(&to.0, &ctx.info(), AeadId::ChaCha20Poly1305)?;
    let ciphertext = sender.seal(b"", plaintext)?;
    Ok(ShareEnvelope { enc, ciphertext })
}

/// Opens an envelope sealed to `key` for exactly this context. Any failure (a wrong key or
/// context, a changed byte, an encapsulated key that is not a usable point) is `Decrypt`.
pub fn open(
    key: &SealingKey,
    ctx: &Context,
    env: &ShareEnvelope,
) -> Result<SecretBytes, CryptoError> {
    key.receiver(&env.enc, &ctx.info(), AeadId::ChaCha20Poly1305)
        .map_err(|_| CryptoError::Decrypt)?
        .open(b"", &env.ciphertext)
}

/// The evidence a recipient gives of what one envelope holds: its Diffie–Hellman value for the
/// envelope's encapsulated key. Anyone can then open that envelope, and only it
/// ([`open_disclosed`]).
///
/// # Security
///
/// It opens exactly one envelope (each has its own ephemeral key), and the recipient's private
/// key stays secret. A recipient could disclose a made-up value, but then nothing opens: the
/// AEAD tag fails, and a key derived through HKDF from a chosen value cannot be steered to make
/// the honest ciphertext open to anything else. Disclosing a good share gives it away; a
/// recipient only discloses one that fails its check.
pub fn disclose(key: &SealingKey, env: &ShareEnvelope) -> Result<[u8; 32], CryptoError> {
    Ok(*hpke::dh_value(&env.enc, &key.secret)?)
}

/// Opens an envelope sealed to `to` with the Diffie–Hellman value its recipient disclosed
/// ([`disclose`]). `Decrypt` if the value is not the recipient's or anything was changed.
pub fn open_disclosed(
    to: &SealingPublicKey,
    ctx: &Context,
    env: &ShareEnvelope,
    dh: &[u8; 32],
) -> Result<SecretBytes, CryptoError> {
    hpke::setup_receiver_with_dh(dh, &env.enc, &to.0, &ctx.info(), AeadId::ChaCha20Poly1305)
        .open(b"", &env.ciphertext)
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_disclosed_value_opens_that_envelope_and_a_made_up_one_nothing() {
        let k = SealingKey::generate();
        let c = ctx("p", 1, 2, Purpose::Deal);
        let env = seal(&k.public(), &c, b"share").unwrap();
        let other = seal(&k.public(), &c, b"other").unwrap();
        let dh = disclose(&k, &env).unwrap();
        assert_eq!(
            open_disclosed(&k.public(), &c, &env, &dh).unwrap().expose(),
            b"share"
        );
        // Not another envelope to the same key, nor another context, nor a made-up value.
        assert!(open_disclosed(&k.public(), &c, &other, &dh).is_err());
        let c2 = ctx("p", 2, 2, Purpose::Deal);
        assert!(open_disclosed(&k.public(), &c2, &env, &dh).is_err());
        assert!(open_disclosed(&k.public(), &c, &env, &[7u8; 32]).is_err());
    }

    fn ctx(path: &str, version: u64, node_id: u64, purpose: Purpose) -> Context<'_> {
        Context {
            cluster_id: "c1",
            path,
            version,
            node_id,
            purpose,
        }
    }

    #[test]
    fn opens_only_with_the_right_key_and_context() {
        let k = SealingKey::generate();
        let other = SealingKey::generate();
        let c = ctx("prod/db", 2, 3, Purpose::Deal);
        let env = seal(&k.public(), &c, b"share bytes").unwrap();
        assert_eq!(open(&k, &c, &env).unwrap().expose(), b"share bytes");
        assert_eq!(open(&other, &c, &env), Err(CryptoError::Decrypt));
        for wrong in [
            ctx("prod/dc", 2, 3, Purpose::Deal),
            ctx("prod/db", 3, 3, Purpose::Deal),
            ctx("prod/db", 2, 4, Purpose::Deal),
            ctx("prod/db", 2, 3, Purpose::Release),
            ctx("prod/db", 2, 3, Purpose::DkgRound2),
            Context {
                cluster_id: "c2",
                ..c.clone()
            },
        ] {
            assert_eq!(
                open(&k, &wrong, &env),
                Err(CryptoError::Decrypt),
                "{wrong:?}"
            );
        }
        assert!(!format!("{k:?}").contains(&format!("{:?}", &k.secret_bytes().expose()[..8])));
    }

    #[test]
    fn private_key_round_trips() {
        let k = SealingKey::generate();
        let k2 = SealingKey::from_secret_bytes(k.secret_bytes().expose()).unwrap();
        assert_eq!(k.public(), k2.public());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn a_flipped_bit_never_opens(pos in 0usize..48, bit in 0u8..8) {
            let k = SealingKey::generate();
            let c = ctx("a", 1, 1, Purpose::Release);
            let mut env = seal(&k.public(), &c, &[7u8; 32]).unwrap();
            let p = pos % env.ciphertext.len();
            env.ciphertext[p] ^= 1 << bit;
            prop_assert!(open(&k, &c, &env).is_err());
        }
    }
}
