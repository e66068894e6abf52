//! Errors a client call can end in, with messages a person can act on.

use std::error::Error as _;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Local configuration: missing or unreadable certificate files, a bad address.
    #[error("{0}")]
    Config(String),
    /// The node could not be reached or the TLS handshake failed.
    #[error("cannot reach {address}: {message}")]
    Connect { address: String, message: String },
    /// The node refused: no certificate, unknown CA, or a policy denies the operation.
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    NotFound(String),
    /// The request was malformed; nothing was changed.
    #[error("{0}")]
    Invalid(String),
    /// The cluster could not serve the request now (no quorum, no leader, audit log down).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn from_status(address: &str, s: tonic::Status) -> Self {
        use tonic::Code::*;
        let msg = s.message().to_string();
        match s.code() {
            PermissionDenied | Unauthenticated => Error::Denied(msg),
            NotFound => Error::NotFound(msg),
            InvalidArgument | FailedPrecondition | AlreadyExists | OutOfRange => {
                Error::Invalid(msg)
            }
            Unavailable | Unknown | Cancelled | DeadlineExceeded if is_transport(&s) => {
                Error::Connect {
                    address: address.to_string(),
                    message: transport_hint(&s),
                }
            }
            Unavailable | DeadlineExceeded => Error::Unavailable(msg),
            _ => Error::Other(format!("{}: {msg}", s.code())),
        }
    }

    /// Process exit code for the CLI: 1 for errors from the cluster, 3 for refusals,
    /// 4 for unreachable.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Denied(_) => 3,
            Error::Connect { .. } | Error::Unavailable(_) => 4,
            _ => 1,
        }
    }
}

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
        || lower.contains("bad certificate")
        || lower.contains("badcertificate")
    {
        " (a certificate is not signed by the expected CA: check --ca-cert and that the client certificate comes from this cluster)"
    } else if lower.contains("notvalidforname") || lower.contains("not valid for name") {
        " (the node's certificate does not name the expected server: check --address / --tls-server-name)"
    } else if lower.contains("connection refused") {
        " (is the node running? check the address and port)"
    } else {
        ""
    };
    format!("{detail}{hint}")
}
