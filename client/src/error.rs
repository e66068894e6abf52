//! Errors a client call can end in, with messages a person can act on.

use std::error::Error as _;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Local configuration: missing or unreadable certificate files, a bad address.
    #[error("{0}")]
    Config(String),
    /// The node could not be reached or the TLS handshake failed.
    #[error("cannot reach {address}: {message}")]
    Connect { address: String, message: String },

    // What a node refused, as it typed it (`tessera-refusal-bin`): each variant is one rule,
    // with the facts the node sent. `reason` is the node's message for people.
    /// No usable client certificate.
    #[error("{reason}")]
    Unauthenticated { reason: String },
    /// The caller's policies do not grant `capability` on `path`.
    #[error("{reason}")]
    Denied {
        identity: String,
        path: String,
        capability: String,
        reason: String,
    },
    /// `path` is behind a `break_glass` gate: `capability` on it needs an approved grant and a
    /// committed use of it (`Client::breakglass_request`, then `kv_get_under`).
    #[error("{reason}")]
    BreakGlassRequired {
        path: String,
        capability: String,
        reason: String,
    },
    #[error("{reason}")]
    NotFound { reason: String },
    /// The request was malformed (here or at the node); nothing was changed.
    #[error("{reason}")]
    Invalid { reason: String },
    #[error("{reason}")]
    AlreadyExists { reason: String },
    /// A write was dealt for a version that is not the next one: `path` is at `current`.
    #[error("{reason}")]
    VersionConflict {
        path: String,
        current: u64,
        reason: String,
    },
    /// A write was dealt to holders or a threshold the cluster no longer has.
    #[error("{reason}")]
    StaleTopology { reason: String },
    /// The node asked holds no share of what was asked.
    #[error("{reason}")]
    NotAHolder { node: u64, reason: String },
    /// The request breaks a rule of the replicated state; nothing was changed.
    #[error("{reason}")]
    Rejected { reason: String },
    /// The cluster could not serve the request now (no leader, no quorum, a node behind, too
    /// few holders answering).
    #[error("{reason}")]
    Unavailable { reason: String },
    /// A node could not write its audit log, so it refused (law 4).
    #[error("{reason}")]
    AuditUnavailable { reason: String },
    /// Fewer holders acknowledged a write than it needs to be readable at once.
    #[error("{reason}")]
    TooFewAcks {
        have: u32,
        need: u32,
        reason: String,
    },
    /// A signer no longer has the round-1 nonce named.
    #[error("{reason}")]
    NonceUnknown { reason: String },
    #[error("{reason}")]
    RateLimited { reason: String },
    /// A node answered something that does not check (a share that does not verify, malformed
    /// commitments or keys): the client names it and does not use it.
    #[error("{reason}")]
    Misbehaving { reason: String },
    /// A failure with no typed refusal (a node's internal fault, or a status from something
    /// that is not a Tessera node). Shown to people; never branched on.
    #[error("{reason}")]
    Unexpected { code: String, reason: String },
}

impl Error {
    pub fn from_status(address: &str, s: tonic::Status) -> Self {
        use prost::Message;
        use tonic::Code::*;
        if let Some(r) = s
            .metadata()
            .get_bin(tessera_proto::REFUSAL_METADATA_KEY)
            .and_then(|v| v.to_bytes().ok())
            .and_then(|b| tessera_proto::Refusal::decode(b.as_ref()).ok())
        {
            return Error::from_refusal(r);
        }
        let msg = s.message().to_string();
        match s.code() {
            Unavailable | Unknown | Cancelled | DeadlineExceeded if is_transport(&s) => {
                Error::Connect {
                    address: address.to_string(),
                    message: transport_hint(&s),
                }
            }
            Unavailable | DeadlineExceeded => Error::Unavailable { reason: msg },
            code => Error::Unexpected {
                code: format!("{code:?}"),
                reason: format!("{code}: {msg}"),
            },
        }
    }

    /// The typed error for a node's refusal (of a whole call, or of one item of a batch).
    pub fn from_refusal(r: tessera_proto::Refusal) -> Self {
        use tessera_proto::RefusalKind as K;
        let reason = r.reason;
        match K::try_from(r.kind).unwrap_or(K::Unspecified) {
            K::Unauthenticated => Error::Unauthenticated { reason },
            K::Denied => Error::Denied {
                identity: r.identity,
                path: r.path,
                capability: r.capability,
                reason,
            },
            K::NotFound => Error::NotFound { reason },
            K::Invalid => Error::Invalid { reason },
            K::AlreadyExists => Error::AlreadyExists { reason },
            K::VersionConflict => Error::VersionConflict {
                path: r.path,
                current: r.current,
                reason,
            },
            K::StaleTopology => Error::StaleTopology { reason },
            K::NotAHolder => Error::NotAHolder {
                node: r.node,
                reason,
            },
            K::Rejected => Error::Rejected { reason },
            K::NotLeader | K::NotCaughtUp | K::NoQuorum | K::Unavailable => {
                Error::Unavailable { reason }
            }
            K::AuditUnavailable => Error::AuditUnavailable { reason },
            K::TooFewAcks => Error::TooFewAcks {
                have: r.have,
                need: r.need,
                reason,
            },
            K::NonceUnknown => Error::NonceUnknown { reason },
            K::RateLimited => Error::RateLimited { reason },
            K::BreakGlassRequired => Error::BreakGlassRequired {
                path: r.path,
                capability: r.capability,
                reason,
            },
            K::Internal | K::Unspecified => Error::Unexpected {
                code: "Internal".into(),
                reason,
            },
        }
    }

    /// A node's answer that does not check.
    pub fn misbehaving(reason: impl Into<String>) -> Self {
        Error::Misbehaving {
            reason: reason.into(),
        }
    }

    /// Whether this is a refusal of access (the caller's identity or policies).
    pub fn is_denial(&self) -> bool {
        matches!(
            self,
            Error::Denied { .. } | Error::Unauthenticated { .. } | Error::BreakGlassRequired { .. }
        )
    }

    /// Process exit code for the CLI: 1 for errors from the cluster, 3 for refusals,
    /// 4 for unreachable or unavailable.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Denied { .. }
            | Error::Unauthenticated { .. }
            | Error::BreakGlassRequired { .. } => 3,
            Error::Connect { .. }
            | Error::Unavailable { .. }
            | Error::AuditUnavailable { .. }
            | Error::TooFewAcks { .. } => 4,
            _ => 1,
        }
    }
}

/// Whether a status without a refusal was made by this client's own transport (tonic, hyper,
/// rustls) rather than by a node. Only such statuses are read as text, here and in
/// `transport_hint`, to say what to fix locally; a node's answers always carry a typed refusal,
/// decoded before this is reached, and nothing a node writes is matched.
fn is_transport(s: &tonic::Status) -> bool {
    s.source().is_some()
        || s.message().contains("transport error")
        || s.message().contains("connection")
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}

/// Explains the usual TLS and connection failures in words.
pub(crate) fn transport_hint(s: &tonic::Status) -> String {
    let detail = match s.source() {
        Some(src) => chain(src),
        None => s.message().to_string(),
    };
    let lower = detail.to_lowercase();
    let hint = if lower.contains("certificate required")
        || lower.contains("handshake") && lower.contains("alert")
    {
        " (the node requires a client certificate signed by the cluster CA: set --client-cert/--client-key or TESSERA_CLIENT_CERT/TESSERA_CLIENT_KEY)"
    } else if lower.contains("unknownissuer")
        || lower.contains("unknown issuer")
        || lower.contains("unknown ca")
        || lower.contains("unknownca")
        || lower.contains("bad certificate")
        || lower.contains("badcertificate")
    {
        " (a certificate is not signed by the expected CA: nodes accept only client certificates signed by this cluster's CA, and --ca-cert must be that CA)"
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        " (the node's certificate does not name the expected server: check --address / --tls-server-name)"
    } else if lower.contains("connection refused") {
        " (is the node running? check the address and port)"
    } else if lower.contains("tcp connect") || lower.contains("timed out") || lower.contains("dns")
    {
        " (check the address and that the node is up)"
    } else {
        // The TCP connection was made and then the TLS session failed: after a TLS 1.3
        // handshake the refusal of a client certificate reaches the client in many shapes.
        " (the node ended the TLS session: nodes accept only client certificates signed by this cluster's CA)"
    };
    format!("{detail}{hint}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fake(&'static str);
    impl std::fmt::Display for Fake {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for Fake {}

    fn connect_message(detail: &'static str) -> String {
        let status = tonic::Status::from_error(Box::new(Fake(detail)));
        Error::from_status("127.0.0.1:1", status).to_string()
    }

    #[test]
    fn tls_refusals_are_explained() {
        for detail in [
            "transport error: connection error: received fatal alert: UnknownCA",
            "transport error: connection error: stream closed because of a broken pipe",
            "transport error: invalid peer certificate: UnknownIssuer",
            "transport error: operation was canceled: connection was not ready",
        ] {
            let m = connect_message(detail);
            assert!(m.contains("signed by this cluster's CA"), "{m}");
        }
        let m = connect_message("transport error: tcp connect error: Connection refused");
        assert!(m.contains("is the node running"), "{m}");
    }
}
