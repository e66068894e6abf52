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
