//! EdDSA JSON Web Tokens (RFC 7519 / RFC 8037) and JWKS documents for a threshold key. The
//! signing input is built deterministically from a `JwtRequest`, so each signer checks the
//! claims it is asked to sign.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{invalid, CryptoError};

fn b64u(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// The claims of a token. `extra` holds additional string claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtRequest {
    pub kid: String,
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    pub extra: Vec<(String, String)>,
}

const RESERVED: [&str; 7] = ["iss", "sub", "aud", "iat", "exp", "nbf", "jti"];

impl JwtRequest {
    pub fn check(&self) -> Result<(), CryptoError> {
        if self.sub.is_empty() || self.aud.is_empty() {
            return Err(invalid("token", "sub and aud are required"));
        }
        if self.exp <= self.iat {
            return Err(invalid("token", "exp must be after iat"));
        }
        for (k, _) in &self.extra {
            if RESERVED.contains(&k.as_str()) {
                return Err(invalid(
                    "token",
                    format!("claim {k:?} is set by its own flag"),
                ));
            }
        }
        Ok(())
    }

    /// `base64url(header) . base64url(claims)`: the bytes that are signed.
    pub fn signing_input(&self) -> String {
        let header = json!({ "alg": "EdDSA", "typ": "JWT", "kid": self.kid });
        let mut claims = Map::new();
        for (k, v) in &self.extra {
            claims.insert(k.clone(), Value::String(v.clone()));
        }
        claims.insert("iss".into(), json!(self.iss));
        claims.insert("sub".into(), json!(self.sub));
        claims.insert("aud".into(), json!(self.aud));
        claims.insert("iat".into(), json!(self.iat));
        claims.insert("nbf".into(), json!(self.iat));
        claims.insert("exp".into(), json!(self.exp));
        claims.insert("jti".into(), json!(self.jti));
        format!(
            "{}.{}",
            b64u(header.to_string().as_bytes()),
            b64u(Value::Object(claims).to_string().as_bytes())
        )
    }

    pub fn token(&self, signature: &[u8; 64]) -> String {
        format!("{}.{}", self.signing_input(), b64u(signature))
    }
}

/// A JWKS document with one Ed25519 key (RFC 8037 OKP).
pub fn jwks(kid: &str, pk: &[u8; 32]) -> Value {
    json!({ "keys": [ { "kty": "OKP", "crv": "Ed25519", "x": b64u(pk), "kid": kid, "alg": "EdDSA", "use": "sig" } ] })
}
