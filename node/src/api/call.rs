//! The envelope of every client call: identity from the verified certificate, the handler,
//! the audit line made durable before the answer leaves (law 4), metrics. Also the helpers
//! handlers share: authorization (law 2), the replicated model, and submitting a command.

use std::future::Future;
use std::time::Instant;

use tessera_proto::*;
use tonic::{Request, Response, Status};

use super::{authorize, Api};
use crate::audit::{AuditRecord, Operation};
use crate::error::Refusal;
use crate::policy::Capability;
use crate::raft::leader::LeaderOp;
use crate::state::authority::{Gates, SignedCall, CALL_SKEW_SECS};
use crate::state::{validate_name, Command, Model, Op, Timestamp};
use crate::tls::{peer_identity, PeerIdentity};

/// Who asked, for a handler: the identity of the verified client certificate and, for a
/// request that changes the replicated state, the client's signature on it (which the command
/// carries, so that every node can check it on apply).
pub(super) struct Requester {
    identity: String,
    signed: Option<Box<SignedCall>>,
}

impl std::fmt::Display for Requester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.identity)
    }
}

impl std::ops::Deref for Requester {
    type Target = str;
    fn deref(&self) -> &str {
        &self.identity
    }
}

impl Requester {
    /// The id of the signed call (hex), if the request was signed.
    pub(super) fn call_id(&self) -> Option<String> {
        self.signed.as_ref().map(|c| hex::encode(&c.id))
    }

    /// The command for `op`, asked for (and signed) by this requester.
    pub(super) fn command(self, op: Op) -> Command {
        Command {
            by: self.identity,
            op,
            signed: self.signed,
            at: Timestamp::default(),
        }
    }
}

/// The client's signature on a request for `method`, read from its metadata, after the checks
/// this node makes with its own clock (the expiry). Every node checks the rest on apply.
fn signed_call<T: prost::Message>(
    req: &Request<T>,
    method: tessera_proto::SignedMethod,
) -> Result<Box<SignedCall>, Refusal> {
    use prost::Message;
    let unsigned = || {
        Refusal::unauthenticated(
            "this request changes the cluster and must carry its client's signature (tessera-call-signature-bin); use a current SDK or CLI",
        )
    };
    let raw = req
        .metadata()
        .get_bin(tessera_proto::CALL_SIGNATURE_METADATA_KEY)
        .ok_or_else(unsigned)?
        .to_bytes()
        .map_err(|_| unsigned())?;
    let sig = tessera_proto::CallSignature::decode(raw.as_ref()).map_err(|_| unsigned())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if sig.expires <= now {
        return Err(Refusal::unauthenticated(
            "the request's signature has expired by this node's clock (check the client's clock, and this node's)",
        ));
    }
    if sig.expires > now + tessera_proto::CALL_MAX_LIFETIME_SECS + CALL_SKEW_SECS {
        return Err(Refusal::unauthenticated(format!(
            "the request's signature is valid for more than {} s (check this client's clock)",
            tessera_proto::CALL_MAX_LIFETIME_SECS
        )));
    }
    let cert = req
        .peer_certs()
        .and_then(|c| c.first().map(|c| c.as_ref().to_vec()))
        .ok_or_else(|| Refusal::unauthenticated("a client certificate is required"))?;
    Ok(Box::new(SignedCall {
        method: method.path().to_string(),
        body: req.get_ref().encode_to_vec(),
        id: sig.id,
        expires: sig.expires,
        signature: sig.signature,
        cert,
    }))
}

/// Who called, as the audit log names them.
pub(super) struct Caller {
    identity: String,
    remote_addr: String,
}

impl Caller {
    /// The caller of a request (for its audit line), and the verified certificate it presented
    /// (or why it has none that counts).
    fn of<T>(req: &Request<T>) -> (Caller, Result<PeerIdentity, Refusal>) {
        let remote_addr = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let cert = peer_identity(req);
        // Who the audit line names: the certificate's subject, even when it is refused.
        let identity = cert
            .as_ref()
            .map(|p| p.common_name.clone())
            .unwrap_or_default();
        (
            Caller {
                identity,
                remote_addr,
            },
            cert,
        )
    }

    pub(super) fn record(
        &self,
        operation: Operation,
        path: String,
        error: Option<&Refusal>,
        detail: Option<String>,
    ) -> AuditRecord {
        AuditRecord {
            time: String::new(),
            request_id: format!("{:032x}", rand08::random::<u128>()),
            identity: self.identity.clone(),
            operation: operation.as_str().to_string(),
            path,
            outcome: outcome_of(error).to_string(),
            remote_addr: self.remote_addr.clone(),
            error: error.map(|e| e.to_string()),
            detail,
        }
    }
}

/// The audit outcome of a request that failed with `error` (or succeeded).
fn outcome_of(error: Option<&Refusal>) -> &'static str {
    match error {
        None => "ok",
        Some(e) if e.is_denial() => "denied",
        Some(_) => "error",
    }
}

impl Api {
    /// Who is calling a client service: the identity of a client certificate that is not
    /// revoked, or why the call is refused (with the caller, for the audit line either way).
    pub(super) fn caller<T>(&self, req: &Request<T>) -> (Caller, Result<String, Refusal>) {
        let (caller, cert) = Caller::of(req);
        let identity = cert.and_then(|p| {
            // A node's certificate proves a node, and a node is never a requester (it cannot
            // read, grant or sign as anyone).
            if let Some(node) = p.node {
                return Err(Refusal::unauthenticated(format!(
                    "node {node} presented its node certificate; client services take client certificates only"
                )));
            }
            let st = self.node.state.read().expect("state lock");
            match st.model.revocations.refusal(&p.common_name, None, &p.serial) {
                Some(why) => Err(Refusal::unauthenticated(why)),
                None => Ok(p.common_name),
            }
        });
        (caller, identity)
    }

    /// Identity → handler → audit → metrics. The handler's result is released only after its
    /// audit line is durable; if the audit log cannot be written the caller gets an error.
    pub(super) async fn run<T, R, F, Fut>(
        &self,
        req: Request<T>,
        operation: Operation,
        path: String,
        handler: F,
    ) -> Result<Response<R>, Status>
    where
        T: prost::Message,
        F: FnOnce(Requester, T) -> Fut,
        Fut: Future<Output = Result<R, Refusal>>,
    {
        self.run_detailed(req, operation, path, None, handler).await
    }

    /// `run`, with extra public facts for the audit line.
    pub(super) async fn run_detailed<T, R, F, Fut>(
        &self,
        req: Request<T>,
        operation: Operation,
        path: String,
        detail: Option<String>,
        handler: F,
    ) -> Result<Response<R>, Status>
    where
        T: prost::Message,
        F: FnOnce(Requester, T) -> Fut,
        Fut: Future<Output = Result<R, Refusal>>,
    {
        let started = Instant::now();
        let (caller, result) = self.caller(&req);
        let requester = result.and_then(|identity| {
            let signed = match operation.signed_method() {
                Some(method) => Some(signed_call(&req, method)?),
                None => None,
            };
            Ok(Requester { identity, signed })
        });
        let result = match requester {
            Ok(requester) => handler(requester, req.into_inner()).await,
            Err(e) => Err(e),
        };
        let record = caller.record(operation, path, result.as_ref().err(), detail);
        let audited = self.node.audit.append(record).await;
        self.observe(operation, result.as_ref().err(), &audited, started);
        audited?;
        result.map(Response::new).map_err(Status::from)
    }

    pub(super) fn observe(
        &self,
        operation: Operation,
        error: Option<&Refusal>,
        audited: &Result<(), Refusal>,
        started: Instant,
    ) {
        let outcome = match (audited, error) {
            (Err(_), _) => "audit_failed",
            (Ok(()), e) => outcome_of(e),
        };
        self.node
            .metrics
            .observe(operation.as_str(), outcome, started.elapsed());
    }

    /// Law 2, on this node's own replicated copy of the policies. A grant is answered at once;
    /// a denial is decided again after catching up with the leader, so that a policy change
    /// acknowledged before the request is honoured by every node, not only by the leader.
    pub(super) async fn authorize(
        &self,
        identity: &str,
        path: &str,
        cap: Capability,
    ) -> Result<(), Refusal> {
        self.authorize_with(identity, path, cap, Gates::Enforced)
            .await
    }

    /// `authorize`, with `break_glass` gates honoured or set aside (for what a gate does not
    /// cover: asking for a grant, a signer's round-1 nonces, public metadata; and for a release
    /// under a grant, which `api::grant` checks on its own).
    pub(super) async fn authorize_with(
        &self,
        identity: &str,
        path: &str,
        cap: Capability,
        gates: Gates,
    ) -> Result<(), Refusal> {
        match authorize(&self.node, identity, path, cap, gates) {
            Ok(()) => Ok(()),
            Err(denied) => match self.node.reads.linearizable().await {
                Ok(()) => authorize(&self.node, identity, path, cap, gates),
                Err(_) => Err(denied),
            },
        }
    }

    /// The small part of the model (groups, policies, settings), without secrets.
    pub(super) fn model(&self) -> Model {
        self.node
            .state
            .read()
            .expect("state lock")
            .model
            .directory_and_settings()
    }

    /// Checks a command against this node's model (a precise error before anything reaches
    /// the log; apply checks again on every node).
    pub(super) fn validate(&self, cmd: &Command) -> Result<(), Refusal> {
        let st = self.node.state.read().expect("state lock");
        st.model.validate(
            cmd,
            &st.model.members,
            &self.node.config.cluster_id,
            &self.node.trust,
        )
    }

    pub(super) async fn submit(&self, requester: Requester, op: Op) -> Result<WriteReply, Refusal> {
        let cmd = requester.command(op);
        if crate::byzantine::withhold_signed(&cmd) {
            return Err(Refusal::unavailable(
                "TEST BUILD: this node held the request back",
            ));
        }
        // Validate against a state at least as new as every acknowledged write, so a follower
        // that lags a little does not refuse a valid change.
        self.node.reads.linearizable().await?;
        self.validate(&cmd)?;
        let index = self.node.leader.submit(LeaderOp::Command(cmd)).await?;
        Ok(WriteReply { index })
    }
}

pub(super) fn name_arg(kind: &str, name: &str) -> Result<(), Refusal> {
    validate_name(kind, name)
}
