//! The one place a [`Refusal`] becomes a gRPC status (and a peer's status becomes a
//! [`Refusal`] again), used by the services in `api/` and by the peer client in `raft/network`: the status code a person or a generic gRPC tool sees, the message the CLI
//! prints, and the typed refusal in the `tessera-refusal-bin` metadata entry that programs read.

use prost::Message;
use tessera_proto::{self as proto, RefusalKind, REFUSAL_METADATA_KEY};
use tonic::{Code, Status};

use super::Refusal;

/// The wire form of a refusal (also carried by each refused item of a batched call).
pub fn to_proto(r: &Refusal) -> proto::Refusal {
    let mut p = proto::Refusal {
        reason: r.to_string(),
        ..Default::default()
    };
    let kind = match r {
        Refusal::Unauthenticated { .. } => RefusalKind::Unauthenticated,
        Refusal::Denied {
            identity,
            path,
            capability,
            policies,
        } => {
            p.identity = identity.clone();
            p.path = path.clone();
            p.capability = capability.clone();
            p.policies = policies.clone();
            RefusalKind::Denied
        }
        Refusal::NotFound { .. } => RefusalKind::NotFound,
        Refusal::Invalid { .. } => RefusalKind::Invalid,
        Refusal::AlreadyExists { .. } => RefusalKind::AlreadyExists,
        Refusal::VersionConflict {
            path,
            current,
            attempted,
        } => {
            p.path = path.clone();
            p.current = *current;
            p.attempted = *attempted;
            RefusalKind::VersionConflict
        }
        Refusal::StaleTopology { .. } => RefusalKind::StaleTopology,
        Refusal::NotAHolder { node, .. } => {
            p.node = *node;
            RefusalKind::NotAHolder
        }
        Refusal::Rejected { .. } => RefusalKind::Rejected,
        Refusal::NotLeader { leader, .. } => {
            p.leader = *leader;
            RefusalKind::NotLeader
        }
        Refusal::NotCaughtUp { index } => {
            p.index = *index;
            RefusalKind::NotCaughtUp
        }
        Refusal::NoQuorum { .. } => RefusalKind::NoQuorum,
        Refusal::AuditUnavailable => RefusalKind::AuditUnavailable,
        Refusal::TooFewAcks { have, need, .. } => {
            p.have = *have;
            p.need = *need;
            RefusalKind::TooFewAcks
        }
        Refusal::NonceUnknown { .. } => RefusalKind::NonceUnknown,
        Refusal::RateLimited { .. } => RefusalKind::RateLimited,
        Refusal::Unavailable { .. } => RefusalKind::Unavailable,
        Refusal::Internal { .. } => RefusalKind::Internal,
        Refusal::BreakGlassRequired { path, capability } => {
            p.path = path.clone();
            p.capability = capability.clone();
            RefusalKind::BreakGlassRequired
        }
    };
    p.kind = kind as i32;
    p
}

/// A refusal read back from its wire form (a peer's answer). An unknown kind (a newer peer)
/// is kept as `Internal` with the peer's message: nothing branches on it.
pub fn from_proto(p: proto::Refusal) -> Refusal {
    let reason = p.reason;
    match RefusalKind::try_from(p.kind).unwrap_or(RefusalKind::Unspecified) {
        RefusalKind::Unauthenticated => Refusal::Unauthenticated { reason },
        RefusalKind::Denied => Refusal::Denied {
            identity: p.identity,
            path: p.path,
            capability: p.capability,
            policies: p.policies,
        },
        RefusalKind::NotFound => Refusal::NotFound { reason },
        RefusalKind::Invalid => Refusal::Invalid { reason },
        RefusalKind::AlreadyExists => Refusal::AlreadyExists { reason },
        RefusalKind::VersionConflict => Refusal::VersionConflict {
            path: p.path,
            current: p.current,
            attempted: p.attempted,
        },
        RefusalKind::StaleTopology => Refusal::StaleTopology { reason },
        RefusalKind::NotAHolder => Refusal::NotAHolder {
            node: p.node,
            reason,
        },
        RefusalKind::Rejected => Refusal::Rejected { reason },
        RefusalKind::NotLeader => Refusal::NotLeader {
            leader: p.leader,
            reason,
        },
        RefusalKind::NotCaughtUp => Refusal::NotCaughtUp { index: p.index },
        RefusalKind::NoQuorum => Refusal::NoQuorum { reason },
        RefusalKind::AuditUnavailable => Refusal::AuditUnavailable,
        RefusalKind::TooFewAcks => Refusal::TooFewAcks {
            have: p.have,
            need: p.need,
            reason,
        },
        RefusalKind::NonceUnknown => Refusal::NonceUnknown { reason },
        RefusalKind::RateLimited => Refusal::RateLimited { reason },
        RefusalKind::Unavailable => Refusal::Unavailable { reason },
        RefusalKind::BreakGlassRequired => Refusal::BreakGlassRequired {
            path: p.path,
            capability: p.capability,
        },
        RefusalKind::Internal | RefusalKind::Unspecified => Refusal::Internal { reason },
    }
}

/// The gRPC code of each refusal: what a generic gRPC client sees, and what decides the CLI's
/// exit code for an older client.
pub fn code_of(r: &Refusal) -> Code {
    match r {
        Refusal::Unauthenticated { .. } => Code::Unauthenticated,
        Refusal::Denied { .. } | Refusal::BreakGlassRequired { .. } => Code::PermissionDenied,
        Refusal::NotFound { .. } | Refusal::NotAHolder { .. } => Code::NotFound,
        // A write dealt for the wrong version or holders does not fit the cluster: the request
        // itself is what must change.
        Refusal::Invalid { .. }
        | Refusal::VersionConflict { .. }
        | Refusal::StaleTopology { .. } => Code::InvalidArgument,
        Refusal::AlreadyExists { .. } => Code::AlreadyExists,
        Refusal::Rejected { .. } | Refusal::NonceUnknown { .. } => Code::FailedPrecondition,
        Refusal::NotLeader { .. }
        | Refusal::NotCaughtUp { .. }
        | Refusal::NoQuorum { .. }
        | Refusal::AuditUnavailable
        | Refusal::TooFewAcks { .. }
        | Refusal::Unavailable { .. } => Code::Unavailable,
        Refusal::RateLimited { .. } => Code::ResourceExhausted,
        Refusal::Internal { .. } => Code::Internal,
    }
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        let detail = to_proto(&r).encode_to_vec();
        let mut s = Status::new(code_of(&r), r.to_string());
        s.metadata_mut().insert_bin(
            REFUSAL_METADATA_KEY,
            tonic::metadata::MetadataValue::from_bytes(&detail),
        );
        s
    }
}

/// The refusal a peer sent with its status, or, when it sent none (its transport failed, or
/// tonic refused the call before the service ran), an `Unavailable` naming the peer.
pub fn from_status(peer: &str, s: &Status) -> Refusal {
    if let Some(r) = s
        .metadata()
        .get_bin(REFUSAL_METADATA_KEY)
        .and_then(|v| v.to_bytes().ok())
        .and_then(|b| proto::Refusal::decode(b.as_ref()).ok())
    {
        return from_proto(r);
    }
    Refusal::unavailable(format!("{peer}: {}", s.message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of every variant, with data in every field it has.
    pub(crate) fn every_refusal() -> Vec<Refusal> {
        vec![
            Refusal::unauthenticated("a client certificate is required"),
            Refusal::Denied {
                identity: "app".into(),
                path: "prod/db".into(),
                capability: "read".into(),
                policies: vec!["dev".into(), "ops".into()],
            },
            Refusal::not_found("no secret at \"x\""),
            Refusal::invalid("path: empty"),
            Refusal::already_exists("node 4 is already a member"),
            Refusal::VersionConflict {
                path: "a/b".into(),
                current: 12,
                attempted: 3,
            },
            Refusal::stale_topology("the holders must be exactly the voters [1, 2, 3]"),
            Refusal::NotAHolder {
                node: 4,
                reason: "node 4 holds no share of \"a\" version 2".into(),
            },
            Refusal::rejected("check-and-set is required"),
            Refusal::NotLeader {
                leader: Some(3),
                reason: "leader 3 did not answer in time".into(),
            },
            Refusal::NotLeader {
                leader: None,
                reason: "no leader elected".into(),
            },
            Refusal::NotCaughtUp { index: 77 },
            Refusal::no_quorum("cannot confirm a quorum"),
            Refusal::AuditUnavailable,
            Refusal::TooFewAcks {
                have: 3,
                need: 4,
                reason: "only 3 holders acknowledged within 15 s".into(),
            },
            Refusal::NonceUnknown {
                reason: "no round-1 commitment \"r1\"".into(),
            },
            Refusal::RateLimited {
                reason: "too many nonces".into(),
            },
            Refusal::unavailable("key \"k\" is still generating"),
            Refusal::internal("storage failed"),
            Refusal::break_glass_required("prod/db", "read"),
        ]
    }

    #[test]
    fn every_refusal_survives_the_wire_with_its_data() {
        for r in every_refusal() {
            let s = Status::from(r.clone());
            assert_eq!(s.message(), r.to_string());
            assert_eq!(s.code(), code_of(&r));
            assert_eq!(from_status("node 1", &s), r, "{r:?}");
            assert_eq!(from_proto(to_proto(&r)), r);
        }
    }

    #[test]
    fn a_status_without_a_refusal_is_an_unavailable_peer() {
        let s = Status::unavailable("transport error");
        assert_eq!(
            from_status("node 2", &s),
            Refusal::unavailable("node 2: transport error")
        );
    }
}
