//! Issuing the cluster CA and the node and client certificates signed by it
//! (`tessera operator init`, `tessera operator client-cert`, `tessera dev`), and node
//! certificates for keys nodes made themselves (`tessera node init`, `operator ca sign`).

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use tessera_crypto::attest::{self, Attestation};
use time::{Duration, OffsetDateTime};

use crate::state::members::{node_dns_name, NodeId};

/// A PEM certificate and its private key. The key is zeroized on drop and never printed.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issued { key_pem: <redacted> }")
    }
}

fn validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
}

pub fn new_ca(cluster_id: &str) -> anyhow::Result<Issued> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(
        DnType::CommonName,
        format!("Tessera cluster CA {cluster_id}"),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut params, 3650);
    let cert = params.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem().into(),
    })
}

fn issuer(ca: &Issued) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let key = KeyPair::from_pem(&ca.key_pem)?;
    Ok(Issuer::from_ca_cert_pem(&ca.cert_pem, key)?)
}

/// A node certificate: DNS name `node<ID>` (what peers verify), plus the host it listens on and
/// `localhost` so that clients can verify it by address; and the node's region and public
/// sealing and acknowledgement keys, attested by the CA (`tessera_crypto::attest`), so that
/// clients and peers check them against the certificate rather than take one node's word.
pub fn issue_node(
    ca: &Issued,
    id: NodeId,
    host: &str,
    attestation: &Attestation,
) -> anyhow::Result<Issued> {
    let key = KeyPair::generate()?;
    let cert = node_params(id, host, attestation)?.signed_by(&key, &issuer(ca)?)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem().into(),
    })
}

/// The same certificate for a key the node made itself, from its signing request (PEM): the
/// request's signature shows the node holds the key; nothing else is taken from it.
pub fn sign_node_request(
    ca: &Issued,
    id: NodeId,
    host: &str,
    attestation: &Attestation,
    csr_pem: &str,
) -> anyhow::Result<String> {
    let csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|e| anyhow::anyhow!("the certificate signing request: {e}"))?;
    let cert = node_params(id, host, attestation)?.signed_by(&csr.public_key, &issuer(ca)?)?;
    Ok(cert.pem())
}

/// A key and its signing request (PEM) for node `id`, made on the node (`tessera node init`).
pub fn node_request(id: NodeId) -> anyhow::Result<Issued> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec![node_dns_name(id)])?;
    params
        .distinguished_name
        .push(DnType::CommonName, node_dns_name(id));
    let csr = params.serialize_request(&key)?;
    Ok(Issued {
        cert_pem: csr.pem()?,
        key_pem: key.serialize_pem().into(),
    })
}

fn node_params(
    id: NodeId,
    host: &str,
    attestation: &Attestation,
) -> anyhow::Result<CertificateParams> {
    let mut sans = vec![node_dns_name(id), "localhost".to_string()];
    if host != "localhost" {
        sans.push(host.to_string());
    }
    if host.parse::<IpAddr>().is_err() {
        sans.push("127.0.0.1".into());
    }
    let mut params = CertificateParams::new(sans)?;
    params
        .distinguished_name
        .push(DnType::CommonName, node_dns_name(id));
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params
        .custom_extensions
        .push(CustomExtension::from_oid_content(
            attest::OID,
            attestation.encode(),
        ));
    validity(&mut params, 825);
    Ok(params)
}

/// A client certificate whose subject CN is the identity policies are written for. Its key is
/// Ed25519: it also signs every command the client submits, and every node verifies those
/// signatures on apply, where Ed25519 costs a fraction of ECDSA P-256 (docs/benchmarks.md).
pub fn issue_client(ca: &Issued, name: &str, lifetime: Duration) -> anyhow::Result<Issued> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + lifetime;
    let cert = params.signed_by(&key, &issuer(ca)?)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::identity_of_der;

    fn der(pem: &str) -> Vec<u8> {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64_decode(&b64)
    }

    // Minimal base64 decoder for the test only (PEM bodies are standard base64).
    fn base64_decode(s: &str) -> Vec<u8> {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut buf, mut bits) = (0u32, 0);
        for c in s.bytes().filter(|c| *c != b'=') {
            let v = T.iter().position(|x| *x == c).expect("base64") as u32;
            buf = (buf << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buf >> bits) as u8);
            }
        }
        out
    }

    #[test]
    fn node_and_client_certificates_carry_the_right_identity() {
        let ca = new_ca("c1").unwrap();
        let attested = Attestation {
            region: "eu-west".into(),
            sealing_key: [1; 32],
            ack_key: [2; 32],
        };
        let node = issue_node(&ca, 3, "127.0.0.1", &attested).unwrap();
        let id = identity_of_der(&der(&node.cert_pem)).unwrap();
        assert_eq!(id.node, Some(3));
        // The CA's attestation of the node's keys and region, checked as a client checks it.
        let ca_der = der(&ca.cert_pem);
        let got = attest::verify_node_certificate(&ca_der, &der(&node.cert_pem), 3).unwrap();
        assert_eq!(got, attested);
        let e = attest::verify_node_certificate(&ca_der, &der(&node.cert_pem), 4).unwrap_err();
        assert!(e.to_string().contains("does not name node 4"), "{e}");
        let other = new_ca("c2").unwrap();
        let e = attest::verify_node_certificate(&der(&other.cert_pem), &der(&node.cert_pem), 3)
            .unwrap_err();
        assert!(
            e.to_string().contains("not signed by the cluster CA"),
            "{e}"
        );
        let client = issue_client(&ca, "alice", Duration::days(90)).unwrap();
        let id = identity_of_der(&der(&client.cert_pem)).unwrap();
        assert_eq!(id.common_name, "alice");
        assert_eq!(id.node, None);
        assert!(!format!("{client:?}").contains("PRIVATE"));
    }
}
