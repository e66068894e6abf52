//! The contract between node and client is typed: every refusal a node can make reaches the
//! client as the same rule with the same facts, through a real gRPC status (code, message and
//! the `tessera-refusal-bin` detail), and the client's exit code follows the rule, not the
//! words.

use tessera_client::Error;
use tessera_node::error::{wire, Refusal};

/// The client's error for a node's refusal, as it would arrive over the wire.
fn through_the_wire(r: &Refusal) -> Error {
    Error::from_status("127.0.0.1:1", tonic::Status::from(r.clone()))
}

/// What the client's error must be.
type Expect = Box<dyn Fn(&Error) -> bool>;

#[test]
fn every_refusal_reaches_the_client_typed_with_its_data() {
    let cases: Vec<(Refusal, Expect, u8)> = vec![
        (
            Refusal::Denied {
                identity: "app".into(),
                path: "prod/db".into(),
                capability: "read".into(),
                policies: vec!["dev".into()],
            },
            Box::new(|e| {
                matches!(e, Error::Denied { identity, path, capability, .. }
                    if identity == "app" && path == "prod/db" && capability == "read")
            }),
            3,
        ),
        (
            Refusal::unauthenticated("a client certificate is required"),
            Box::new(|e| matches!(e, Error::Unauthenticated { .. })),
            3,
        ),
        (
            Refusal::VersionConflict {
                path: "a/b".into(),
                current: 12,
                attempted: 3,
            },
            Box::new(
                |e| matches!(e, Error::VersionConflict { path, current: 12, .. } if path == "a/b"),
            ),
            1,
        ),
        (
            Refusal::stale_topology("the holders must be exactly the voters [1, 2, 3]"),
            Box::new(|e| matches!(e, Error::StaleTopology { .. })),
            1,
        ),
        (
            Refusal::NotAHolder {
                node: 4,
                reason: "node 4 holds no share".into(),
            },
            Box::new(|e| matches!(e, Error::NotAHolder { node: 4, .. })),
            1,
        ),
        (
            Refusal::TooFewAcks {
                have: 3,
                need: 4,
                reason: "only 3 holders acknowledged within 15 s".into(),
            },
            Box::new(|e| {
                matches!(
                    e,
                    Error::TooFewAcks {
                        have: 3,
                        need: 4,
                        ..
                    }
                )
            }),
            4,
        ),
        (
            Refusal::AuditUnavailable,
            Box::new(|e| matches!(e, Error::AuditUnavailable { .. })),
            4,
        ),
        (
            Refusal::NonceUnknown {
                reason: "no round-1 commitment".into(),
            },
            Box::new(|e| matches!(e, Error::NonceUnknown { .. })),
            1,
        ),
        (
            Refusal::NotLeader {
                leader: Some(2),
                reason: "no leader".into(),
            },
            Box::new(|e| matches!(e, Error::Unavailable { .. })),
            4,
        ),
        (
            Refusal::NotCaughtUp { index: 9 },
            Box::new(|e| matches!(e, Error::Unavailable { .. })),
            4,
        ),
        (
            Refusal::no_quorum("no quorum"),
            Box::new(|e| matches!(e, Error::Unavailable { .. })),
            4,
        ),
        (
            Refusal::unavailable("key still generating"),
            Box::new(|e| matches!(e, Error::Unavailable { .. })),
            4,
        ),
        (
            Refusal::not_found("no secret at \"x\""),
            Box::new(|e| matches!(e, Error::NotFound { .. })),
            1,
        ),
        (
            Refusal::invalid("path: empty"),
            Box::new(|e| matches!(e, Error::Invalid { .. })),
            1,
        ),
        (
            Refusal::already_exists("node 4 is already a member"),
            Box::new(|e| matches!(e, Error::AlreadyExists { .. })),
            1,
        ),
        (
            Refusal::rejected("check-and-set failed"),
            Box::new(|e| matches!(e, Error::Rejected { .. })),
            1,
        ),
        (
            Refusal::RateLimited {
                reason: "too many nonces".into(),
            },
            Box::new(|e| matches!(e, Error::RateLimited { .. })),
            1,
        ),
        (
            Refusal::internal("storage failed"),
            Box::new(|e| matches!(e, Error::Unexpected { .. })),
            1,
        ),
    ];
    for (refusal, is_expected, exit) in cases {
        let e = through_the_wire(&refusal);
        assert!(is_expected(&e), "{refusal:?} arrived as {e:?}");
        // The person reads the node's words; the program decides on the variant.
        assert_eq!(e.to_string(), refusal.to_string());
        assert_eq!(e.exit_code(), exit, "{refusal:?}");
        // A refused item of a batched call carries the same detail.
        let item = Error::from_refusal(wire::to_proto(&refusal));
        assert_eq!(item, e, "{refusal:?}");
    }
}

#[test]
fn a_reworded_message_changes_nothing_a_client_decides() {
    // The client decides on the detail alone: the same refusal under other words is the same
    // error, with the same data.
    let r = Refusal::VersionConflict {
        path: "a/b".into(),
        current: 7,
        attempted: 1,
    };
    let mut detail = wire::to_proto(&r);
    detail.reason = "anything at all".into();
    match Error::from_refusal(detail) {
        Error::VersionConflict { current, .. } => assert_eq!(current, 7),
        other => panic!("{other:?}"),
    }
}
