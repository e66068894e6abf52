//! What a threshold signature is asked for: raw bytes, an SSH certificate or a JWT. Signers
//! rebuild the signed message from this request themselves and check it against the key's
//! purpose and limits, so a coordinator cannot get a signature over anything else.

use serde::{Deserialize, Serialize};

use crate::jwt::JwtRequest;
use crate::purpose::KeyPurpose;
use crate::ssh::CertRequest;
use crate::{invalid, CryptoError};

/// Longest certificate or token lifetime a signer accepts (seconds).
pub const MAX_TTL: u64 = 7 * 24 * 3600;
/// How far a start time may be from the signer's clock (seconds).
pub const MAX_SKEW: u64 = 600;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignRequest {
    Raw {
        #[serde(with = "crate::b64::bytes")]
        message: Vec<u8>,
    },
    Ssh(CertRequest),
    Jwt(JwtRequest),
}

impl SignRequest {
    /// The purpose this request needs the key to have.
    pub fn purpose(&self) -> KeyPurpose {
        match self {
            SignRequest::Raw { .. } => KeyPurpose::Raw,
            SignRequest::Ssh(c) if c.cert_type == 2 => KeyPurpose::SshHostCa,
            SignRequest::Ssh(_) => KeyPurpose::SshUserCa,
            SignRequest::Jwt(_) => KeyPurpose::Jwt,
        }
    }

    /// The bytes to sign.
    pub fn message(&self, group_key: &[u8; 32]) -> Vec<u8> {
        match self {
            SignRequest::Raw { message } => message.clone(),
            SignRequest::Ssh(c) => c.to_be_signed(group_key),
            SignRequest::Jwt(j) => j.signing_input().into_bytes(),
        }
    }

    /// What every signer checks before it signs: the key's purpose, the request's own
    /// consistency, and lifetimes against its own clock.
    pub fn check(&self, key_purpose: KeyPurpose, now: u64) -> Result<(), CryptoError> {
        if self.purpose() != key_purpose {
            return Err(invalid(
                "sign request",
                format!(
                    "a {key_purpose} key does not sign {} requests",
                    self.purpose()
                ),
            ));
        }
        let (start, end) = match self {
            SignRequest::Raw { message } => {
                if message.len() > 64 * 1024 {
                    return Err(invalid("sign request", "raw input is larger than 64 KiB"));
                }
                return Ok(());
            }
            SignRequest::Ssh(c) => {
                c.check()?;
                (c.valid_after, c.valid_before)
            }
            SignRequest::Jwt(j) => {
                j.check()?;
                (j.iat, j.exp)
            }
        };
        // Times come from the requester: checked arithmetic, so that no value wraps around.
        if start.saturating_add(MAX_SKEW) < now || start > now.saturating_add(MAX_SKEW) {
            return Err(invalid(
                "sign request",
                "the start time is more than 10 minutes from this signer's clock",
            ));
        }
        if end.checked_sub(start).is_none_or(|ttl| ttl > MAX_TTL) {
            return Err(invalid(
                "sign request",
                format!("the lifetime exceeds the maximum of {MAX_TTL} s"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(iat: u64, exp: u64) -> SignRequest {
        SignRequest::Jwt(JwtRequest {
            kid: "k".into(),
            iss: "tessera".into(),
            sub: "svc".into(),
            aud: "api".into(),
            iat,
            exp,
            jti: "1".into(),
            extra: Vec::new(),
        })
    }

    #[test]
    fn times_from_the_requester_cannot_wrap_around() {
        let now = 1_800_000_000;
        assert!(jwt(now, now + 600).check(KeyPurpose::Jwt, now).is_ok());
        // A start near u64::MAX would wrap `start + MAX_SKEW` to a small number.
        assert!(jwt(u64::MAX - 1, u64::MAX)
            .check(KeyPurpose::Jwt, now)
            .is_err());
        assert!(jwt(u64::MAX - MAX_SKEW / 2, u64::MAX)
            .check(KeyPurpose::Jwt, u64::MAX - MAX_SKEW / 2)
            .is_ok());
        // A lifetime over the limit, and a request of another purpose.
        assert!(jwt(now, now + MAX_TTL + 1)
            .check(KeyPurpose::Jwt, now)
            .is_err());
        assert!(jwt(now, now + 60).check(KeyPurpose::Raw, now).is_err());
    }
}
