//! What a break-glass approver signs over: the digest of the request it was shown.
//!
//! # Security
//!
//! An approval names the request by this digest as well as by its id, so a node that shows an
//! approver one request and stores another cannot turn the approval into one for what it
//! stored: every field an approver decides on (who asks, for what, why, for how long, when) is
//! in the digest, each length-prefixed so that no two requests share an encoding. The client
//! computes it from the fields it displays, and every node computes it from the replicated
//! record; they must agree for the decision to apply.

use sha2::{Digest, Sha256};

/// The fields of a request an approver decides on.
#[derive(Clone, Copy, Debug)]
pub struct RequestFields<'a> {
    pub cluster_id: &'a str,
    pub id: &'a str,
    pub requester: &'a str,
    pub path: &'a str,
    pub capability: &'a str,
    pub reason: &'a str,
    pub ttl_secs: u64,
    /// Replicated time the request was opened, nanoseconds since the Unix epoch.
    pub requested_at_nanos: u64,
}

/// SHA-256 over the domain label and every field.
pub fn request_digest(f: &RequestFields<'_>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"tessera/breakglass/request/v1");
    for field in [
        f.cluster_id,
        f.id,
        f.requester,
        f.path,
        f.capability,
        f.reason,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.update(f.ttl_secs.to_be_bytes());
    h.update(f.requested_at_nanos.to_be_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> RequestFields<'static> {
        RequestFields {
            cluster_id: "c",
            id: "ab",
            requester: "alice",
            path: "prod/db",
            capability: "read",
            reason: "outage",
            ttl_secs: 600,
            requested_at_nanos: 7,
        }
    }

    #[test]
    fn every_field_changes_the_digest() {
        let base = request_digest(&fields());
        let variants = [
            RequestFields {
                cluster_id: "d",
                ..fields()
            },
            RequestFields {
                id: "ac",
                ..fields()
            },
            RequestFields {
                requester: "alicf",
                ..fields()
            },
            RequestFields {
                path: "prod/dc",
                ..fields()
            },
            RequestFields {
                capability: "sign",
                ..fields()
            },
            RequestFields {
                reason: "outagf",
                ..fields()
            },
            RequestFields {
                ttl_secs: 601,
                ..fields()
            },
            RequestFields {
                requested_at_nanos: 8,
                ..fields()
            },
        ];
        for v in variants {
            assert_ne!(request_digest(&v), base, "{v:?}");
        }
    }

    #[test]
    fn moving_a_boundary_between_fields_changes_the_digest() {
        let a = RequestFields {
            requester: "ali",
            path: "ceprod/db",
            ..fields()
        };
        let b = RequestFields {
            requester: "alice",
            path: "prod/db",
            ..fields()
        };
        assert_ne!(request_digest(&a), request_digest(&b));
    }
}
