//! The client API (`Tessera` gRPC service). Every call goes through `Api::run`, which takes the
//! caller's identity from its verified certificate, lets the handler authorize and act, then
//! writes the audit line (fsynced) before any answer leaves the node, and records metrics.

mod authz;
mod keys;
mod kv;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tessera_proto::tessera_server::Tessera;
use tessera_proto::*;
use tonic::{Code, Request, Response, Status};

use crate::audit::AuditRecord;
use crate::node::{LeaderOp, Node};
use crate::policy::{Capability, Policy};
use crate::raft::NodeInfo;
use crate::state::{validate_name, AttachTarget, Command, Model, Op};
use crate::tls::peer_identity;

pub use authz::authorize;
pub use keys::NonceStore;

pub struct Api {
    node: Arc<Node>,
}

/// Who called, as the audit log names them.
struct Caller {
    identity: String,
    remote_addr: String,
}

impl Caller {
    /// The caller of a request, and its identity from the verified certificate (or why it has
    /// none that counts).
    fn of<T>(req: &Request<T>) -> (Caller, Result<String, Status>) {
        let remote_addr = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let peer = peer_identity(req).map(|p| p.common_name);
        let identity = peer.as_ref().cloned().unwrap_or_default();
        (
            Caller {
                identity,
                remote_addr,
            },
            peer,
        )
    }

    fn record(
        &self,
        operation: &'static str,
        path: String,
        error: Option<&Status>,
        detail: Option<String>,
    ) -> AuditRecord {
        AuditRecord {
            time: String::new(),
            request_id: format!("{:032x}", rand08::random::<u128>()),
            identity: self.identity.clone(),
            operation: operation.to_string(),
            path,
            outcome: outcome_of(error).to_string(),
            remote_addr: self.remote_addr.clone(),
            error: error.map(|s| s.message().to_string()),
            detail,
        }
    }
}

/// The audit outcome of a request that failed with `error` (or succeeded).
fn outcome_of(error: Option<&Status>) -> &'static str {
    match error {
        None => "ok",
        Some(s) if matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated) => "denied",
        Some(_) => "error",
    }
}

impl Api {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// Identity → handler → audit → metrics. The handler's result is released only after its
    /// audit line is durable; if the audit log cannot be written the caller gets an error.
    async fn run<T, R, F, Fut>(
        &self,
        req: Request<T>,
        operation: &'static str,
        path: String,
        handler: F,
    ) -> Result<Response<R>, Status>
    where
        F: FnOnce(String, T) -> Fut,
        Fut: Future<Output = Result<R, Status>>,
    {
        self.run_detailed(req, operation, path, None, handler).await
    }

    /// `run`, with extra public facts for the audit line.
    async fn run_detailed<T, R, F, Fut>(
        &self,
        req: Request<T>,
        operation: &'static str,
        path: String,
        detail: Option<String>,
        handler: F,
    ) -> Result<Response<R>, Status>
    where
        F: FnOnce(String, T) -> Fut,
        Fut: Future<Output = Result<R, Status>>,
    {
        let started = Instant::now();
        let (caller, result) = Caller::of(&req);
        let result = match result {
            Ok(identity) => handler(identity, req.into_inner()).await,
            Err(e) => Err(e),
        };
        let record = caller.record(operation, path, result.as_ref().err(), detail);
        let audited = self.node.audit(record).await;
        self.observe(operation, result.as_ref().err(), &audited, started);
        audited?;
        result.map(Response::new)
    }

    fn observe(
        &self,
        operation: &'static str,
        error: Option<&Status>,
        audited: &Result<(), Status>,
        started: Instant,
    ) {
        let outcome = match (audited, error) {
            (Err(_), _) => "audit_failed",
            (Ok(()), e) => outcome_of(e),
        };
        self.node
            .metrics
            .observe(operation, outcome, started.elapsed());
    }

    /// Law 2, on this node's own replicated copy of the policies. A grant is answered at once;
    /// a denial is decided again after catching up with the leader, so that a policy change
    /// acknowledged before the request is honoured by every node, not only by the leader.
    async fn authorize(&self, identity: &str, path: &str, cap: Capability) -> Result<(), Status> {
        match authorize(&self.node, identity, path, cap) {
            Ok(()) => Ok(()),
            Err(denied) => match self.node.linearizable().await {
                Ok(()) => authorize(&self.node, identity, path, cap),
                Err(_) => Err(denied),
            },
        }
    }

    /// The small part of the model (groups, policies, settings), without secrets.
    fn model(&self) -> Model {
        self.node
            .state
            .read()
            .expect("state lock")
            .model
            .directory_and_settings()
    }

    /// Checks a command against this node's model (a precise error before anything reaches
    /// the log; apply checks again on every node).
    fn validate(&self, cmd: &Command) -> Result<(), Status> {
        let st = self.node.state.read().expect("state lock");
        let members = crate::state::Members::from_membership(&st.membership);
        st.model
            .validate(cmd, &members, &self.node.config.cluster_id)
            .map_err(Status::invalid_argument)
    }

    async fn submit(&self, identity: String, op: Op) -> Result<WriteReply, Status> {
        let cmd = Command { by: identity, op };
        // Validate against a state at least as new as every acknowledged write, so a follower
        // that lags a little does not refuse a valid change.
        self.node.linearizable().await?;
        self.validate(&cmd)?;
        let index = self.node.on_leader(LeaderOp::Command(cmd)).await?;
        Ok(WriteReply { index })
    }

    /// Refuses a voter set that breaks the topology rule (unless the cluster allows it).
    fn check_voters(&self, regions: Vec<String>) -> Result<(), Status> {
        let settings = self.model().settings;
        if settings.allow_unsafe_topology {
            return Ok(());
        }
        let Some(t) = settings.threshold else {
            return Ok(());
        };
        let counts = crate::state::topology::region_counts(regions.iter().map(String::as_str));
        crate::state::topology::check(&counts, t as usize).map_err(|e| {
            Status::failed_precondition(format!(
                "this membership change would break the topology guarantee: {e}"
            ))
        })
    }

    fn members(&self) -> Vec<NodeEntry> {
        let m = self.node.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: std::collections::BTreeSet<u64> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, n)| NodeEntry {
                id: *id,
                address: n.addr.clone(),
                region: n.region.clone(),
                role: if voters.contains(id) {
                    "voter"
                } else {
                    "learner"
                }
                .into(),
                reachable: false,
                last_applied: 0,
                state: String::new(),
            })
            .collect()
    }
}

fn name_arg(kind: &str, name: &str) -> Result<(), Status> {
    validate_name(kind, name).map_err(Status::invalid_argument)
}

#[tonic::async_trait]
impl Tessera for Api {
    async fn status(&self, req: Request<Empty>) -> Result<Response<StatusReply>, Status> {
        self.run(req, "status", "sys/status".into(), |id, _| async move {
            self.authorize(&id, "sys/status", Capability::Read).await?;
            let me = self.node.local_status().await;
            let mut nodes = self.members();
            let probes = nodes.iter().map(|n| {
                let node = self.node.clone();
                let (nid, addr) = (n.id, n.address.clone());
                async move {
                    if nid == node.id {
                        return Some(node.local_status().await);
                    }
                    let mut c = node.peers.client(nid, &addr).ok()?;
                    tokio::time::timeout(Duration::from_millis(1500), c.node_status(Empty {}))
                        .await
                        .ok()?
                        .ok()
                        .map(|r| r.into_inner())
                }
            });
            let reports = futures::future::join_all(probes).await;
            let mut leader_view = None;
            for (n, r) in nodes.iter_mut().zip(reports) {
                match r {
                    Some(r) => {
                        n.reachable = true;
                        n.last_applied = r.last_applied;
                        n.state = r.state.clone();
                        if r.leader == Some(r.id) {
                            leader_view = Some(r);
                        }
                    }
                    None => n.state = "unreachable".into(),
                }
            }
            let view = leader_view.unwrap_or(me.clone());
            Ok(StatusReply {
                leader: view.leader,
                term: view.term,
                commit_index: view.committed,
                nodes,
                cluster_id: self.node.config.cluster_id.clone(),
                served_by: self.node.id,
            })
        })
        .await
    }

    async fn who_am_i(&self, req: Request<Empty>) -> Result<Response<WhoAmIReply>, Status> {
        self.run(req, "whoami", String::new(), |id, _| async move {
            let model = self.model();
            let mut policies: Vec<String> = model.policies_of(&id).into_iter().collect();
            if self.node.config.root_identities.contains(&id) {
                policies.insert(0, crate::state::ROOT_POLICY.into());
            }
            Ok(WhoAmIReply {
                groups: model.groups_of(&id),
                identity: id,
                policies,
            })
        })
        .await
    }

    async fn list_members(&self, req: Request<Empty>) -> Result<Response<MembersReply>, Status> {
        self.run(
            req,
            "members.list",
            "sys/members".into(),
            |id, _| async move {
                self.authorize(&id, "sys/members", Capability::Read).await?;
                self.node.linearizable().await?;
                Ok(MembersReply {
                    members: self.members(),
                })
            },
        )
        .await
    }

    async fn add_member(
        &self,
        req: Request<AddMemberRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.run(
            req,
            "members.add",
            "sys/members".into(),
            |id, r| async move {
                self.authorize(&id, "sys/members", Capability::Admin)
                    .await?;
                if r.id == 0 {
                    return Err(Status::invalid_argument("--id must be 1 or more"));
                }
                if r.address.parse::<std::net::SocketAddr>().is_err() {
                    return Err(Status::invalid_argument(format!(
                        "--api-addr {:?} must be host:port with an IP host, e.g. 127.0.0.1:7106",
                        r.address
                    )));
                }
                name_arg("region", &r.region)?;
                if self.members().iter().any(|m| m.id == r.id) {
                    return Err(Status::already_exists(format!(
                        "node {} is already a member",
                        r.id
                    )));
                }
                // The new node's public keys, asked of the node itself over mutual TLS (its
                // certificate must name node r.id, so nobody else can answer for it).
                let mut client = self
                    .node
                    .peers
                    .client(r.id, &r.address)
                    .map_err(Status::invalid_argument)?;
                let status =
                    tokio::time::timeout(Duration::from_secs(5), client.node_status(Empty {}))
                        .await
                        .map_err(|_| {
                            Status::unavailable(format!(
                                "node {} at {} did not answer; start it first",
                                r.id, r.address
                            ))
                        })?
                        .map_err(|s| {
                            Status::unavailable(format!(
                                "node {} at {}: {}; start it first",
                                r.id,
                                r.address,
                                s.message()
                            ))
                        })?
                        .into_inner();
                if r.voter {
                    let mut regions: Vec<String> = self
                        .members()
                        .into_iter()
                        .filter(|m| m.role == "voter")
                        .map(|m| m.region)
                        .collect();
                    regions.push(r.region.clone());
                    self.check_voters(regions)?;
                }
                let node = NodeInfo {
                    addr: r.address,
                    region: r.region,
                    sealing_key: status.sealing_key,
                    ack_key: status.ack_key,
                };
                let mut index = self
                    .node
                    .on_leader(LeaderOp::AddLearner { id: r.id, node })
                    .await?;
                if r.voter {
                    index = self.node.on_leader(LeaderOp::AddVoter { id: r.id }).await?;
                }
                Ok(WriteReply { index })
            },
        )
        .await
    }

    async fn remove_member(
        &self,
        req: Request<RemoveMemberRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.run(
            req,
            "members.remove",
            "sys/members".into(),
            |id, r| async move {
                self.authorize(&id, "sys/members", Capability::Admin)
                    .await?;
                if !self.members().iter().any(|m| m.id == r.id) {
                    return Err(Status::not_found(format!("node {} is not a member", r.id)));
                }
                let regions: Vec<String> = self
                    .members()
                    .into_iter()
                    .filter(|m| m.role == "voter" && m.id != r.id)
                    .map(|m| m.region)
                    .collect();
                self.check_voters(regions)?;
                let index = self.node.on_leader(LeaderOp::Remove { id: r.id }).await?;
                Ok(WriteReply { index })
            },
        )
        .await
    }

    async fn write_group(
        &self,
        req: Request<GroupWriteRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = format!("sys/groups/{}", req.get_ref().name);
        self.run(req, "group.write", path.clone(), |id, r| async move {
            name_arg("group", &r.name)?;
            let exists = self.model().groups.contains_key(&r.name);
            let cap = if exists {
                Capability::Update
            } else {
                Capability::Create
            };
            self.authorize(&id, &path, cap).await?;
            let op = Op::PutGroup {
                name: r.name,
                members: r.members.into_iter().collect(),
            };
            self.submit(id, op).await
        })
        .await
    }

    async fn read_group(&self, req: Request<NameRequest>) -> Result<Response<Group>, Status> {
        let path = format!("sys/groups/{}", req.get_ref().name);
        self.run(req, "group.read", path.clone(), |id, r| async move {
            self.authorize(&id, &path, Capability::Read).await?;
            self.node.linearizable().await?;
            let model = self.model();
            let members = model
                .groups
                .get(&r.name)
                .ok_or_else(|| Status::not_found(format!("group {:?} does not exist", r.name)))?;
            Ok(Group {
                members: members.iter().cloned().collect(),
                policies: model
                    .group_policies
                    .get(&r.name)
                    .map(|p| p.iter().cloned().collect())
                    .unwrap_or_default(),
                name: r.name,
            })
        })
        .await
    }

    async fn list_groups(&self, req: Request<Empty>) -> Result<Response<ListReply>, Status> {
        self.run(req, "group.list", "sys/groups".into(), |id, _| async move {
            self.authorize(&id, "sys/groups", Capability::List).await?;
            self.node.linearizable().await?;
            Ok(ListReply {
                names: self.model().groups.keys().cloned().collect(),
            })
        })
        .await
    }

    async fn delete_group(
        &self,
        req: Request<NameRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = format!("sys/groups/{}", req.get_ref().name);
        self.run(req, "group.delete", path.clone(), |id, r| async move {
            self.authorize(&id, &path, Capability::Delete).await?;
            self.submit(id, Op::DeleteGroup { name: r.name }).await
        })
        .await
    }

    async fn write_policy(
        &self,
        req: Request<PolicyWriteRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = format!("sys/policies/{}", req.get_ref().name);
        self.run(req, "policy.write", path.clone(), |id, r| async move {
            name_arg("policy", &r.name)?;
            let exists = self.model().policies.contains_key(&r.name);
            let cap = if exists {
                Capability::Update
            } else {
                Capability::Create
            };
            self.authorize(&id, &path, cap).await?;
            Policy::parse(&r.text)
                .map_err(|e| Status::invalid_argument(format!("policy {:?}: {e}", r.name)))?;
            self.submit(
                id,
                Op::PutPolicy {
                    name: r.name,
                    text: r.text,
                },
            )
            .await
        })
        .await
    }

    async fn read_policy(
        &self,
        req: Request<NameRequest>,
    ) -> Result<Response<PolicyReply>, Status> {
        let path = format!("sys/policies/{}", req.get_ref().name);
        self.run(req, "policy.read", path.clone(), |id, r| async move {
            self.authorize(&id, &path, Capability::Read).await?;
            self.node.linearizable().await?;
            let text = if r.name == crate::state::ROOT_POLICY {
                "# built in: every capability on every path\npath \"*\" {\n  capabilities = [\"create\", \"read\", \"update\", \"delete\", \"list\", \"sign\", \"approve\", \"admin\"]\n}\n".to_string()
            } else {
                self.model()
                    .policies
                    .get(&r.name)
                    .cloned()
                    .ok_or_else(|| Status::not_found(format!("policy {:?} does not exist", r.name)))?
            };
            Ok(PolicyReply { name: r.name, text })
        })
        .await
    }

    async fn list_policies(&self, req: Request<Empty>) -> Result<Response<ListReply>, Status> {
        self.run(
            req,
            "policy.list",
            "sys/policies".into(),
            |id, _| async move {
                self.authorize(&id, "sys/policies", Capability::List)
                    .await?;
                self.node.linearizable().await?;
                let mut names = vec![crate::state::ROOT_POLICY.to_string()];
                names.extend(self.model().policies.keys().cloned());
                Ok(ListReply { names })
            },
        )
        .await
    }

    async fn delete_policy(
        &self,
        req: Request<NameRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = format!("sys/policies/{}", req.get_ref().name);
        self.run(req, "policy.delete", path.clone(), |id, r| async move {
            self.authorize(&id, &path, Capability::Delete).await?;
            self.submit(id, Op::DeletePolicy { name: r.name }).await
        })
        .await
    }

    async fn attach_policy(
        &self,
        req: Request<PolicyAttachRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = format!("sys/policies/{}", req.get_ref().policy);
        self.run(req, "policy.attach", path.clone(), |id, r| async move {
            // Granting a policy is granting its power: it takes `admin` on the policy.
            self.authorize(&id, &path, Capability::Admin).await?;
            let target = match (r.group.is_empty(), r.identity.is_empty()) {
                (false, true) => AttachTarget::Group(r.group),
                (true, false) => AttachTarget::Identity(r.identity),
                _ => {
                    return Err(Status::invalid_argument(
                        "name exactly one of --group or --identity",
                    ))
                }
            };
            self.submit(
                id,
                Op::Attach {
                    policy: r.policy,
                    target,
                    detach: r.detach,
                },
            )
            .await
        })
        .await
    }

    async fn topology(&self, req: Request<Empty>) -> Result<Response<TopologyReply>, Status> {
        self.do_topology(req).await
    }

    async fn kv_put(&self, req: Request<KvPutRequest>) -> Result<Response<KvPutReply>, Status> {
        self.do_kv_put(req).await
    }

    async fn kv_metadata(
        &self,
        req: Request<PathRequest>,
    ) -> Result<Response<KvMetadataReply>, Status> {
        self.do_kv_metadata(req).await
    }

    async fn kv_version(
        &self,
        req: Request<KvVersionRequest>,
    ) -> Result<Response<KvVersionReply>, Status> {
        self.do_kv_version(req).await
    }

    async fn release_shares(
        &self,
        req: Request<ReleaseSharesRequest>,
    ) -> Result<Response<ReleaseSharesReply>, Status> {
        self.do_release_shares(req).await
    }

    async fn kv_list(&self, req: Request<PathRequest>) -> Result<Response<ListReply>, Status> {
        self.do_kv_list(req).await
    }

    async fn kv_delete(
        &self,
        req: Request<KvVersionsRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.do_kv_delete(req).await
    }

    async fn kv_undelete(
        &self,
        req: Request<KvVersionsRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.do_kv_undelete(req).await
    }

    async fn kv_destroy(
        &self,
        req: Request<KvVersionsRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.do_kv_destroy(req).await
    }

    async fn kv_metadata_put(
        &self,
        req: Request<KvMetadataPutRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.do_kv_metadata_put(req).await
    }

    async fn kv_metadata_delete(
        &self,
        req: Request<PathRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.do_kv_metadata_delete(req).await
    }

    async fn report_bad_share(
        &self,
        req: Request<BadShareReport>,
    ) -> Result<Response<Empty>, Status> {
        self.do_report_bad_share(req).await
    }

    async fn config_set(
        &self,
        req: Request<ConfigSetRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.do_config_set(req).await
    }

    async fn shares(&self, req: Request<Empty>) -> Result<Response<SharesReply>, Status> {
        self.do_shares(req).await
    }

    async fn key_create(
        &self,
        req: Request<KeyCreateRequest>,
    ) -> Result<Response<KeyInfo>, Status> {
        self.do_key_create(req).await
    }

    async fn key_read(&self, req: Request<NameRequest>) -> Result<Response<KeyInfo>, Status> {
        self.do_key_read(req).await
    }

    async fn key_list(&self, req: Request<Empty>) -> Result<Response<KeyListReply>, Status> {
        self.do_key_list(req).await
    }

    async fn sign_commit(
        &self,
        req: Request<SignCommitRequest>,
    ) -> Result<Response<SignCommitReply>, Status> {
        self.do_sign_commit(req).await
    }

    async fn sign_shares(
        &self,
        req: Request<SignSharesRequest>,
    ) -> Result<Response<SignSharesReply>, Status> {
        self.do_sign_shares(req).await
    }

    async fn ssh_role_write(
        &self,
        req: Request<SshRoleRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.do_ssh_role_write(req).await
    }

    async fn report_cheater(&self, req: Request<CheaterReport>) -> Result<Response<Empty>, Status> {
        self.do_report_cheater(req).await
    }

    async fn snapshot_save(&self, req: Request<Empty>) -> Result<Response<SnapshotData>, Status> {
        self.run(
            req,
            "snapshot.save",
            "sys/snapshot".into(),
            |id, _| async move {
                self.authorize(&id, "sys/snapshot", Capability::Admin)
                    .await?;
                self.node.linearizable().await?;
                let data = serde_json::to_vec_pretty(&SnapshotFile {
                    format: SNAPSHOT_FORMAT.into(),
                    cluster_id: self.node.config.cluster_id.clone(),
                    model: self.model().directory(),
                })
                .map_err(|e| Status::internal(e.to_string()))?;
                Ok(SnapshotData { data })
            },
        )
        .await
    }

    async fn snapshot_restore(
        &self,
        req: Request<SnapshotData>,
    ) -> Result<Response<WriteReply>, Status> {
        self.run(
            req,
            "snapshot.restore",
            "sys/snapshot".into(),
            |id, r| async move {
                self.authorize(&id, "sys/snapshot", Capability::Admin)
                    .await?;
                let file: SnapshotFile = serde_json::from_slice(&r.data).map_err(|e| {
                    Status::invalid_argument(format!("not a Tessera snapshot file: {e}"))
                })?;
                if file.format != SNAPSHOT_FORMAT {
                    return Err(Status::invalid_argument(format!(
                        "snapshot format {:?} is not supported (expected {SNAPSHOT_FORMAT:?})",
                        file.format
                    )));
                }
                self.submit(id, Op::Restore { model: file.model }).await
            },
        )
        .await
    }
}

const SNAPSHOT_FORMAT: &str = "tessera-snapshot-v1";

/// What `tessera operator snapshot save` writes: the replicated data model (no membership, no
/// secrets: only public metadata lives in the model).
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotFile {
    format: String,
    cluster_id: String,
    model: Model,
}
