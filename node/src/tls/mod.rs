//! Mutual TLS: loading the cluster CA and a node's or client's certificate, building tonic's
//! TLS configurations, and reading who is on the other end of a connection.
//!
//! Every connection, node↔node and client↔node, is mutually authenticated against the cluster
//! CA. A node dialing a peer verifies that the certificate names that peer's id, so a stolen
//! certificate of one node cannot impersonate another.

pub mod issue;

use std::path::Path;

use tessera_crypto::attest;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::Request;
use x509_parser::prelude::*;

use crate::error::Refusal;
use crate::state::members::{node_dns_name, parse_node_dns_name, NodeId};

/// PEM material for one end of a connection. The private key is zeroized on drop and never
/// printed.
pub struct TlsMaterial {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    key: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsMaterial { key: <redacted> }")
    }
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {what} {}: {e}", path.display()))
}

impl TlsMaterial {
    /// From PEM already in memory (certificates issued in-process, e.g. by
    /// `tessera bench floor` for a throwaway CA that never touches the disk).
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Self {
        Self {
            ca: ca.to_vec(),
            cert: cert.to_vec(),
            key: zeroize::Zeroizing::new(key.to_vec()),
        }
    }

    pub fn load(ca: &Path, cert: &Path, key: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            ca: read(ca, "CA certificate")?,
            cert: read(cert, "certificate")?,
            key: zeroize::Zeroizing::new(read(key, "private key")?),
        })
    }

    fn identity(&self) -> Identity {
        Identity::from_pem(&self.cert, &*self.key)
    }

    /// Server side: present our certificate and require a client certificate from the CA.
    pub fn server(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(self.identity())
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    /// Node → peer: present our node certificate and accept only the peer's own certificate.
    pub fn to_peer(&self, peer: NodeId) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(self.identity())
            .domain_name(node_dns_name(peer))
    }
}

/// The verified subject of the peer certificate on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Subject common name: a client's identity.
    pub common_name: String,
    /// The node id, when the certificate is a node certificate (DNS name `node<ID>`).
    pub node: Option<NodeId>,
    /// The certificate's serial number, lowercase hex (what `operator revoke --serial` names).
    pub serial: String,
}

/// Reads the (already CA-verified) certificate the peer presented. Requests without one cannot
/// reach a handler because the server requires client certificates; this still refuses them.
pub fn peer_identity<T>(req: &Request<T>) -> Result<PeerIdentity, Refusal> {
    let certs = req
        .peer_certs()
        .ok_or_else(|| Refusal::unauthenticated("a client certificate is required"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Refusal::unauthenticated("a client certificate is required"))?;
    identity_of_der(leaf.as_ref())
}

/// The serial number (lowercase hex) of a PEM certificate.
pub fn serial_of_pem(pem: &str) -> anyhow::Result<String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("unreadable certificate: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("unreadable certificate: {e}"))?;
    Ok(hex::encode(cert.raw_serial()))
}

/// The identity a certificate names (already verified against the cluster CA).
pub fn identity_of_der(der: &[u8]) -> Result<PeerIdentity, Refusal> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| Refusal::unauthenticated(format!("unreadable certificate: {e}")))?;
    let common_name = attest::common_name(&cert).unwrap_or_default();
    let node = attest::dns_names(&cert)
        .iter()
        .rev()
        .find_map(|d| parse_node_dns_name(d));
    if common_name.is_empty() && node.is_none() {
        return Err(Refusal::unauthenticated(
            "the certificate has no subject common name",
        ));
    }
    Ok(PeerIdentity {
        common_name,
        node,
        serial: hex::encode(cert.raw_serial()),
    })
}
