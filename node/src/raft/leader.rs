//! Getting work done by the leader: a command for the log, or a membership change. A node that
//! does not lead hands the work to the one that does (`Raft.Forward`, over mutual TLS), after
//! it has itself authorized the request; the leader's answer, a refusal included, comes back
//! typed.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, ForwardToLeader, RaftError};
use serde::{Deserialize, Serialize};
use tessera_proto::RaftPayload;

use super::batcher::Batcher;
use super::network::Peers;
use super::state_machine::SharedState;
use super::{codec, node_dns_name, NodeId, NodeInfo, Raft};
use crate::error::Refusal;
use crate::state::{Command, Op};

/// Work only the leader can do, sent to it by whichever node received the request (after that
/// node authorized it).
#[derive(Debug, Serialize, Deserialize)]
pub enum LeaderOp {
    Command(Command),
    AddLearner { id: NodeId, node: NodeInfo },
    AddVoter { id: NodeId },
    Remove { id: NodeId },
}

/// The leader's answer: the index the work was committed at, or why the replicated state
/// refused it (then nothing changed).
#[derive(Debug, Serialize, Deserialize)]
pub struct LeaderReply {
    pub index: u64,
    pub error: Option<Refusal>,
}

impl LeaderReply {
    fn into_result(self) -> Result<u64, Refusal> {
        match self.error {
            None => Ok(self.index),
            Some(e) => Err(e),
        }
    }
}

/// This node's way to the leader. Cheap to share.
pub struct Leader {
    id: NodeId,
    raft: Raft,
    /// The replicated state: membership changes must follow the signed membership.
    state: SharedState,
    peers: Arc<Peers>,
    /// Commands for Raft while this node leads, written together when they arrive together.
    commands: Batcher,
}

impl Leader {
    pub fn new(id: NodeId, raft: Raft, peers: Arc<Peers>, state: SharedState) -> Leader {
        Leader {
            commands: Batcher::start(raft.clone(), id),
            id,
            raft,
            state,
            peers,
        }
    }

    /// Whether this node leads, as far as it knows.
    pub fn is_me(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Runs `op` on the leader: here if this node is it, otherwise forwarded. Retries while no
    /// leader is known (an election), for about four seconds.
    pub async fn submit(&self, op: LeaderOp) -> Result<u64, Refusal> {
        let mut last = Refusal::NotLeader {
            leader: None,
            reason: "no leader elected".into(),
        };
        for attempt in 0..20u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            match self.run_here(&op).await {
                Ok(reply) => return reply.into_result(),
                Err(Some(fwd)) => {
                    let (Some(id), Some(node)) = (fwd.leader_id, fwd.leader_node) else {
                        continue;
                    };
                    match self.forward(id, &node, &op).await {
                        Ok(reply) => return reply.into_result(),
                        Err(e) => last = e,
                    }
                }
                Err(None) => {}
            }
        }
        Err(Refusal::NotLeader {
            leader: match &last {
                Refusal::NotLeader { leader, .. } => *leader,
                _ => None,
            },
            reason: format!(
                "the cluster could not commit the change: {last}; check `tessera status`"
            ),
        })
    }

    /// Submits one of this node's own commands (acknowledgements, DKG messages), retrying while
    /// the cluster is unavailable; a refusal by the replicated state is final. Acknowledgements
    /// still unsent when the retries run out are queued again when the node restarts.
    pub async fn submit_own(&self, op: Op) {
        let cmd = Command::by_node(node_dns_name(self.id), op);
        let mut delay = Duration::from_millis(100);
        for _ in 0..30 {
            match self.submit(LeaderOp::Command(cmd.clone())).await {
                Ok(_) => return,
                Err(e @ Refusal::NotLeader { .. }) => {
                    tracing::warn!("command not submitted yet: {e}");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::warn!("command refused: {e}");
                    return;
                }
            }
        }
    }

    async fn forward(
        &self,
        id: NodeId,
        node: &NodeInfo,
        op: &LeaderOp,
    ) -> Result<LeaderReply, Refusal> {
        let not_leader = |reason: String| Refusal::NotLeader {
            leader: Some(id),
            reason,
        };
        let mut client = self.peers.raft(id, &node.addr)?;
        let data = codec::encode(op).map_err(|e| Refusal::internal(e.to_string()))?;
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            client.forward(RaftPayload { data }),
        )
        .await
        .map_err(|_| not_leader(format!("leader {id} did not answer in time")))?
        .map_err(|s| not_leader(format!("leader {id}: {}", s.message())))?;
        codec::decode(&reply.into_inner().data)
            .map_err(|e| not_leader(format!("leader {id} answered something unreadable: {e}")))
    }

    /// Executes a leader operation locally. `Err(Some(_))` says who the leader is;
    /// `Err(None)` means try again (e.g. an election is running).
    pub async fn run_here(
        &self,
        op: &LeaderOp,
    ) -> Result<LeaderReply, Option<ForwardToLeader<NodeId, NodeInfo>>> {
        let committed = |index: u64| LeaderReply { index, error: None };
        let signed = if matches!(op, LeaderOp::Command(_)) {
            Ok(())
        } else {
            let st = self.state.read().expect("state lock");
            super::membership_guard::check_leader_op(
                &st.model.members,
                st.model.genesis.is_some(),
                op,
            )
        };
        if let Err(e) = signed {
            return Ok(LeaderReply {
                index: 0,
                error: Some(e),
            });
        }
        let res = match op {
            LeaderOp::Command(cmd) => {
                // No heartbeat is triggered here to tell the followers of the new commit
                // index: openraft sends it to every follower as soon as it advances (its
                // `ReplicateCommitted`), once per commit rather than once per write.
                let res = self.commands.write(cmd.clone()).await;
                res.map(|(index, r)| LeaderReply {
                    index,
                    error: r.error,
                })
            }
            LeaderOp::AddLearner { id, node } => self
                .raft
                .add_learner(*id, node.clone(), true)
                .await
                .map(|r| committed(r.log_id.index)),
            LeaderOp::AddVoter { id } => self
                .raft
                .change_membership(openraft::ChangeMembers::AddVoterIds([*id].into()), false)
                .await
                .map(|r| committed(r.log_id.index)),
            LeaderOp::Remove { id } => {
                let ids: std::collections::BTreeSet<NodeId> = [*id].into();
                let is_voter = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == *id);
                let change = if is_voter {
                    openraft::ChangeMembers::RemoveVoters(ids)
                } else {
                    openraft::ChangeMembers::RemoveNodes(ids)
                };
                self.raft
                    .change_membership(change, false)
                    .await
                    .map(|r| committed(r.log_id.index))
            }
        };
        match res {
            Ok(r) => Ok(r),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(Some(f)),
            // The previous membership change is not committed yet: wait and try again.
            // ... or the learner just added is not yet in this leader's view: likewise.
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                openraft::error::ChangeMembershipError::InProgress(_)
                | openraft::error::ChangeMembershipError::LearnerNotFound(_),
            ))) => Err(None),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Ok(LeaderReply {
                    index: 0,
                    error: Some(Refusal::rejected(e.to_string())),
                })
            }
            Err(e) => {
                tracing::warn!("leader operation failed: {e}");
                Err(None)
            }
        }
    }
}
