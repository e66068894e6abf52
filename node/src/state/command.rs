//! Commands carried by the Raft log, and what applying one returns.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::Model;

/// Who a policy is attached to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttachTarget {
    Group(String),
    Identity(String),
}

/// One change to the replicated model. Every variant records who asked for it, so the log itself
/// says who changed what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// Identity (client certificate CN) that made the request, as checked by the serving node.
    pub by: String,
    pub op: Op,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    PutGroup {
        name: String,
        members: BTreeSet<String>,
    },
    DeleteGroup {
        name: String,
    },
    /// `text` is the policy source; it was parsed by the serving node and is parsed again on
    /// apply, so a malformed policy can never enter the model.
    PutPolicy {
        name: String,
        text: String,
    },
    DeletePolicy {
        name: String,
    },
    Attach {
        policy: String,
        target: AttachTarget,
        detach: bool,
    },
    /// Replace the whole data model (operator snapshot restore). Membership is not touched.
    Restore {
        model: Model,
    },
}

/// The outcome of applying a command, identical on every node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// `None` when applied; otherwise why the model refused it (and nothing changed).
    pub error: Option<String>,
}

impl CommandResult {
    pub fn ok() -> Self {
        Self { error: None }
    }
    pub fn refused(msg: impl Into<String>) -> Self {
        Self {
            error: Some(msg.into()),
        }
    }
}
