//! The `BreakGlass` service: asking for, deciding on, revoking and using quorum-approved
//! emergency access to a gated path, and listing and showing requests.
//!
//! Every change is a command the client signed, applied through Raft with the rules of
//! `state::breakglass` (checked here first for a precise error, and again on every node when
//! it applies). Nothing here grants access by itself: each holder and signer verifies the
//! signatures a grant rests on before it releases (`api::grant`).

use tessera_proto::break_glass_server::BreakGlass;
use tessera_proto::*;
use tonic::{Request, Response, Status};

use super::Api;
use crate::audit::Operation;
use crate::error::Refusal;
use crate::policy::Capability;
use crate::state::authority::Gates as AuthGates;
use crate::state::breakglass::{
    gates_for, Closed, Request as BgRequest, Status as BgStatus, UseTarget,
};
use crate::state::{Model, Op, Timestamp};

/// Who may see every request (not only their own and those they may decide).
const ADMIN_PATH: &str = "sys/breakglass";

impl Api {
    /// Counts a break-glass event this node served (`tessera_breakglass_events_total`).
    pub(super) fn event(&self, event: &str) {
        self.node
            .metrics
            .breakglass_events
            .with_label_values(&[event])
            .inc();
    }

    /// Whether `identity` may see request `r`: its requester, an approver its gates name, or
    /// an identity with `read` on `sys/breakglass`.
    fn may_see(&self, m: &Model, identity: &str, r: &BgRequest) -> bool {
        if r.requester == identity || self.may_decide(m, identity, r) {
            return true;
        }
        crate::state::authority::authorize_with(
            m,
            &self.node.trust,
            identity,
            ADMIN_PATH,
            Capability::Read,
            AuthGates::SetAside,
        )
        .is_ok()
    }

    fn may_decide(&self, m: &Model, identity: &str, r: &BgRequest) -> bool {
        if identity == r.requester {
            return false;
        }
        let groups = m.groups_of(identity).into_iter().collect();
        gates_for(&m.policies, &self.node.trust.policies, &r.path).eligible(identity, &groups)
    }

    fn record(&self, m: &Model, r: &BgRequest, proof: bool) -> BreakGlassRecord {
        let now = Timestamp::now();
        let status = r.status(now);
        let waiting_for = match (&status, &r.granted) {
            (BgStatus::Pending, None) => {
                match gates_for(&m.policies, &self.node.trust.policies, &r.path)
                    .met(&r.requester, &r.decisions)
                {
                    Ok(()) => String::new(),
                    Err(e) => e.to_string(),
                }
            }
            _ => String::new(),
        };
        BreakGlassRecord {
            id: r.id.clone(),
            requester: r.requester.clone(),
            path: r.path.clone(),
            capability: r.capability.as_str().to_string(),
            reason: r.reason.clone(),
            ttl_secs: r.ttl_secs,
            requested_at: r.requested_at.unix_nanos(),
            pending_until: r.pending_until.unix_nanos(),
            status: status.name().to_string(),
            granted_at: r.granted.map(|g| g.at.unix_nanos()).unwrap_or(0),
            granted_until: r.granted.map(|g| g.until.unix_nanos()).unwrap_or(0),
            uses_allowed: r.granted.map(|g| g.uses).unwrap_or(0),
            uses_committed: r.uses.len() as u32,
            decisions: r
                .decisions
                .iter()
                .map(|d| BreakGlassDecisionRecord {
                    approver: d.approver.clone(),
                    approve: d.approve,
                    comment: d.comment.clone(),
                    at: d.at.unix_nanos(),
                    groups: d.groups.iter().cloned().collect(),
                })
                .collect(),
            closed_by: match &r.closed {
                Some(Closed::Denied { by, .. }) | Some(Closed::Revoked { by, .. }) => by.clone(),
                None => String::new(),
            },
            proof_json: if proof {
                serde_json::to_string_pretty(&crate::state::breakglass::proof::Bundle::of(
                    &self.node.config.cluster_id,
                    r,
                ))
                .unwrap_or_default()
            } else {
                String::new()
            },
            waiting_for,
            uses: r
                .uses
                .iter()
                .map(|u| BreakGlassUseRecord {
                    use_id: u.id.clone(),
                    at: u.at.unix_nanos(),
                    target: u.target.to_string(),
                })
                .collect(),
        }
    }

    /// The state's requests, read under the lock, as records the caller may see.
    fn visible(
        &self,
        identity: &str,
        keep: impl Fn(&Model, &BgRequest) -> bool,
        proof: bool,
    ) -> Vec<BreakGlassRecord> {
        let st = self.node.state.read().expect("state lock");
        let m = &st.model;
        m.breakglass
            .values()
            .filter(|r| self.may_see(m, identity, r) && keep(m, r))
            .map(|r| self.record(m, r, proof))
            .collect()
    }
}

#[tonic::async_trait]
impl BreakGlass for Api {
    async fn request(
        &self,
        req: Request<BreakGlassOpen>,
    ) -> Result<Response<BreakGlassOpened>, Status> {
        let path = req.get_ref().path.clone();
        self.run(
            req,
            Operation::BreakGlassRequest,
            path,
            |id, r| async move {
                let capability: Capability = r
                    .capability
                    .parse()
                    .map_err(|e| Refusal::invalid(format!("capability: {e}")))?;
                let call_id = id
                    .call_id()
                    .ok_or_else(|| Refusal::unauthenticated("the request must be signed"))?;
                let op = Op::BreakGlassRequest {
                    path: r.path,
                    capability,
                    reason: r.reason,
                    ttl_secs: r.ttl_secs,
                    time: Timestamp::now(),
                };
                let index = self.submit(id, op).await?.index;
                self.event("requested");
                Ok(BreakGlassOpened { index, id: call_id })
            },
        )
        .await
    }

    async fn decide(
        &self,
        req: Request<BreakGlassDecision>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = format!("{ADMIN_PATH}/{}", req.get_ref().id);
        self.run(req, Operation::BreakGlassDecide, path, |id, r| async move {
            let (grant, approve, who) = (r.id.clone(), r.approve, id.to_string());
            let op = Op::BreakGlassDecide {
                id: r.id,
                approve: r.approve,
                comment: r.comment,
                digest: r.request_digest,
                time: Timestamp::now(),
            };
            let reply = self.submit(id, op).await?;
            self.event(if approve { "approved" } else { "denied" });
            // Whether this approval completed the grant, once this node has applied it.
            let applied = self
                .node
                .reads
                .wait_applied(reply.index, std::time::Duration::from_secs(5))
                .await;
            let activated = applied.is_ok()
                && self
                    .node
                    .state
                    .read()
                    .expect("state lock")
                    .model
                    .breakglass
                    .get(&grant)
                    .is_some_and(|q| {
                        q.granted.is_some() && q.decisions.last().is_some_and(|d| d.approver == who)
                    });
            if activated {
                self.event("activated");
            }
            Ok(reply)
        })
        .await
    }

    async fn revoke(&self, req: Request<BreakGlassId>) -> Result<Response<WriteReply>, Status> {
        let path = format!("{ADMIN_PATH}/{}", req.get_ref().id);
        self.run(req, Operation::BreakGlassRevoke, path, |id, r| async move {
            let op = Op::BreakGlassRevoke {
                id: r.id,
                time: Timestamp::now(),
            };
            let reply = self.submit(id, op).await?;
            self.event("revoked");
            Ok(reply)
        })
        .await
    }

    async fn r#use(&self, req: Request<BreakGlassUse>) -> Result<Response<WriteReply>, Status> {
        let path = format!("{ADMIN_PATH}/{}", req.get_ref().id);
        self.run(req, Operation::BreakGlassUse, path, |id, r| async move {
            let op = Op::BreakGlassUse {
                id: r.id,
                use_id: r.use_id,
                target: UseTarget::from_wire(r.version, &r.message_digest)?,
                time: Timestamp::now(),
            };
            let reply = self.submit(id, op).await?;
            self.event("use_committed");
            Ok(reply)
        })
        .await
    }

    async fn list(
        &self,
        req: Request<BreakGlassListRequest>,
    ) -> Result<Response<BreakGlassListReply>, Status> {
        self.run(
            req,
            Operation::BreakGlassList,
            ADMIN_PATH.into(),
            |id, r| async move {
                self.node.reads.linearizable().await?;
                let now = Timestamp::now();
                let requests = self.visible(
                    &id,
                    |m, q| {
                        let pending = q.status(now) == BgStatus::Pending;
                        (!r.pending || pending)
                            && (!r.mine || q.requester == *id)
                            && (!r.to_approve
                                || (pending
                                    && self.may_decide(m, &id, q)
                                    && !q.decisions.iter().any(|d| d.approver == *id)))
                    },
                    false,
                );
                Ok(BreakGlassListReply { requests })
            },
        )
        .await
    }

    async fn show(
        &self,
        req: Request<BreakGlassShowRequest>,
    ) -> Result<Response<BreakGlassRecord>, Status> {
        let path = format!("{ADMIN_PATH}/{}", req.get_ref().id);
        self.run(req, Operation::BreakGlassShow, path, |id, r| async move {
            self.node.reads.linearizable().await?;
            self.visible(&id, |_, q| q.id == r.id, r.proof)
                .pop()
                .ok_or_else(|| {
                    // The same answer whether it does not exist or may not be seen.
                    Refusal::not_found(format!(
                        "no break-glass request {:?} that identity {:?} may see",
                        r.id, &*id
                    ))
                })
        })
        .await
    }
}
