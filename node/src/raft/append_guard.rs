//! What a follower checks before it appends what a leader sent, and before it votes.
//!
//! # Security
//!
//! Raft tolerates crashes, not lies, and a few things take effect at append, before any
//! command is applied and checked:
//! - **Membership entries.** openraft acts on one the moment it is appended; each is judged
//!   against the signed membership first (`raft::membership_guard`).
//! - **Time.** The leader stamps each entry with its clock (`Command::stamp`), and that time is
//!   the one every node applies against. An entry not yet committed is refused if its time is
//!   more than `ENTRY_SKEW_SECS` from this node's clock, so no single clock (the leader's
//!   included) can move replicated time; an entry already committed was accepted by a
//!   majority and is taken as it is. When the clocks disagree, the other voters' clocks decide
//!   whose is wrong (`raft::clock`), and a leader found wrong is not followed, nor voted for,
//!   for a while, so that the others elect a leader with a good clock.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::RaftError;
use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};
use openraft::{Entry, EntryPayload};
use tessera_proto::Empty;

use super::clock::{self, Verdict, DISTRUST, ENTRY_SKEW_SECS};
use super::membership_guard;
use super::network::Peers;
use super::reads::Reads;
use super::state_machine::SharedState;
use super::{NodeId, Raft, TypeConfig};
use crate::error::Refusal;

/// The checks a follower makes on what leaders send it. Cheap to share.
pub struct AppendGuard {
    id: NodeId,
    raft: Raft,
    state: SharedState,
    reads: Arc<Reads>,
    peers: Arc<Peers>,
    clocks: Mutex<Clocks>,
}

#[derive(Default)]
struct Clocks {
    /// Leaders (and candidates) whose clock this node judged wrong, until when.
    distrusted: HashMap<NodeId, Instant>,
    /// When this node last asked the other voters for their clocks.
    last_judged: Option<Instant>,
}

type Appended = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>;

fn is_membership(e: &Entry<TypeConfig>) -> bool {
    matches!(e.payload, EntryPayload::Membership(_))
}

impl AppendGuard {
    pub fn new(
        id: NodeId,
        raft: Raft,
        state: SharedState,
        reads: Arc<Reads>,
        peers: Arc<Peers>,
    ) -> AppendGuard {
        AppendGuard {
            id,
            raft,
            state,
            reads,
            peers,
            clocks: Mutex::new(Clocks::default()),
        }
    }

    /// Refuses a node whose clock this node judged wrong (see the module's `# Security`).
    pub fn trusts(&self, node: NodeId) -> Result<(), Refusal> {
        let mut c = self.clocks.lock().expect("clocks");
        match c.distrusted.get(&node) {
            Some(until) if *until > Instant::now() => Err(Refusal::rejected(format!(
                "node {node}'s clock is off (judged against the other voters); this node neither follows nor votes for it for now"
            ))),
            Some(_) => {
                c.distrusted.remove(&node);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Appends what `leader` sent, after the checks in the module's `# Security`.
    pub async fn append(
        &self,
        leader: NodeId,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> Result<Appended, Refusal> {
        self.trusts(leader)?;
        self.check_times(leader, &rpc).await?;
        if !rpc.entries.iter().any(is_membership) {
            return Ok(self.raft.append_entries(rpc).await);
        }
        self.append_with_membership(rpc).await
    }

    /// Every entry this leader stamped and not yet committed carries a time close to this
    /// node's clock. An entry of an earlier term was stamped by an earlier leader, and checked
    /// when it was first appended (by this leader too, then a follower): a new leader commits
    /// it only after its own first entry, so its age says nothing about the clock of the
    /// leader that sends it now.
    async fn check_times(
        &self,
        leader: NodeId,
        rpc: &AppendEntriesRequest<TypeConfig>,
    ) -> Result<(), Refusal> {
        let committed = rpc.leader_commit.map(|c| c.index);
        let term = rpc.vote.leader_id().get_term();
        let mine = clock::now_millis();
        let off = rpc.entries.iter().find_map(|e| {
            if committed.is_some_and(|c| e.log_id.index <= c)
                || e.log_id.leader_id.get_term() != term
            {
                return None;
            }
            let EntryPayload::Normal(cmd) = &e.payload else {
                return None;
            };
            let at = cmd.at.unix_millis();
            (at.abs_diff(mine) > ENTRY_SKEW_SECS * 1000).then_some((e.log_id.index, at))
        });
        let Some((index, at)) = off else {
            return Ok(());
        };
        let ahead = (at as i128 - mine as i128) / 1000;
        tracing::warn!(
            index,
            leader,
            "refused an entry stamped {ahead:+} s from this node's clock"
        );
        self.judge(leader, mine, at).await;
        Err(Refusal::rejected(format!(
            "entry {index} is stamped {ahead:+} s from node {}'s clock (at most {ENTRY_SKEW_SECS} s)",
            self.id
        )))
    }

    /// Asks the other voters for their clocks (at most every few seconds) and distrusts the
    /// leader if most of them side with this node.
    async fn judge(&self, leader: NodeId, mine: u64, leader_at: u64) {
        {
            let mut c = self.clocks.lock().expect("clocks");
            if c.last_judged
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
            {
                return;
            }
            c.last_judged = Some(Instant::now());
        }
        let voters: Vec<(NodeId, String)> = {
            let st = self.state.read().expect("state lock");
            st.model
                .members
                .voters
                .iter()
                .filter(|(id, _)| **id != self.id && **id != leader)
                .map(|(id, n)| (*id, n.addr.clone()))
                .collect()
        };
        let asks = voters.into_iter().map(|(id, addr)| {
            let peers = self.peers.clone();
            async move {
                let mut c = peers.raft(id, &addr).ok()?;
                let sent = clock::now_millis();
                let r = tokio::time::timeout(Duration::from_millis(1500), c.node_status(Empty {}))
                    .await
                    .ok()?
                    .ok()?
                    .into_inner();
                // Their clock as of now, give or take half the round trip.
                let elapsed = clock::now_millis().saturating_sub(sent);
                (r.unix_millis > 0).then_some(r.unix_millis + elapsed / 2)
            }
        });
        let others: Vec<u64> = futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        let now = clock::now_millis();
        match clock::judge(now, leader_at + now.saturating_sub(mine), &others) {
            Verdict::LeaderIsOff => {
                tracing::warn!(
                    leader,
                    "the leader's clock is off by {:+} s, and the other voters' clocks agree with this node's: no longer following it",
                    (leader_at as i128 - mine as i128) / 1000
                );
                self.clocks
                    .lock()
                    .expect("clocks")
                    .distrusted
                    .insert(leader, Instant::now() + DISTRUST);
            }
            Verdict::MineIsOff => tracing::error!(
                leader,
                "this node's clock is off by {:+} s from the leader's and the other voters': fix it (NTP); until then it takes entries only once they are committed",
                (mine as i128 - leader_at as i128) / 1000
            ),
        }
    }

    /// Appends in parts, judging each membership entry once what is committed before it has
    /// applied (see `raft::membership_guard`).
    async fn append_with_membership(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> Result<Appended, Refusal> {
        let AppendEntriesRequest {
            vote,
            mut prev_log_id,
            leader_commit,
            entries,
        } = rpc;
        let mut entries = entries.into_iter().peekable();
        loop {
            let mut part = Vec::new();
            while let Some(e) = entries.next_if(|e| !is_membership(e)) {
                part.push(e);
            }
            let next = entries.next();
            if !part.is_empty() || next.is_none() {
                let last = part.last().map(|e| e.log_id);
                let resp = self.part(vote, prev_log_id, leader_commit, part).await;
                match (&resp, &next) {
                    (Ok(AppendEntriesResponse::Success), Some(_)) => {}
                    _ => return Ok(resp),
                }
                prev_log_id = last.or(prev_log_id);
            }
            let Some(entry) = next else {
                unreachable!("returned above when no membership entry is left")
            };
            // The signed command a membership change follows was committed before the change
            // was proposed: apply what is committed up to here, then judge.
            let upto = match (leader_commit, prev_log_id) {
                (Some(c), Some(p)) => c.index.min(p.index),
                _ => 0,
            };
            let _ = self.reads.wait_applied(upto, Duration::from_secs(2)).await;
            self.check_membership(&entry).await?;
            let id = entry.log_id;
            let resp = self
                .part(vote, prev_log_id, leader_commit, vec![entry])
                .await;
            if !matches!(resp, Ok(AppendEntriesResponse::Success)) || entries.peek().is_none() {
                return Ok(resp);
            }
            prev_log_id = Some(id);
        }
    }

    /// Appends one part of what the leader sent, after `prev_log_id`.
    async fn part(
        &self,
        vote: openraft::Vote<NodeId>,
        prev_log_id: Option<openraft::LogId<NodeId>>,
        leader_commit: Option<openraft::LogId<NodeId>>,
        entries: Vec<Entry<TypeConfig>>,
    ) -> Appended {
        self.raft
            .append_entries(AppendEntriesRequest {
                vote,
                prev_log_id,
                leader_commit,
                entries,
            })
            .await
    }

    async fn check_membership(&self, entry: &Entry<TypeConfig>) -> Result<(), Refusal> {
        let EntryPayload::Membership(next) = &entry.payload else {
            return Ok(());
        };
        // What the entry changes from: Raft keeps the committed membership and the effective
        // (latest appended) one. An entry this node already has is not a change; one that
        // replaces an uncommitted entry changes from the committed membership.
        let (committed, effective) = self
            .raft
            .with_raft_state(|st| {
                (
                    st.membership_state.committed().clone(),
                    st.membership_state.effective().clone(),
                )
            })
            .await
            .map_err(|e| Refusal::unavailable(e.to_string()))?;
        let at = entry.log_id;
        let known = Some(&at) == effective.log_id().as_ref()
            || committed
                .log_id()
                .as_ref()
                .is_some_and(|c| c.index >= at.index);
        if known {
            return Ok(());
        }
        let prev = if effective
            .log_id()
            .as_ref()
            .is_none_or(|e| e.index < at.index)
        {
            effective.membership()
        } else {
            committed.membership()
        };
        let st = self.state.read().expect("state lock");
        if st.model.genesis.is_none() {
            // Before the genesis document applied: the bootstrap membership of this node's
            // own configuration stands.
            return Ok(());
        }
        membership_guard::check(&st.model.members, prev, next).map_err(|why| {
            tracing::warn!(
                index = at.index,
                "refused a Raft membership entry from the leader: {why}"
            );
            Refusal::rejected(format!(
                "membership entry {} departs from the signed membership: {why}",
                at.index
            ))
        })
    }
}
