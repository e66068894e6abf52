//! The `Sys` service: the cluster itself — status, identity, topology and held shares,
//! members, settings, groups, policies and snapshots. Each handler authorizes on this node's
//! own replicated state (law 2) and is audited before it answers (law 4).

mod members;

use std::time::Duration;

use tessera_proto::sys_server::Sys;
use tessera_proto::*;
use tonic::{Request, Response, Status};

use super::call::name_arg;
use super::Api;
use crate::audit::Operation;
use crate::error::Refusal;
use crate::policy::{Capability, Policy};
use crate::raft::leader::LeaderOp;
use crate::state::intent::{self, SnapshotFile, SNAPSHOT_FORMAT};
use crate::state::{topology, Op};

impl Api {
    /// What a compromised gateway would answer instead (test builds only; otherwise `t` itself).
    fn lie_about(&self, mut t: TopologyReply) -> TopologyReply {
        match crate::byzantine::lying_topology() {
            None => {}
            Some(crate::byzantine::Lie::Keys) => {
                let own = hex::decode(self.node.vault.public_keys().0).unwrap_or_default();
                for h in &mut t.holders {
                    h.sealing_key = own.clone();
                }
            }
            Some(crate::byzantine::Lie::Threshold) => t.threshold = 1,
        }
        t
    }
}

#[tonic::async_trait]
impl Sys for Api {
    async fn status(&self, req: Request<Empty>) -> Result<Response<StatusReply>, Status> {
        self.run(
            req,
            Operation::Status,
            "sys/status".into(),
            |id, _| async move {
                self.authorize(&id, "sys/status", Capability::Read).await?;
                let me = self.node.local_status().await;
                let (nodes, leader_view) = self.probe_members().await;
                let view = leader_view.unwrap_or(me.clone());
                Ok(StatusReply {
                    leader: view.leader,
                    term: view.term,
                    commit_index: view.committed,
                    nodes,
                    cluster_id: self.node.config.cluster_id.clone(),
                    served_by: self.node.id,
                })
            },
        )
        .await
    }

    async fn who_am_i(&self, req: Request<Empty>) -> Result<Response<WhoAmIReply>, Status> {
        self.run(req, Operation::Whoami, String::new(), |id, _| async move {
            let model = self.model();
            let mut policies: Vec<String> = model.policies_of(&id).into_iter().collect();
            if model.roots.contains(&*id) {
                policies.insert(0, crate::state::ROOT_POLICY.into());
            }
            Ok(WhoAmIReply {
                groups: model.groups_of(&id),
                identity: id.to_string(),
                policies,
                cluster_id: self.node.config.cluster_id.clone(),
            })
        })
        .await
    }

    async fn topology(&self, req: Request<Empty>) -> Result<Response<TopologyReply>, Status> {
        // Public data (who holds shares, their addresses, regions and public keys): any client
        // with a certificate from the cluster CA may see it, and it is audited like everything.
        self.run(
            req,
            Operation::Topology,
            "sys/topology".into(),
            |_id, _| async move {
                self.node.reads.linearizable().await?;
                let members = self.members_now();
                let settings = self.model().settings;
                let counts = members.region_counts();
                let t = settings.threshold.unwrap_or(0);
                let a = topology::assess(&counts, t as usize);
                let ids: Vec<u64> = members.voters.keys().copied().collect();
                Ok(TopologyReply {
                    cluster_id: self.node.config.cluster_id.clone(),
                    threshold: t,
                    acks_required: settings.acks_required(ids.len()) as u32,
                    holders: self.holders(&ids),
                    region: self.node.config.region.clone(),
                    allow_unsafe_topology: settings.allow_unsafe_topology,
                    survives_region_loss: a.survives_region_loss,
                    no_region_alone: a.no_region_alone,
                    holders_per_region: counts.into_iter().map(|(r, c)| (r, c as u32)).collect(),
                    leader: self
                        .node
                        .raft
                        .metrics()
                        .borrow()
                        .current_leader
                        .unwrap_or(0),
                    served_by: self.node.id,
                })
                .map(|t| self.lie_about(t))
            },
        )
        .await
    }

    async fn config_set(
        &self,
        req: Request<ConfigSetRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.run(
            req,
            Operation::ConfigSet,
            "sys/config".into(),
            |id, r| async move {
                self.authorize(&id, "sys/config", Capability::Admin).await?;
                let op = intent::config_set(r)?;
                self.submit(id, op).await
            },
        )
        .await
    }

    async fn shares(&self, req: Request<Empty>) -> Result<Response<SharesReply>, Status> {
        self.run(
            req,
            Operation::SharesList,
            "sys/shares".into(),
            |id, _| async move {
                self.authorize(&id, "sys/shares", Capability::Admin).await?;
                // Report at least every acknowledged write: a holder stores its share when it
                // applies a write, which can follow the write's answer by a round trip. A node
                // cut off from the leader reports what it holds now.
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), self.node.reads.linearizable())
                        .await;
                let st = self.node.state.read().expect("state lock");
                let shares = self
                    .node
                    .vault
                    .list()
                    .into_iter()
                    .map(|(path, version)| {
                        let index = st
                            .model
                            .secrets
                            .get(&path)
                            .and_then(|e| e.versions.get(&version))
                            .and_then(|v| v.share_index(self.node.id))
                            .unwrap_or(0);
                        HeldShare {
                            path,
                            version,
                            share_index: index as u32,
                        }
                    })
                    .collect();
                // Signing-key shares appear as `keys/NAME`, version = generation, index = node id.
                let mut shares: Vec<HeldShare> = shares;
                for (name, attempt) in self.node.vault.key_shares() {
                    shares.push(HeldShare {
                        path: format!("keys/{name}"),
                        version: attempt,
                        share_index: self.node.id as u32,
                    });
                }
                Ok(SharesReply {
                    node_id: self.node.id,
                    shares,
                })
            },
        )
        .await
    }

    async fn list_members(&self, req: Request<Empty>) -> Result<Response<MembersReply>, Status> {
        self.run(
            req,
            Operation::MembersList,
            "sys/members".into(),
            |id, _| async move {
                self.authorize(&id, "sys/members", Capability::Read).await?;
                self.node.reads.linearizable().await?;
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
            Operation::MembersAdd,
            "sys/members".into(),
            |id, r| async move {
                self.authorize(&id, "sys/members", Capability::Admin)
                    .await?;
                if r.id == 0 {
                    return Err(Refusal::invalid("--id must be 1 or more"));
                }
                if r.address.parse::<std::net::SocketAddr>().is_err() {
                    return Err(Refusal::invalid(format!(
                        "--api-addr {:?} must be host:port with an IP host, e.g. 127.0.0.1:7106",
                        r.address
                    )));
                }
                if !r.region.is_empty() {
                    name_arg("region", &r.region)?;
                }
                self.node.reads.linearizable().await?;
                let signed = self.members_now().all.get(&r.id).cloned();
                let in_raft = self.in_raft(r.id);
                let node = match signed {
                    // Signed earlier, and Raft did not take it in then (the leader failed
                    // between the two steps): finish the change as it was signed.
                    Some(node) if !in_raft && node.addr == r.address => node,
                    Some(_) => {
                        return Err(Refusal::already_exists(format!(
                            "node {} is already a member",
                            r.id
                        )))
                    }
                    None => {
                        // The keys and region are the ones the CA attested in the joiner's
                        // certificate, which every node checks again on apply.
                        let certificate = self.keys_of_joiner(r.id, &r.address).await?;
                        let op = Op::MemberAdd {
                            id: r.id,
                            addr: r.address.clone(),
                            region: r.region.clone(),
                            voter: r.voter,
                            certificate,
                        };
                        let applied = self.submit(id, op).await?.index;
                        self.node
                            .reads
                            .wait_applied(applied, Duration::from_secs(5))
                            .await?;
                        self.members_now().all.get(&r.id).cloned().ok_or_else(|| {
                            Refusal::unavailable(
                                "the signed membership change is not applied here yet; try again",
                            )
                        })?
                    }
                };
                // Raft's own membership follows the signed one (`raft::membership_guard`).
                let mut index = self
                    .node
                    .leader
                    .submit(LeaderOp::AddLearner { id: r.id, node })
                    .await?;
                if r.voter {
                    index = self
                        .node
                        .leader
                        .submit(LeaderOp::AddVoter { id: r.id })
                        .await?;
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
            Operation::MembersRemove,
            "sys/members".into(),
            |id, r| async move {
                self.authorize(&id, "sys/members", Capability::Admin)
                    .await?;
                self.node.reads.linearizable().await?;
                let signed = self.members_now().all.contains_key(&r.id);
                if !signed && !self.in_raft(r.id) {
                    return Err(Refusal::not_found(format!("node {} is not a member", r.id)));
                }
                if signed {
                    let applied = self.submit(id, Op::MemberRemove { id: r.id }).await?.index;
                    self.node
                        .reads
                        .wait_applied(applied, Duration::from_secs(5))
                        .await?;
                }
                // Then Raft's membership follows (also when an earlier removal was signed and
                // Raft did not follow it then).
                let index = self
                    .node
                    .leader
                    .submit(LeaderOp::Remove { id: r.id })
                    .await?;
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
        self.run(
            req,
            Operation::GroupWrite,
            path.clone(),
            |id, r| async move {
                name_arg("group", &r.name)?;
                // What the group carries is read from a state at least as new as every
                // acknowledged change: an attachment made just before must count.
                self.node.reads.linearizable().await?;
                let exists = self.model().groups.contains_key(&r.name);
                let cap = if exists {
                    Capability::Update
                } else {
                    Capability::Create
                };
                self.authorize(&id, &path, cap).await?;
                // Whoever sets a group's members hands them every policy the group carries: that
                // takes `admin` on each of those policies, as attaching it would.
                let carried = self
                    .model()
                    .group_policies
                    .get(&r.name)
                    .cloned()
                    .unwrap_or_default();
                for policy in carried {
                    self.authorize(&id, &format!("sys/policies/{policy}"), Capability::Admin)
                        .await?;
                }
                let op = Op::PutGroup {
                    name: r.name,
                    members: r.members.into_iter().collect(),
                };
                self.submit(id, op).await
            },
        )
        .await
    }

    async fn read_group(&self, req: Request<NameRequest>) -> Result<Response<Group>, Status> {
        let path = format!("sys/groups/{}", req.get_ref().name);
        self.run(
            req,
            Operation::GroupRead,
            path.clone(),
            |id, r| async move {
                self.authorize(&id, &path, Capability::Read).await?;
                self.node.reads.linearizable().await?;
                let model = self.model();
                let members = model.groups.get(&r.name).ok_or_else(|| {
                    Refusal::not_found(format!("group {:?} does not exist", r.name))
                })?;
                Ok(Group {
                    members: members.iter().cloned().collect(),
                    policies: model
                        .group_policies
                        .get(&r.name)
                        .map(|p| p.iter().cloned().collect())
                        .unwrap_or_default(),
                    name: r.name,
                })
            },
        )
        .await
    }

    async fn list_groups(&self, req: Request<Empty>) -> Result<Response<ListReply>, Status> {
        self.run(
            req,
            Operation::GroupList,
            "sys/groups".into(),
            |id, _| async move {
                self.authorize(&id, "sys/groups", Capability::List).await?;
                self.node.reads.linearizable().await?;
                Ok(ListReply {
                    names: self.model().groups.keys().cloned().collect(),
                })
            },
        )
        .await
    }

    async fn delete_group(
        &self,
        req: Request<GroupDeleteRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = format!("sys/groups/{}", req.get_ref().name);
        self.run(
            req,
            Operation::GroupDelete,
            path.clone(),
            |id, r| async move {
                self.authorize(&id, &path, Capability::Delete).await?;
                self.submit(
                    id,
                    Op::DeleteGroup {
                        name: r.name,
                        grant: crate::state::intent::named_grant(r.grant),
                    },
                )
                .await
            },
        )
        .await
    }

    async fn write_policy(
        &self,
        req: Request<PolicyWriteRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = format!("sys/policies/{}", req.get_ref().name);
        self.run(
            req,
            Operation::PolicyWrite,
            path.clone(),
            |id, r| async move {
                name_arg("policy", &r.name)?;
                let exists = self.model().policies.contains_key(&r.name);
                let cap = if exists {
                    Capability::Update
                } else {
                    Capability::Create
                };
                self.authorize(&id, &path, cap).await?;
                crate::state::ops::policy::parse_text(&r.name, &r.text)?;
                self.submit(
                    id,
                    Op::PutPolicy {
                        name: r.name,
                        text: r.text,
                        grant: crate::state::intent::named_grant(r.grant),
                    },
                )
                .await
            },
        )
        .await
    }

    async fn read_policy(
        &self,
        req: Request<NameRequest>,
    ) -> Result<Response<PolicyReply>, Status> {
        let path = format!("sys/policies/{}", req.get_ref().name);
        self.run(
            req,
            Operation::PolicyRead,
            path.clone(),
            |id, r| async move {
                self.authorize(&id, &path, Capability::Read).await?;
                self.node.reads.linearizable().await?;
                let text = if r.name == crate::state::ROOT_POLICY {
                    Policy::root().to_hcl("built in: every capability on every path")
                } else {
                    self.model().policies.get(&r.name).cloned().ok_or_else(|| {
                        Refusal::not_found(format!("policy {:?} does not exist", r.name))
                    })?
                };
                Ok(PolicyReply { name: r.name, text })
            },
        )
        .await
    }

    async fn list_policies(&self, req: Request<Empty>) -> Result<Response<ListReply>, Status> {
        self.run(
            req,
            Operation::PolicyList,
            "sys/policies".into(),
            |id, _| async move {
                self.authorize(&id, "sys/policies", Capability::List)
                    .await?;
                self.node.reads.linearizable().await?;
                let mut names = vec![crate::state::ROOT_POLICY.to_string()];
                names.extend(self.model().policies.keys().cloned());
                Ok(ListReply { names })
            },
        )
        .await
    }

    async fn delete_policy(
        &self,
        req: Request<PolicyDeleteRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = format!("sys/policies/{}", req.get_ref().name);
        self.run(
            req,
            Operation::PolicyDelete,
            path.clone(),
            |id, r| async move {
                self.authorize(&id, &path, Capability::Delete).await?;
                self.submit(
                    id,
                    Op::DeletePolicy {
                        name: r.name,
                        grant: crate::state::intent::named_grant(r.grant),
                    },
                )
                .await
            },
        )
        .await
    }

    async fn attach_policy(
        &self,
        req: Request<PolicyAttachRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = format!("sys/policies/{}", req.get_ref().policy);
        self.run(
            req,
            Operation::PolicyAttach,
            path.clone(),
            |id, r| async move {
                // Granting a policy is granting its power: it takes `admin` on the policy.
                self.authorize(&id, &path, Capability::Admin).await?;
                let op = intent::attach(r)?;
                self.submit(id, op).await
            },
        )
        .await
    }

    async fn revoke(&self, req: Request<RevokeRequest>) -> Result<Response<WriteReply>, Status> {
        self.run(
            req,
            Operation::Revoke,
            "sys/revocations".into(),
            |id, r| async move {
                self.authorize(&id, "sys/revocations", Capability::Admin)
                    .await?;
                let op = intent::revoke(r)?;
                let written = self.submit(id, op).await?;
                // Each node refuses from the index where it applies the revocation: answer once
                // every reachable member has, so that the next request anywhere is refused.
                self.wait_members_applied(written.index, Duration::from_secs(5))
                    .await;
                Ok(written)
            },
        )
        .await
    }

    async fn set_roots(&self, req: Request<RootsRequest>) -> Result<Response<WriteReply>, Status> {
        self.run(
            req,
            Operation::RootsSet,
            "sys/roots".into(),
            |id, r| async move {
                self.authorize(&id, "sys/roots", Capability::Admin).await?;
                let op = Op::SetRoots {
                    roots: r.identities.into_iter().collect(),
                };
                self.submit(id, op).await
            },
        )
        .await
    }

    async fn list_roots(&self, req: Request<Empty>) -> Result<Response<ListReply>, Status> {
        self.run(
            req,
            Operation::RootsList,
            "sys/roots".into(),
            |id, _| async move {
                self.authorize(&id, "sys/roots", Capability::Read).await?;
                self.node.reads.linearizable().await?;
                Ok(ListReply {
                    names: self.model().roots.into_iter().collect(),
                })
            },
        )
        .await
    }

    async fn list_revocations(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<RevocationsReply>, Status> {
        self.run(
            req,
            Operation::RevocationsList,
            "sys/revocations".into(),
            |id, _| async move {
                self.authorize(&id, "sys/revocations", Capability::Read)
                    .await?;
                self.node.reads.linearizable().await?;
                let r = self.model().revocations;
                Ok(RevocationsReply {
                    identities: r.identities.into_iter().collect(),
                    serials: r.serials.into_iter().collect(),
                    nodes: r.nodes.into_iter().collect(),
                })
            },
        )
        .await
    }

    async fn snapshot_save(&self, req: Request<Empty>) -> Result<Response<SnapshotData>, Status> {
        self.run(
            req,
            Operation::SnapshotSave,
            "sys/snapshot".into(),
            |id, _| async move {
                self.authorize(&id, "sys/snapshot", Capability::Admin)
                    .await?;
                self.node.reads.linearizable().await?;
                let data = serde_json::to_vec_pretty(&SnapshotFile {
                    format: SNAPSHOT_FORMAT.into(),
                    cluster_id: self.node.config.cluster_id.clone(),
                    model: self.model().directory(),
                })
                .map_err(|e| Refusal::internal(e.to_string()))?;
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
            Operation::SnapshotRestore,
            "sys/snapshot".into(),
            |id, r| async move {
                self.authorize(&id, "sys/snapshot", Capability::Admin)
                    .await?;
                let op = intent::restore(r)?;
                self.submit(id, op).await
            },
        )
        .await
    }
}
