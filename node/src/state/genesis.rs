//! The genesis document: the state a cluster starts from (its threshold, its root identities,
//! its first voters with their attested keys and regions), signed at `operator init` by a root
//! identity's client key.
//!
//! # Security
//!
//! Nothing a node says on its own makes the starting state: the first leader only carries the
//! document into the log, and every node checks, when it applies it, that a client certificate
//! issued by the cluster CA signed exactly these bytes, that the signer is one of the roots the
//! document names, that it is for this cluster, and that every voter's certificate attests its
//! keys and region. A node's configuration no longer names root identities or a threshold: a
//! compromised node cannot start the cluster (or a new member) from a state of its own making.
//! After genesis, only signed commands change members, settings and roots.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tessera_crypto::b64;

use super::authority::Trust;
use super::members::{Members, NodeId, NodeInfo};
use crate::error::Refusal;

/// The document's `format`.
pub const GENESIS_FORMAT: &str = "tessera-genesis-v1";

/// What the signature covers: this domain, then the document's bytes.
const DOMAIN: &[u8] = b"tessera genesis v1\0";

/// The starting state, as the root identity signed it (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisDoc {
    pub format: String,
    pub cluster_id: String,
    /// Shares needed to read a secret (`t`).
    pub threshold: u32,
    pub ack_fault_tolerance: Option<u32>,
    pub allow_unsafe_topology: bool,
    /// Identities (client certificate names) that hold every capability.
    pub roots: BTreeSet<String>,
    /// The first voters: where each listens and its certificate (PEM), which attests its
    /// region and keys.
    pub voters: BTreeMap<NodeId, GenesisVoter>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisVoter {
    pub address: String,
    pub certificate: String,
}

impl GenesisDoc {
    /// The starting state `operator init` and `operator genesis` sign: `admin` is root, `f`
    /// takes its default.
    pub fn first(
        cluster_id: &str,
        threshold: u32,
        allow_unsafe_topology: bool,
        root: &str,
        voters: BTreeMap<NodeId, GenesisVoter>,
    ) -> GenesisDoc {
        GenesisDoc {
            format: GENESIS_FORMAT.into(),
            cluster_id: cluster_id.to_string(),
            threshold,
            ack_fault_tolerance: None,
            allow_unsafe_topology,
            roots: [root.to_string()].into(),
            voters,
        }
    }
}

/// The signed file `operator init` writes beside each node's configuration, and the command
/// the first leader carries into the log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// The document's exact bytes (JSON), as signed.
    #[serde(with = "b64::bytes")]
    pub document: Vec<u8>,
    #[serde(with = "b64::bytes")]
    pub signature: Vec<u8>,
    /// The signer's client certificate (PEM).
    pub certificate: String,
}

impl std::fmt::Debug for Genesis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Genesis({})", self.digest())
    }
}

/// The starting state a verified genesis document gives.
#[derive(Debug)]
pub struct Start {
    pub doc: GenesisDoc,
    pub members: Members,
}

impl Genesis {
    /// What the signer signs for `document`.
    pub fn message(document: &[u8]) -> Vec<u8> {
        [DOMAIN, document].concat()
    }

    /// The document's digest (hex): how a cluster names the genesis it started from.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(&self.document))
    }

    /// The starting state, once every rule in the module's `# Security` holds.
    pub fn verify(&self, trust: &Trust, cluster_id: &str) -> Result<Start, Refusal> {
        let cert =
            tessera_crypto::attest::pem_to_der(self.certificate.as_bytes()).map_err(|e| {
                Refusal::unauthenticated(format!("the genesis signer's certificate: {e}"))
            })?;
        let signer = trust.signer(&cert)?;
        trust.verify(&signer, &Genesis::message(&self.document), &self.signature)?;
        let doc: GenesisDoc = serde_json::from_slice(&self.document)
            .map_err(|e| Refusal::invalid(format!("unreadable genesis document: {e}")))?;
        if doc.format != GENESIS_FORMAT {
            return Err(Refusal::invalid(format!(
                "genesis format {:?}, expected {GENESIS_FORMAT:?}",
                doc.format
            )));
        }
        if doc.cluster_id != cluster_id {
            return Err(Refusal::rejected(format!(
                "the genesis document is for cluster {:?}, not {cluster_id:?}",
                doc.cluster_id
            )));
        }
        if !doc.roots.contains(signer.identity()) {
            return Err(Refusal::unauthenticated(format!(
                "the genesis document is signed by {:?}, which is not one of the roots it names",
                signer.identity()
            )));
        }
        if doc.voters.is_empty() {
            return Err(Refusal::invalid("the genesis document names no voters"));
        }
        let mut members = Members::default();
        for (id, v) in &doc.voters {
            let der = tessera_crypto::attest::pem_to_der(v.certificate.as_bytes())
                .map_err(|e| Refusal::invalid(format!("node {id}'s certificate: {e}")))?;
            let attested = trust.attested_node(&der, *id).map_err(|e| {
                Refusal::unauthenticated(format!("node {id} in the genesis document: {e}"))
            })?;
            let info = NodeInfo {
                addr: v.address.clone(),
                region: attested.region.clone(),
                sealing_key: hex::encode(attested.sealing_key),
                ack_key: hex::encode(attested.ack_key),
                certificate: der,
            };
            members.all.insert(*id, info.clone());
            members.voters.insert(*id, info);
        }
        Ok(Start { doc, members })
    }
}

/// Signs `doc` with a root's client key (Ed25519, PKCS#8 PEM, as `operator init` makes the
/// admin's), at init, off the nodes.
pub fn sign(doc: &GenesisDoc, key_pem: &str, cert_pem: &str) -> anyhow::Result<Genesis> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(key_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("unreadable signing key: {e}"))?;
    let key = ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem.contents)
        .map_err(|_| anyhow::anyhow!("the genesis is signed with an Ed25519 client key"))?;
    let document = serde_json::to_vec_pretty(doc)?;
    let signature = key.sign(&Genesis::message(&document)).as_ref().to_vec();
    Ok(Genesis {
        document,
        signature,
        certificate: cert_pem.to_string(),
    })
}

/// Reads a genesis file (JSON), for the first leader to carry into the log.
pub fn read(path: &std::path::Path) -> anyhow::Result<Genesis> {
    let text = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read the genesis file {}: {e}", path.display()))?;
    serde_json::from_slice(&text)
        .map_err(|e| anyhow::anyhow!("unreadable genesis file {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::authority::testing::TestCa;
    use crate::tls::issue::{issue_client, issue_node};
    use tessera_crypto::attest::Attestation;

    fn doc(ca: &TestCa, regions: &[&str]) -> GenesisDoc {
        let voters = regions
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let id = i as u64 + 1;
                let att = Attestation {
                    region: r.to_string(),
                    sealing_key: [id as u8; 32],
                    ack_key: [id as u8 + 100; 32],
                };
                let cert = issue_node(&ca.ca, id, "127.0.0.1", &att).expect("node cert");
                let v = GenesisVoter {
                    address: format!("127.0.0.1:{}", 7100 + id),
                    certificate: cert.cert_pem,
                };
                (id, v)
            })
            .collect();
        GenesisDoc {
            format: GENESIS_FORMAT.into(),
            cluster_id: "c".into(),
            threshold: 2,
            ack_fault_tolerance: None,
            allow_unsafe_topology: false,
            roots: ["admin".to_string()].into(),
            voters,
        }
    }

    #[test]
    fn a_root_signed_genesis_gives_its_members_with_attested_keys() {
        let ca = TestCa::new();
        let admin = issue_client(&ca.ca, "admin", time::Duration::days(1)).unwrap();
        let g = sign(
            &doc(&ca, &["eu", "us", "ap"]),
            &admin.key_pem,
            &admin.cert_pem,
        )
        .unwrap();
        let start = g.verify(&ca.trust, "c").expect("verifies");
        assert_eq!(start.members.voters.len(), 3);
        assert_eq!(start.members.voters[&2].region, "us");
        assert_eq!(start.members.voters[&2].sealing_key, hex::encode([2u8; 32]));
        assert_eq!(start.doc.roots, ["admin".to_string()].into());
        // Through the file format and back.
        let again: Genesis = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
        assert!(again.verify(&ca.trust, "c").is_ok());
    }

    #[test]
    fn a_genesis_nobody_trusted_signed_is_refused() {
        let ca = TestCa::new();
        let admin = issue_client(&ca.ca, "admin", time::Duration::days(1)).unwrap();
        let d = doc(&ca, &["eu", "us", "ap"]);
        // For another cluster.
        let g = sign(&d, &admin.key_pem, &admin.cert_pem).unwrap();
        let e = g.verify(&ca.trust, "other").unwrap_err().to_string();
        assert!(e.contains("not \"other\""), "{e}");
        // Signed by someone the document does not make root.
        let mallory = issue_client(&ca.ca, "mallory", time::Duration::days(1)).unwrap();
        let g = sign(&d, &mallory.key_pem, &mallory.cert_pem).unwrap();
        let e = g.verify(&ca.trust, "c").unwrap_err().to_string();
        assert!(e.contains("not one of the roots"), "{e}");
        // Changed after signing (a lower threshold).
        let mut g = sign(&d, &admin.key_pem, &admin.cert_pem).unwrap();
        let mut changed = d.clone();
        changed.threshold = 1;
        g.document = serde_json::to_vec_pretty(&changed).unwrap();
        assert!(g.verify(&ca.trust, "c").is_err());
        // Signed by a root of another CA.
        let other = TestCa::new();
        let foreign = issue_client(&other.ca, "admin", time::Duration::days(1)).unwrap();
        let g = sign(&d, &foreign.key_pem, &foreign.cert_pem).unwrap();
        let e = g.verify(&ca.trust, "c").unwrap_err().to_string();
        assert!(e.contains("not signed by the cluster CA"), "{e}");
        // A voter whose certificate the cluster CA did not issue.
        let mut d2 = d.clone();
        d2.voters.get_mut(&3).unwrap().certificate =
            doc(&other, &["ap"]).voters[&1].certificate.clone();
        let g = sign(&d2, &admin.key_pem, &admin.cert_pem).unwrap();
        assert!(g.verify(&ca.trust, "c").is_err());
    }
}
