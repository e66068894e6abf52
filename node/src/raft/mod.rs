//! Consensus: openraft's type configuration, the RocksDB log store and state machine, and the
//! tonic transport between nodes.

// openraft's storage traits fix the error type (`StorageError`, ~224 bytes); helpers return it
// as the traits do rather than boxing and unboxing at every call.
#![allow(clippy::result_large_err)]

pub mod append_guard;
pub mod batcher;
pub mod bootstrap;
pub mod clock;
pub mod codec;
pub mod leader;
pub mod log_store;
pub mod membership_guard;
pub mod network;
pub mod outgoing;
pub mod reads;
pub mod receipts_ahead;
pub mod snapshot_guard;
pub mod state_machine;
pub mod status;

use std::io::Cursor;

use crate::state::{Command, CommandResult};

pub use crate::state::members::{node_dns_name, parse_node_dns_name, NodeId, NodeInfo};

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

/// Wraps any error as openraft's `AnyError`, which its storage errors carry.
pub(crate) fn any(e: impl std::error::Error + 'static) -> openraft::AnyError {
    openraft::AnyError::new(&e)
}
