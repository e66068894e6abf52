//! OpenSSH certificates (PROTOCOL.certkeys, `ssh-ed25519-cert-v01@openssh.com`) signed by a
//! threshold key. The to-be-signed bytes are built deterministically from a `CertRequest`, so
//! every signer computes the same message from the same request and checks it itself.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::{invalid, CryptoError};

const CERT_TYPE: &str = "ssh-ed25519-cert-v01@openssh.com";
const KEY_TYPE: &str = "ssh-ed25519";

/// Everything that goes into a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRequest {
    /// The subject's Ed25519 public key.
    #[serde(with = "crate::b64::array")]
    pub public_key: [u8; 32],
    /// 1 = user, 2 = host.
    pub cert_type: u32,
    pub key_id: String,
    pub principals: Vec<String>,
    pub valid_after: u64,
    pub valid_before: u64,
    /// Extension names (no data), e.g. `permit-pty`.
    pub extensions: Vec<String>,
    pub serial: u64,
    pub nonce: [u8; 32],
}

fn put_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn put_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_be_bytes());
}
fn put_str(b: &mut Vec<u8>, s: &[u8]) {
    put_u32(b, s.len() as u32);
    b.extend_from_slice(s);
}

/// The SSH wire encoding of an Ed25519 public key.
pub fn public_key_blob(pk: &[u8; 32]) -> Vec<u8> {
    let mut b = Vec::new();
    put_str(&mut b, KEY_TYPE.as_bytes());
    put_str(&mut b, pk);
    b
}

/// `ssh-ed25519 AAAA... comment`: the line for `TrustedUserCAKeys` or `@cert-authority`.
pub fn public_key_line(pk: &[u8; 32], comment: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(public_key_blob(pk));
    format!("{KEY_TYPE} {b64} {comment}").trim_end().to_string()
}

/// Parses an `ssh-ed25519 AAAA... [comment]` public key line.
pub fn parse_public_key_line(line: &str) -> Result<[u8; 32], CryptoError> {
    let mut parts = line.split_whitespace();
    let kind = parts.next().unwrap_or("");
    if kind != KEY_TYPE {
        return Err(invalid(
            "public key",
            format!("{kind:?} keys are not supported; use an ssh-ed25519 key"),
        ));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(parts.next().unwrap_or(""))
        .map_err(|_| invalid("public key", "the key is not valid base64"))?;
    let mut r = blob.as_slice();
    let mut take = |what: &'static str| -> Result<Vec<u8>, CryptoError> {
        if r.len() < 4 {
            return Err(invalid("public key", format!("truncated {what}")));
        }
        let n = u32::from_be_bytes([r[0], r[1], r[2], r[3]]) as usize;
        if r.len() < 4 + n {
            return Err(invalid("public key", format!("truncated {what}")));
        }
        let v = r[4..4 + n].to_vec();
        r = &r[4 + n..];
        Ok(v)
    };
    if take("type")? != KEY_TYPE.as_bytes() {
        return Err(invalid("public key", "the blob is not an ssh-ed25519 key"));
    }
    take("key")?
        .as_slice()
        .try_into()
        .map_err(|_| invalid("public key", "an Ed25519 key is 32 bytes"))
}

impl CertRequest {
    /// Checks what any signer must check before signing.
    pub fn check(&self) -> Result<(), CryptoError> {
        if self.cert_type != 1 && self.cert_type != 2 {
            return Err(invalid("certificate", "type must be user (1) or host (2)"));
        }
        if self.principals.is_empty() {
            return Err(invalid("certificate", "name at least one principal"));
        }
        if self.valid_before <= self.valid_after {
            return Err(invalid(
                "certificate",
                "valid_before must be after valid_after",
            ));
        }
        for p in self.principals.iter().chain(&self.extensions) {
            if p.is_empty() || p.len() > 256 || p.chars().any(|c| c.is_control() || c == ',') {
                return Err(invalid(
                    "certificate",
                    format!("bad principal or extension {p:?}"),
                ));
            }
        }
        Ok(())
    }

    /// The bytes the CA signs: the whole certificate up to and including the signature key.
    pub fn to_be_signed(&self, ca_key: &[u8; 32]) -> Vec<u8> {
        let mut b = Vec::new();
        put_str(&mut b, CERT_TYPE.as_bytes());
        put_str(&mut b, &self.nonce);
        put_str(&mut b, &self.public_key);
        put_u64(&mut b, self.serial);
        put_u32(&mut b, self.cert_type);
        put_str(&mut b, self.key_id.as_bytes());
        let mut principals = Vec::new();
        for p in &self.principals {
            put_str(&mut principals, p.as_bytes());
        }
        put_str(&mut b, &principals);
        put_u64(&mut b, self.valid_after);
        put_u64(&mut b, self.valid_before);
        put_str(&mut b, b""); // critical options: none
        let mut names: Vec<&String> = self.extensions.iter().collect();
        names.sort();
        names.dedup();
        let mut ext = Vec::new();
        for n in names {
            put_str(&mut ext, n.as_bytes());
            put_str(&mut ext, b"");
        }
        put_str(&mut b, &ext);
        put_str(&mut b, b""); // reserved
        put_str(&mut b, &public_key_blob(ca_key));
        b
    }

    /// The certificate line (`ssh-ed25519-cert-v01@openssh.com AAAA...`), given the signature.
    pub fn certificate_line(&self, ca_key: &[u8; 32], signature: &[u8; 64]) -> String {
        let mut b = self.to_be_signed(ca_key);
        let mut sig = Vec::new();
        put_str(&mut sig, KEY_TYPE.as_bytes());
        put_str(&mut sig, signature);
        put_str(&mut b, &sig);
        format!(
            "{CERT_TYPE} {} {}",
            base64::engine::general_purpose::STANDARD.encode(b),
            self.key_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_lines_round_trip_and_other_types_are_refused() {
        let pk = [7u8; 32];
        let line = public_key_line(&pk, "ca");
        assert_eq!(parse_public_key_line(&line).unwrap(), pk);
        assert!(parse_public_key_line("ssh-rsa AAAA x").is_err());
    }
}
