//! Revoked certificates, as every node checks them on every request: by identity (every
//! certificate naming it), by serial number (one certificate), or by node (every certificate of
//! that node). Replicated, so that a revocation reaches every node in the order of the log.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::NodeId;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocations {
    pub identities: BTreeSet<String>,
    /// Lowercase hex.
    pub serials: BTreeSet<String>,
    pub nodes: BTreeSet<NodeId>,
}

/// What one revocation names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RevokeTarget {
    Identity(String),
    Serial(String),
    Node(NodeId),
}

impl Revocations {
    /// Why a certificate with this subject, node id and serial is refused, if it is.
    pub fn refusal(&self, identity: &str, node: Option<NodeId>, serial: &str) -> Option<String> {
        if self.serials.contains(serial) {
            return Some(format!("certificate {serial} is revoked"));
        }
        match node {
            Some(n) if self.nodes.contains(&n) => {
                Some(format!("node {n}'s certificates are revoked"))
            }
            Some(_) => None,
            None if self.identities.contains(identity) => {
                Some(format!("identity {identity:?} is revoked"))
            }
            None => None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.serials.is_empty() && self.nodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_a_serial_or_a_node_is_refused_and_nothing_else() {
        let r = Revocations {
            identities: ["eve".to_string()].into(),
            serials: ["0a1b".to_string()].into(),
            nodes: [3].into(),
        };
        assert!(r.refusal("eve", None, "ff").is_some());
        assert!(r.refusal("frank", None, "0a1b").is_some());
        assert!(r.refusal("frank", None, "ff").is_none());
        assert!(r.refusal("node3", Some(3), "ff").is_some());
        // An identity revocation names a client; a node's certificate is judged by its node id.
        assert!(r.refusal("eve", Some(2), "ff").is_none());
        assert!(Revocations::default().is_empty());
    }
}
