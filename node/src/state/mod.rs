//! The replicated model: what every node agrees on through Raft (groups, policies and their
//! attachments, cluster settings, and the public side of secrets), the commands that change it,
//! and the pure functions that validate and apply them.
//!
//! Applying is deterministic and never trusts the submitter: a command that would break an
//! invariant is rejected identically on every node, and the model is left unchanged.

mod command;
pub mod keys;
pub mod kv;
pub mod model;
pub mod topology;

use std::collections::BTreeMap;

pub use command::{AttachTarget, Command, CommandResult, Op};
pub use model::{validate_name, Effects, Model, Settings, ROOT_POLICY};

use crate::raft::{NodeId, NodeInfo, StoredMembership};

/// The membership as commands are validated against it.
#[derive(Clone, Debug, Default)]
pub struct Members {
    pub voters: BTreeMap<NodeId, NodeInfo>,
    pub all: BTreeMap<NodeId, NodeInfo>,
}

impl Members {
    pub fn from_membership(m: &StoredMembership) -> Self {
        let membership = m.membership();
        let all: BTreeMap<NodeId, NodeInfo> =
            membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        let voters = membership
            .voter_ids()
            .filter_map(|id| all.get(&id).map(|n| (id, n.clone())))
            .collect();
        Members { voters, all }
    }

    pub fn region_counts(&self) -> topology::RegionCounts {
        topology::region_counts(self.voters.values().map(|n| n.region.as_str()))
    }
}
