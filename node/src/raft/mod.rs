//! Consensus: openraft's type configuration, the RocksDB log store and state machine, and the
//! tonic transport between nodes.

// openraft's storage traits fix the error type (`StorageError`, ~224 bytes); helpers return it
// as the traits do rather than boxing and unboxing at every call.
#![allow(clippy::result_large_err)]

pub mod batcher;
pub mod codec;
pub mod db;
pub mod log_store;
pub mod network;
pub mod service;
pub mod state_machine;

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::state::{Command, CommandResult};

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
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.addr, self.region)
    }
}

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = NodeInfo,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;

/// The DNS name a node's certificate carries, and that peers verify when they dial it.
pub fn node_dns_name(id: NodeId) -> String {
    format!("node{id}")
}

/// Parses a node DNS name back to its id (`node3` → 3).
pub fn parse_node_dns_name(name: &str) -> Option<NodeId> {
    name.strip_prefix("node")?.parse().ok().filter(|id| *id > 0)
}

/// Wraps any error as openraft's `AnyError`, which its storage errors carry.
pub(crate) fn any(e: impl std::error::Error + 'static) -> openraft::AnyError {
    openraft::AnyError::new(&e)
}
