//! HPKE (RFC 9180) in base mode, for the one suite Tessera seals with: DHKEM(X25519,
//! HKDF-SHA256), HKDF-SHA256, and ChaCha20-Poly1305 (envelopes) or export-only (release replies).
//!
//! Why Tessera has its own: the key agreement sits on the hot path of every write (one envelope
//! per holder) and every read (one reply per holder). A general HPKE library works the sender's
//! ephemeral public key out twice per encapsulation and the recipient's public key again on
//! every decapsulation, and runs X25519 as a Montgomery ladder on 64-bit limbs. Here a
//! recipient's public key travels with its private key, the ephemeral key is derived once, and
//! the X25519 product is computed on the birationally equivalent Edwards curve, where
//! curve25519-dalek has vectorized, constant-time arithmetic: the same result (RFC 7748's
//! `u`-coordinate) for about 60% of the cost. The tests open this module's output with the
//! `hpke` crate and the other way round, so what travels is RFC 9180's format, byte for byte.
//!
//! Every intermediate secret (DH output, shared secret, key, nonce, exporter secret) is
//! zeroized on drop.

use chacha20poly1305::aead::{Aead as _, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use curve25519_dalek::montgomery::MontgomeryPoint;
use hkdf::{Hkdf, HkdfExtract};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::{invalid, CryptoError, SecretBytes};

/// DHKEM(X25519, HKDF-SHA256).
const KEM_ID: u16 = 0x0020;
/// HKDF-SHA256.
const KDF_ID: u16 = 0x0001;

/// The AEAD of a context: what its secrets are used for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AeadId {
    /// Seals and opens one message (a share envelope).
    ChaCha20Poly1305,
    /// Only exports keys (a release reply, whose items have keys of their own).
    ExportOnly,
}

impl AeadId {
    fn id(self) -> u16 {
        match self {
            AeadId::ChaCha20Poly1305 => 0x0003,
            AeadId::ExportOnly => 0xFFFF,
        }
    }
}

/// `"KEM" || I2OSP(kem_id, 2)`.
fn kem_suite() -> [u8; 5] {
    let id = KEM_ID.to_be_bytes();
    [b'K', b'E', b'M', id[0], id[1]]
}

/// `"HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2)`.
fn hpke_suite(aead: AeadId) -> [u8; 10] {
    let mut s = [0u8; 10];
    s[..4].copy_from_slice(b"HPKE");
    s[4..6].copy_from_slice(&KEM_ID.to_be_bytes());
    s[6..8].copy_from_slice(&KDF_ID.to_be_bytes());
    s[8..].copy_from_slice(&aead.id().to_be_bytes());
    s
}

/// `LabeledExtract(salt, label, ikm)`.
fn labeled_extract(suite: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut ex = HkdfExtract::<Sha256>::new(Some(salt));
    for part in [b"HPKE-v1".as_slice(), suite, label, ikm] {
        ex.input_ikm(part);
    }
    let (prk, _) = ex.finalize();
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&prk);
    out
}

/// `LabeledExpand(prk, label, info, L)` with `L = out.len()`.
fn labeled_expand(suite: &[u8], prk: &[u8; 32], label: &[u8], info: &[u8], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::from_prk(prk).expect("a 32-byte PRK is valid for HKDF-SHA256");
    let len = (out.len() as u16).to_be_bytes();
    hk.expand_multi_info(&[&len, b"HPKE-v1", suite, label, info], out)
        .expect("every output here is far below HKDF-SHA256's limit of 8160 bytes");
}

/// An X25519 public key from its private key: the scalar (clamped, as RFC 7748 says) times
/// the base point.
pub(crate) fn public_key(secret: &[u8; 32]) -> [u8; 32] {
    MontgomeryPoint::mul_base_clamped(*secret).to_bytes()
}

/// RFC 7748's X25519(k, u), refusing an all-zero result as RFC 9180's DH must.
///
/// Computed as `[k]P` on the Edwards curve for a point `P` with this `u`; either of the two such
/// points gives the same `u` back, so the sign is arbitrary. A `u` that is not on the curve
/// (it lies on the quadratic twist) is refused: no honestly generated X25519 key is one.
/// The secret scalar only meets constant-time code (the multiplication and the inversion in
/// the conversion back); the decompression works on the public input alone.
fn x25519(k: &[u8; 32], u: &[u8; 32]) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    let point = MontgomeryPoint(*u)
        .to_edwards(0)
        .ok_or_else(|| invalid("X25519 public key", "not a point of Curve25519"))?;
    let shared = Zeroizing::new(point.mul_clamped(*k).to_montgomery().to_bytes());
    if bool::from(shared.ct_eq(&[0u8; 32])) {
        return Err(invalid(
            "X25519 public key",
            "a point of small order (the shared secret would be zero)",
        ));
    }
    Ok(shared)
}

/// DHKEM's `ExtractAndExpand(dh, enc || pkRm)`.
fn shared_secret(dh: &[u8; 32], enc: &[u8; 32], pk_r: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    let suite = kem_suite();
    let eae_prk = labeled_extract(&suite, b"", b"eae_prk", &dh[..]);
    let mut kem_context = [0u8; 64];
    kem_context[..32].copy_from_slice(enc);
    kem_context[32..].copy_from_slice(pk_r);
    let mut ss = Zeroizing::new([0u8; 32]);
    labeled_expand(
        &suite,
        &eae_prk,
        b"shared_secret",
        &kem_context,
        &mut ss[..],
    );
    ss
}

/// `LabeledExtract("", "psk_id_hash", "")`: base mode has no PSK, so this depends on the suite
/// alone; worked out once per suite rather than on every seal and open.
fn psk_id_hash(aead: AeadId) -> [u8; 32] {
    static CHACHA: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    static EXPORT_ONLY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let cell = match aead {
        AeadId::ChaCha20Poly1305 => &CHACHA,
        AeadId::ExportOnly => &EXPORT_ONLY,
    };
    *cell.get_or_init(|| *labeled_extract(&hpke_suite(aead), b"", b"psk_id_hash", b""))
}

/// An HPKE context after the key schedule. Only sequence number 0 is ever used: an envelope
/// context seals or opens exactly one message, a release context only exports.
pub(crate) struct Context {
    aead: AeadId,
    key: Zeroizing<[u8; 32]>,
    base_nonce: Zeroizing<[u8; 12]>,
    exporter_secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "hpke::Context({:?}, <redacted>)", self.aead)
    }
}

impl Context {
    /// `KeySchedule(mode_base, shared_secret, info, psk = "", psk_id = "")`.
    fn schedule(aead: AeadId, shared_secret: &[u8; 32], info: &[u8]) -> Context {
        let suite = hpke_suite(aead);
        let psk_id_hash = psk_id_hash(aead);
        let info_hash = labeled_extract(&suite, b"", b"info_hash", info);
        let mut ksc = [0u8; 65];
        ksc[0] = 0x00; // mode_base
        ksc[1..33].copy_from_slice(&psk_id_hash[..]);
        ksc[33..].copy_from_slice(&info_hash[..]);
        let secret = labeled_extract(&suite, &shared_secret[..], b"secret", b"");
        let mut ctx = Context {
            aead,
            key: Zeroizing::new([0u8; 32]),
            base_nonce: Zeroizing::new([0u8; 12]),
            exporter_secret: Zeroizing::new([0u8; 32]),
        };
        if aead == AeadId::ChaCha20Poly1305 {
            labeled_expand(&suite, &secret, b"key", &ksc, &mut ctx.key[..]);
            labeled_expand(
                &suite,
                &secret,
                b"base_nonce",
                &ksc,
                &mut ctx.base_nonce[..],
            );
        }
        labeled_expand(&suite, &secret, b"exp", &ksc, &mut ctx.exporter_secret[..]);
        ctx
    }

    fn cipher(&self) -> Result<ChaCha20Poly1305, CryptoError> {
        match self.aead {
            AeadId::ChaCha20Poly1305 => Ok(ChaCha20Poly1305::new(Key::from_slice(&self.key[..]))),
            AeadId::ExportOnly => Err(invalid("HPKE", "an export-only context cannot seal")),
        }
    }

    /// `ContextS.Seal(aad, pt)` at sequence number 0 (the nonce is the base nonce).
    pub(crate) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.cipher()?
            .encrypt(
                Nonce::from_slice(&self.base_nonce[..]),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| invalid("HPKE", "sealing failed"))
    }

    /// `ContextR.Open(aad, ct)` at sequence number 0.
    pub(crate) fn open(&self, aad: &[u8], ciphertext: &[u8]) -> Result<SecretBytes, CryptoError> {
        self.cipher()
            .map_err(|_| CryptoError::Decrypt)?
            .decrypt(
                Nonce::from_slice(&self.base_nonce[..]),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map(SecretBytes::new)
            .map_err(|_| CryptoError::Decrypt)
    }

    /// `Context.Export(exporter_context, L)` with `L = out.len()`.
    pub(crate) fn export(&self, exporter_context: &[u8], out: &mut [u8]) {
        labeled_expand(
            &hpke_suite(self.aead),
            &self.exporter_secret,
            b"sec",
            exporter_context,
            out,
        );
    }
}

/// `SetupBaseS(pkR, info)`: a fresh ephemeral key, its public half (`enc`, sent along) and the
/// sender's context.
pub(crate) fn setup_sender(
    pk_r: &[u8; 32],
    info: &[u8],
    aead: AeadId,
) -> Result<([u8; 32], Context), CryptoError> {
    let mut sk_e = Zeroizing::new([0u8; 32]);
    rand08::RngCore::fill_bytes(&mut crate::rng(), &mut sk_e[..]);
    let enc = public_key(&sk_e);
    let dh = x25519(&sk_e, pk_r)?;
    let ss = shared_secret(&dh, &enc, pk_r);
    Ok((enc, Context::schedule(aead, &ss, info)))
}

/// `SetupBaseR(enc, skR, info)`, with the recipient's public key given (it is part of the KEM
/// context, and working it out from `sk_r` on every open costs a scalar multiplication).
pub(crate) fn setup_receiver(
    enc: &[u8; 32],
    sk_r: &[u8; 32],
    pk_r: &[u8; 32],
    info: &[u8],
    aead: AeadId,
) -> Result<Context, CryptoError> {
    let dh = x25519(sk_r, enc)?;
    let ss = shared_secret(&dh, enc, pk_r);
    Ok(Context::schedule(aead, &ss, info))
}

/// The recipient's Diffie–Hellman value for `enc` (`DH(skR, pkE)`): what a recipient discloses
/// to show anyone what one envelope holds (`seal::disclose`).
pub(crate) fn dh_value(
    enc: &[u8; 32],
    sk_r: &[u8; 32],
) -> Result<Zeroizing<[u8; 32]>, CryptoError> {
    x25519(sk_r, enc)
}

/// `SetupBaseR` from a disclosed Diffie–Hellman value instead of the private key.
pub(crate) fn setup_receiver_with_dh(
    dh: &[u8; 32],
    enc: &[u8; 32],
    pk_r: &[u8; 32],
    info: &[u8],
    aead: AeadId,
) -> Context {
    let ss = shared_secret(dh, enc, pk_r);
    Context::schedule(aead, &ss, info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::hpke::aead::{ChaCha20Poly1305 as HpkeChaCha, ExportOnlyAead};
    use ::hpke::kdf::HkdfSha256;
    use ::hpke::kem::X25519HkdfSha256;
    use ::hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
    use proptest::prelude::*;

    type Kem = X25519HkdfSha256;

    fn keypair() -> ([u8; 32], [u8; 32]) {
        let mut sk = [0u8; 32];
        rand08::RngCore::fill_bytes(&mut crate::rng(), &mut sk);
        (sk, public_key(&sk))
    }

    #[test]
    fn x25519_matches_the_montgomery_ladder() {
        for _ in 0..32 {
            let (a, _) = keypair();
            let (_, pk_b) = keypair();
            let ladder = MontgomeryPoint(pk_b).mul_clamped(a).to_bytes();
            assert_eq!(*x25519(&a, &pk_b).unwrap(), ladder);
        }
    }

    #[test]
    fn x25519_meets_rfc_7748_diffie_hellman_vector() {
        // RFC 7748, section 6.1.
        let key = |h: &str| -> [u8; 32] { hex::decode(h).unwrap().try_into().unwrap() };
        let alice = key("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let bob = key("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let alice_pk = public_key(&alice);
        let bob_pk = public_key(&bob);
        assert_eq!(
            hex::encode(alice_pk),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(
            hex::encode(bob_pk),
            "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"
        );
        let shared = "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742";
        assert_eq!(hex::encode(*x25519(&alice, &bob_pk).unwrap()), shared);
        assert_eq!(hex::encode(*x25519(&bob, &alice_pk).unwrap()), shared);
    }

    #[test]
    fn small_order_and_off_curve_keys_are_refused() {
        let (sk, _) = keypair();
        // u = 0 (order 2 on the Montgomery curve) and u = 1 (order 4): the result is zero.
        let mut one = [0u8; 32];
        one[0] = 1;
        for low in [[0u8; 32], one] {
            assert!(x25519(&sk, &low).is_err());
        }
        // u = 2 lies on the twist, not on Curve25519.
        let mut two = [0u8; 32];
        two[0] = 2;
        assert!(x25519(&sk, &two).is_err());
        assert!(setup_sender(&[0u8; 32], b"info", AeadId::ChaCha20Poly1305).is_err());
    }

    #[test]
    fn what_we_seal_the_hpke_crate_opens() {
        let (sk_r, pk_r) = keypair();
        let (enc, ctx) = setup_sender(&pk_r, b"info", AeadId::ChaCha20Poly1305).unwrap();
        let ct = ctx.seal(b"", b"a share").unwrap();
        let sk = <Kem as ::hpke::Kem>::PrivateKey::from_bytes(&sk_r).unwrap();
        let enc = <Kem as ::hpke::Kem>::EncappedKey::from_bytes(&enc).unwrap();
        let pt = ::hpke::single_shot_open::<HpkeChaCha, HkdfSha256, Kem>(
            &OpModeR::Base,
            &sk,
            &enc,
            b"info",
            &ct,
            b"",
        )
        .unwrap();
        assert_eq!(pt, b"a share");
    }

    #[test]
    fn what_the_hpke_crate_seals_we_open() {
        let (sk_r, pk_r) = keypair();
        let pk = <Kem as ::hpke::Kem>::PublicKey::from_bytes(&pk_r).unwrap();
        let (enc, ct) = ::hpke::single_shot_seal::<HpkeChaCha, HkdfSha256, Kem, _>(
            &OpModeS::Base,
            &pk,
            b"info",
            b"a share",
            b"",
            &mut crate::rng(),
        )
        .unwrap();
        let enc: [u8; 32] = enc.to_bytes().as_slice().try_into().unwrap();
        let ctx = setup_receiver(&enc, &sk_r, &pk_r, b"info", AeadId::ChaCha20Poly1305).unwrap();
        assert_eq!(ctx.open(b"", &ct).unwrap().expose(), b"a share");
        let other = setup_receiver(&enc, &sk_r, &pk_r, b"other", AeadId::ChaCha20Poly1305).unwrap();
        assert_eq!(other.open(b"", &ct), Err(CryptoError::Decrypt));
    }

    #[test]
    fn exported_secrets_match_the_hpke_crate_both_ways() {
        let (sk_r, pk_r) = keypair();
        let pk = <Kem as ::hpke::Kem>::PublicKey::from_bytes(&pk_r).unwrap();
        let sk = <Kem as ::hpke::Kem>::PrivateKey::from_bytes(&sk_r).unwrap();
        // Theirs to ours.
        let (enc, theirs) = ::hpke::setup_sender::<ExportOnlyAead, HkdfSha256, Kem, _>(
            &OpModeS::Base,
            &pk,
            b"reply",
            &mut crate::rng(),
        )
        .unwrap();
        let enc: [u8; 32] = enc.to_bytes().as_slice().try_into().unwrap();
        let ours = setup_receiver(&enc, &sk_r, &pk_r, b"reply", AeadId::ExportOnly).unwrap();
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        theirs.export(b"item 1", &mut a).unwrap();
        ours.export(b"item 1", &mut b);
        assert_eq!(a, b);
        // Ours to theirs.
        let (enc, ours) = setup_sender(&pk_r, b"reply", AeadId::ExportOnly).unwrap();
        let enc = <Kem as ::hpke::Kem>::EncappedKey::from_bytes(&enc).unwrap();
        let theirs = ::hpke::setup_receiver::<ExportOnlyAead, HkdfSha256, Kem>(
            &OpModeR::Base,
            &sk,
            &enc,
            b"reply",
        )
        .unwrap();
        theirs.export(b"item 2", &mut a).unwrap();
        ours.export(b"item 2", &mut b);
        assert_eq!(a, b);
        // An export-only context seals nothing.
        assert!(ours.seal(b"", b"x").is_err());
    }

    #[test]
    fn public_keys_match_the_hpke_crate() {
        let (sk, pk) = keypair();
        let theirs = Kem::sk_to_pk(&<Kem as ::hpke::Kem>::PrivateKey::from_bytes(&sk).unwrap());
        assert_eq!(theirs.to_bytes().as_slice(), &pk);
    }

    #[test]
    fn a_context_prints_no_secret() {
        let (_, pk_r) = keypair();
        let (_, ctx) = setup_sender(&pk_r, b"info", AeadId::ChaCha20Poly1305).unwrap();
        let shown = format!("{ctx:?}");
        assert!(shown.contains("redacted"));
        assert!(!shown.contains(&format!("{:?}", &ctx.key[..4])));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn any_message_round_trips_and_binds_its_aad(msg in proptest::collection::vec(any::<u8>(), 0..200)) {
            let (sk_r, pk_r) = keypair();
            let (enc, s) = setup_sender(&pk_r, b"i", AeadId::ChaCha20Poly1305).unwrap();
            let ct = s.seal(b"aad", &msg).unwrap();
            let r = setup_receiver(&enc, &sk_r, &pk_r, b"i", AeadId::ChaCha20Poly1305).unwrap();
            let opened = r.open(b"aad", &ct).unwrap();
            prop_assert_eq!(opened.expose(), &msg[..]);
            prop_assert!(r.open(b"other", &ct).is_err());
        }
    }
}
