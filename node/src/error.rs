//! What a node can refuse, one variant per rule it enforces.
//!
//! Every refusal in the node is a [`Refusal`]: the API layer turns it into a gRPC status in one
//! place (`error/wire.rs`) and sends the same value, typed, beside the human message, so a
//! client decides what to do on the variant and its fields and never on the words. The words
//! are still for people: each variant's `Display` is the message the CLI prints.
//!
//! # Security
//!
//! A refusal changes nothing: whoever returns one has not changed replicated state, released a
//! share or signed. Messages carry public facts only (paths, versions, node ids, policy names),
//! never a share, a key or a value.

pub mod wire;

use serde::{Deserialize, Serialize};

/// A node id (the same as `raft::NodeId`; spelled out so that this module depends on nothing).
type NodeId = u64;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum Refusal {
    /// No usable client certificate (missing, or a subject the node cannot read).
    #[error("{reason}")]
    Unauthenticated { reason: String },

    /// The caller's policies do not grant `capability` on `path` (default deny).
    #[error(
        "permission denied: identity {identity:?} may not {capability} {path:?} (policies: {})",
        policies_list(policies)
    )]
    Denied {
        identity: String,
        path: String,
        capability: String,
        policies: Vec<String>,
    },

    /// What was asked for does not exist (a secret, a version, a group, a key, a member).
    #[error("{reason}")]
    NotFound { reason: String },

    /// The request is malformed; the reason names the field and why.
    #[error("{reason}")]
    Invalid { reason: String },

    #[error("{reason}")]
    AlreadyExists { reason: String },

    /// A write dealt for version `attempted` when `path` is at `current`.
    #[error(
        "version conflict: {path:?} is at version {current}, so the next is {}, not {attempted}",
        current + 1
    )]
    VersionConflict {
        path: String,
        current: u64,
        attempted: u64,
    },

    /// A write dealt to holders or a threshold the cluster no longer has.
    #[error("{reason}")]
    StaleTopology { reason: String },

    /// This node holds no share of what was asked.
    #[error("{reason}")]
    NotAHolder { node: NodeId, reason: String },

    /// The request breaks a rule of the replicated state (check-and-set, a key not active, the
    /// topology law, a built-in that cannot change).
    #[error("{reason}")]
    Rejected { reason: String },

    /// This node does not lead and could not hand the request to a leader.
    #[error("{reason}")]
    NotLeader {
        leader: Option<NodeId>,
        reason: String,
    },

    /// This node has not applied `index` yet.
    #[error("this node has not applied index {index} yet; try again or ask another node")]
    NotCaughtUp { index: u64 },

    /// No quorum could confirm or commit the request.
    #[error("{reason}")]
    NoQuorum { reason: String },

    /// Law 4: no audit line, no answer.
    #[error("the node cannot write its audit log, so it refuses the request")]
    AuditUnavailable,

    /// Fewer holders acknowledged a write than it needs to be readable at once.
    #[error("{reason}")]
    TooFewAcks {
        have: u32,
        need: u32,
        reason: String,
    },

    /// The signer has no round-1 nonce under that id (used, expired, or it restarted).
    #[error("{reason}")]
    NonceUnknown { reason: String },

    #[error("{reason}")]
    RateLimited { reason: String },

    /// The work cannot be done now (a key still generating, a peer unreachable).
    #[error("{reason}")]
    Unavailable { reason: String },

    /// A fault of this node (storage, encoding): not the caller's doing.
    #[error("{reason}")]
    Internal { reason: String },

    /// `path` is behind a `break_glass` gate: `capability` on it needs an approved grant and a
    /// committed use of it, whoever asks (root included).
    #[error(
        "{path:?} is behind break-glass: {capability} needs an approved grant; request one with `tessera breakglass request {path} --reason TEXT{}`",
        if capability == "sign" { " --capability sign" } else { "" }
    )]
    BreakGlassRequired { path: String, capability: String },
}

fn policies_list(policies: &[String]) -> String {
    if policies.is_empty() {
        "none attached".to_string()
    } else {
        policies.join(", ")
    }
}

/// Short constructors for the variants that carry only a reason, so that call sites read as
/// the rule they enforce: `Refusal::invalid(format!(…))`.
impl Refusal {
    pub fn unauthenticated(reason: impl Into<String>) -> Self {
        Refusal::Unauthenticated {
            reason: reason.into(),
        }
    }
    pub fn not_found(reason: impl Into<String>) -> Self {
        Refusal::NotFound {
            reason: reason.into(),
        }
    }
    pub fn invalid(reason: impl Into<String>) -> Self {
        Refusal::Invalid {
            reason: reason.into(),
        }
    }
    pub fn already_exists(reason: impl Into<String>) -> Self {
        Refusal::AlreadyExists {
            reason: reason.into(),
        }
    }
    pub fn stale_topology(reason: impl Into<String>) -> Self {
        Refusal::StaleTopology {
            reason: reason.into(),
        }
    }
    pub fn rejected(reason: impl Into<String>) -> Self {
        Refusal::Rejected {
            reason: reason.into(),
        }
    }
    pub fn no_quorum(reason: impl Into<String>) -> Self {
        Refusal::NoQuorum {
            reason: reason.into(),
        }
    }
    pub fn unavailable(reason: impl Into<String>) -> Self {
        Refusal::Unavailable {
            reason: reason.into(),
        }
    }
    pub fn internal(reason: impl Into<String>) -> Self {
        Refusal::Internal {
            reason: reason.into(),
        }
    }

    /// Whether this is the caller being refused access (audited as `denied`).
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            Refusal::Denied { .. }
                | Refusal::Unauthenticated { .. }
                | Refusal::BreakGlassRequired { .. }
        )
    }

    /// The refusal for `capability` on a gated `path`.
    pub fn break_glass_required(path: &str, capability: impl std::fmt::Display) -> Self {
        Refusal::BreakGlassRequired {
            path: path.to_string(),
            capability: capability.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_rule_and_its_facts() {
        let e = Refusal::VersionConflict {
            path: "a/b".into(),
            current: 12,
            attempted: 1,
        };
        assert_eq!(
            e.to_string(),
            "version conflict: \"a/b\" is at version 12, so the next is 13, not 1"
        );
        let e = Refusal::Denied {
            identity: "app".into(),
            path: "prod/db".into(),
            capability: "read".into(),
            policies: vec![],
        };
        assert_eq!(
            e.to_string(),
            "permission denied: identity \"app\" may not read \"prod/db\" (policies: none attached)"
        );
        assert!(e.is_denial());
        assert!(!Refusal::AuditUnavailable.is_denial());
    }
}
