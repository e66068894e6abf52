//! What the cluster CA attests about a node, inside the node's certificate: its region, the
//! X25519 key shares are sealed to, and the Ed25519 key that signs its acknowledgements.
//!
//! # Security
//!
//! A client deals every share to the sealing keys a node tells it. If it took them on that
//! node's word, one compromised node could hand out its own keys, open every envelope, and deal
//! again to the real keys. So the CA binds each node's keys and region into the node's
//! certificate (a non-critical extension, [`OID`]), and whoever uses a node's keys (a client
//! dealing a write, a leader adding a member) checks them against a certificate that chains to
//! the cluster CA and names that node ([`verify_node_certificate`]).

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use crate::CryptoError;

/// The extension's object identifier, under the IANA experimental arc (1.3.6.1.3), private to
/// Tessera's certificates.
pub const OID: &[u64] = &[1, 3, 6, 1, 3, 9211, 1];
const OID_STR: &str = "1.3.6.1.3.9211.1";

/// The format of the extension's content.
const VERSION: u8 = 1;

/// A node's attested public facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attestation {
    pub region: String,
    /// X25519 public key envelopes for this node are sealed to.
    pub sealing_key: [u8; 32],
    /// Ed25519 public key that checks this node's acknowledgements.
    pub ack_key: [u8; 32],
}

impl Attestation {
    /// The extension's content: version, sealing key, ack key, region (UTF-8).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(65 + self.region.len());
        out.push(VERSION);
        out.extend_from_slice(&self.sealing_key);
        out.extend_from_slice(&self.ack_key);
        out.extend_from_slice(self.region.as_bytes());
        out
    }

    pub fn decode(content: &[u8]) -> Result<Attestation, CryptoError> {
        let bad = |why: &str| CryptoError::Invalid {
            what: "node attestation",
            why: why.into(),
        };
        if content.first() != Some(&VERSION) || content.len() < 65 {
            return Err(bad("unknown format"));
        }
        let region = std::str::from_utf8(&content[65..])
            .map_err(|_| bad("the region is not UTF-8"))?
            .to_string();
        Ok(Attestation {
            region,
            sealing_key: content[1..33].try_into().expect("32 bytes"),
            ack_key: content[33..65].try_into().expect("32 bytes"),
        })
    }
}

/// A certificate's subject common name, if it has one.
pub fn common_name(cert: &X509Certificate) -> Option<String> {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
        .map(str::to_string)
}

/// A certificate's DNS subject alternative names.
pub fn dns_names(cert: &X509Certificate) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// The DER of the first certificate in a PEM text.
pub fn pem_to_der(pem: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).map_err(|e| CryptoError::Invalid {
        what: "certificate",
        why: e.to_string(),
    })?;
    Ok(p.contents)
}

/// The attestation in `cert` (DER), once `cert` is shown to be signed by the CA `ca` (DER) and
/// to name node `node` (DNS name `node<ID>`).
pub fn verify_node_certificate(
    ca: &[u8],
    cert: &[u8],
    node: u64,
) -> Result<Attestation, CryptoError> {
    let bad = |why: String| CryptoError::Invalid {
        what: "node certificate",
        why,
    };
    let (_, ca) = X509Certificate::from_der(ca).map_err(|e| bad(format!("CA: {e}")))?;
    let (_, c) = X509Certificate::from_der(cert).map_err(|e| bad(e.to_string()))?;
    c.verify_signature(Some(ca.public_key())).map_err(|_| {
        bad(format!(
            "node {node}'s certificate is not signed by the cluster CA"
        ))
    })?;
    let name = format!("node{node}");
    if !dns_names(&c).contains(&name) {
        return Err(bad(format!("the certificate does not name node {node}")));
    }
    let ext = c
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == OID_STR)
        .ok_or_else(|| bad(format!("node {node}'s certificate attests no keys")))?;
    Attestation::decode(ext.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attestation_round_trips_and_a_truncated_one_is_refused() {
        let a = Attestation {
            region: "eu-west".into(),
            sealing_key: [7; 32],
            ack_key: [9; 32],
        };
        assert_eq!(Attestation::decode(&a.encode()).unwrap(), a);
        assert!(Attestation::decode(&a.encode()[..60]).is_err());
        let mut v2 = a.encode();
        v2[0] = 2;
        assert!(Attestation::decode(&v2).is_err());
    }
}
