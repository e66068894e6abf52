//! The membership as the replicated state records it: each member's id, address, region and
//! public keys, and the voters among them. Every node checks placement, holders and
//! acknowledgements against this, on its own.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::topology;

pub type NodeId = u64;

/// A member as the replicated membership records it: where to reach it and which region it is
/// in. Regions live in the membership so that every node can check placement on its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub addr: String,
    pub region: String,
    /// X25519 public key (hex) that envelopes for this node are sealed to.
    #[serde(default)]
    pub sealing_key: String,
    /// Ed25519 public key (hex) that checks this node's acknowledgements.
    #[serde(default)]
    pub ack_key: String,
    /// The node's certificate (DER), in which the CA attests its region and keys: clients check
    /// the keys against it rather than take one node's word (`tessera_crypto::attest`).
    #[serde(default, with = "tessera_crypto::b64::bytes")]
    pub certificate: Vec<u8>,
}

impl NodeInfo {
    /// The Ed25519 key that checks this node's signed records, if the membership has a
    /// well-formed one.
    pub fn ack_key_bytes(&self) -> Option<[u8; 32]> {
        hex::decode(&self.ack_key).ok()?.try_into().ok()
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.addr, self.region)
    }
}

/// The DNS name a node's certificate carries, and that peers verify when they dial it.
pub fn node_dns_name(id: NodeId) -> String {
    format!("node{id}")
}

/// Parses a node DNS name back to its id (`node3` → 3).
pub fn parse_node_dns_name(name: &str) -> Option<NodeId> {
    name.strip_prefix("node")?.parse().ok().filter(|id| *id > 0)
}

/// The membership as signed commands made it (the genesis document, then `members add` and
/// `members remove`), which every holder, acknowledgement and topology decision is checked
/// against. Raft's own membership follows it, and a follower refuses a Raft membership entry
/// that departs from it (`raft::membership_guard`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    pub voters: BTreeMap<NodeId, NodeInfo>,
    pub all: BTreeMap<NodeId, NodeInfo>,
}

impl Members {
    pub fn region_counts(&self) -> topology::RegionCounts {
        topology::region_counts(self.voters.values().map(|n| n.region.as_str()))
    }
}
