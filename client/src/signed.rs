//! Signing the requests that change the replicated state.
//!
//! # Security
//!
//! Raft tolerates crashes, not lies: a compromised node (even the leader) could append any
//! command it likes. So every request that changes authorization or data carries this client's
//! signature, made with the key of its client certificate, over the request's exact bytes, the
//! cluster id, the method, a random id and an expiry ([`tessera_proto::call_statement`]). Every
//! node checks the signature, the certificate and the signer's authorization again when it
//! applies the command, and applies nothing it cannot verify; the id makes a replay useless.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use tessera_proto::{call_statement, CallSignature, SignedMethod, CALL_SIGNATURE_METADATA_KEY};
use tonic::metadata::MetadataValue;

use crate::error::Error;

/// How long a signed request stays valid: long enough for a write that waits for a leader
/// election, short enough that every node remembers its id until then.
const LIFETIME: Duration = Duration::from_secs(60);

/// The client's signing key (its certificate's key), ready to sign. Never printed.
pub(crate) struct CallSigner {
    key: SigningKey,
    rng: SystemRandom,
}

/// The kinds of client key: Ed25519 (what `tessera operator client-cert` makes) or ECDSA P-256.
enum SigningKey {
    Ed25519(Ed25519KeyPair),
    EcdsaP256(EcdsaKeyPair),
}

impl std::fmt::Debug for CallSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CallSigner(<private key>)")
    }
}

impl CallSigner {
    /// The signer for a client key in PEM (PKCS#8, Ed25519 as `tessera operator client-cert`
    /// makes it, or ECDSA P-256).
    pub(crate) fn from_pem(pem: &[u8]) -> Result<CallSigner, Error> {
        let der = pkcs8_der(pem)?;
        let rng = SystemRandom::new();
        let key = if let Ok(k) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der) {
            SigningKey::Ed25519(k)
        } else if let Ok(k) = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &der, &rng)
        {
            SigningKey::EcdsaP256(k)
        } else {
            return Err(Error::Config(
                "the client key is neither Ed25519 nor ECDSA P-256 in PKCS#8; it is needed to sign requests that change the cluster".into(),
            ));
        };
        Ok(CallSigner { key, rng })
    }

    /// `msg` as a request for `method`, with this client's signature in its metadata.
    pub(crate) fn sign<T: Message>(
        &self,
        cluster_id: &str,
        method: SignedMethod,
        msg: T,
    ) -> Result<tonic::Request<T>, Error> {
        let mut id = [0u8; 16];
        self.rng.fill(&mut id).map_err(|_| Error::Unexpected {
            code: "internal".into(),
            reason: "the system random generator failed".into(),
        })?;
        let expires = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(LIFETIME)
            .as_secs();
        let body = msg.encode_to_vec();
        let statement = call_statement(cluster_id, method, &id, expires, &body);
        let signature = match &self.key {
            SigningKey::Ed25519(k) => k.sign(&statement).as_ref().to_vec(),
            SigningKey::EcdsaP256(k) => k
                .sign(&self.rng, &statement)
                .map_err(|_| Error::Unexpected {
                    code: "internal".into(),
                    reason: "signing the request failed".into(),
                })?
                .as_ref()
                .to_vec(),
        };
        let sig = CallSignature {
            id: id.to_vec(),
            expires,
            signature,
        };
        let mut req = tonic::Request::new(msg);
        req.metadata_mut().insert_bin(
            CALL_SIGNATURE_METADATA_KEY,
            MetadataValue::from_bytes(&sig.encode_to_vec()),
        );
        Ok(req)
    }
}

/// The DER inside a `PRIVATE KEY` PEM block.
fn pkcs8_der(pem: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
    use base64::Engine;
    let text = std::str::from_utf8(pem)
        .map_err(|_| Error::Config("the client key is not PEM text".into()))?;
    let begin = "-----BEGIN PRIVATE KEY-----";
    let end = "-----END PRIVATE KEY-----";
    let start = text.find(begin).ok_or_else(|| {
        Error::Config("the client key has no PKCS#8 `BEGIN PRIVATE KEY` block".into())
    })? + begin.len();
    let stop = text[start..]
        .find(end)
        .ok_or_else(|| Error::Config("the client key's PEM block is not closed".into()))?
        + start;
    let b64: zeroize::Zeroizing<String> = zeroize::Zeroizing::new(
        text[start..stop]
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect(),
    );
    base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map(zeroize::Zeroizing::new)
        .map_err(|_| Error::Config("the client key's PEM block is not valid base64".into()))
}
