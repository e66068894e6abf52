//! Reads that must see every acknowledged write: the leader's lease (no round trip while a
//! quorum acknowledged it lately), the leader's read index otherwise, and waiting until this
//! node's state machine has applied that far.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, RaftError};
use tessera_proto::Empty;
use tokio::sync::watch;

use super::network::Peers;
use super::{NodeId, NodeInfo, Raft};
use crate::error::Refusal;

pub struct Reads {
    id: NodeId,
    raft: Raft,
    peers: Arc<Peers>,
    /// The last applied index, after every durable apply.
    applied: watch::Receiver<u64>,
    /// While leader: the term and the moment a quorum last acknowledged this node, as observed
    /// here (see `lease_read_index`).
    lease: Mutex<Option<(u64, Instant)>>,
    /// Half of this is the lease: followers refuse other candidates for a whole election
    /// timeout after hearing from the leader.
    election_timeout_min: Duration,
    /// While follower: when this node asked the leader to confirm its state, and the read index
    /// the leader named; only the newest one this node has applied up to, and the newer ones it
    /// has not applied yet (see `fresh`).
    contacts: Mutex<VecDeque<(Instant, u64)>>,
    /// How long state counts as fresh after the last word from a leader (`fresh`).
    fresh_for: Duration,
}

impl Reads {
    pub fn new(
        id: NodeId,
        raft: Raft,
        peers: Arc<Peers>,
        applied: watch::Receiver<u64>,
        election_timeout_min: Duration,
        fresh_for: Duration,
    ) -> Arc<Reads> {
        Arc::new(Reads {
            id,
            raft,
            peers,
            applied,
            lease: Mutex::new(None),
            election_timeout_min,
            contacts: Mutex::new(VecDeque::new()),
            fresh_for,
        })
    }

    /// Confirms this follower's state with the leader every `CONFIRM_EVERY`: the leader names
    /// a read index only while a quorum acknowledges it (its lease, or a round of heartbeats),
    /// so a leader cut off from its quorum confirms nothing, though it may still send this
    /// node heartbeats. Runs for the node's life.
    pub async fn keep_confirming(self: Arc<Self>) {
        const CONFIRM_EVERY: Duration = Duration::from_millis(500);
        loop {
            let leading = self.raft.metrics().borrow().state == openraft::ServerState::Leader;
            if !leading {
                self.confirm_once().await;
            }
            tokio::time::sleep(CONFIRM_EVERY).await;
        }
    }

    /// Asks for a read index confirmed by a quorum (this node's own Raft while it leads, the
    /// leader otherwise) and records it; the index, if one came.
    async fn confirm_once(&self) -> Option<u64> {
        let (leading, leader) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let leader = m.current_leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| (l, n.clone()))
            });
            (m.state == openraft::ServerState::Leader, leader)
        };
        let asked = Instant::now();
        let index = if leading {
            let read = tokio::time::timeout(Duration::from_secs(2), self.raft.get_read_log_id());
            match read.await {
                Ok(Ok((log_id, _))) => log_id.map_or(0, |l| l.index),
                _ => return None,
            }
        } else {
            let (id, node) = leader?;
            self.read_index_from(id, &node).await.ok()?
        };
        self.confirmed(asked, index);
        Some(index)
    }

    /// The leader confirmed, in answer to a question asked at `at`, that `committed` was
    /// committed with a quorum's backing.
    fn confirmed(&self, at: Instant, committed: u64) {
        const MAX_PENDING: usize = 4096;
        let applied = *self.applied.borrow();
        let mut c = self.contacts.lock().expect("contacts lock");
        match c.back_mut() {
            Some(last) if last.1 >= committed => last.0 = last.0.max(at),
            _ => c.push_back((at, committed)),
        }
        // Only the newest contact already applied matters among the applied ones; dropping the
        // oldest pending ones only makes `fresh` wait for a later one.
        while c.len() > 1 && (c[1].1 <= applied || c.len() > MAX_PENDING) {
            c.pop_front();
        }
    }

    /// Whether this node's state is fresh enough to release a share or a signature share on.
    ///
    /// # Security
    ///
    /// A holder authorizes on the state it has applied. One cut off from the leader would
    /// otherwise go on honouring a policy, grant or certificate the rest of the cluster has
    /// since revoked. So a follower releases only while it has applied a read index that a
    /// leader confirmed with a quorum in answer to a question asked within `fresh_for`
    /// (`keep_confirming`); a leader only
    /// while a quorum acknowledged it within `fresh_for`. A revocation therefore binds every
    /// holder, reachable or not, within `fresh_for` (plus one message's delay) of its commit.
    /// `fresh_for` is twice the longest election timeout, so reads go on through an ordinary
    /// election.
    pub async fn fresh(&self) -> Result<(), Refusal> {
        /// How long a release waits for a confirmation it lacks before it refuses.
        const CONFIRM_PATIENCE: Duration = Duration::from_secs(3);
        if self.fresh_now().is_ok() {
            return Ok(());
        }
        // Not confirmed lately (a node just started, or a leader just elected): confirm now, as
        // a linearizable read would, catch up to the index, and judge again. Right after an
        // election the new leader may not answer for a moment (its term's first entry is not
        // committed yet, or this node has not heard of it), so this tries again for a short
        // while before it refuses: waiting costs a reader a moment, a refusal a failed read.
        let deadline = tokio::time::Instant::now() + CONFIRM_PATIENCE;
        loop {
            if let Some(index) = self.confirm_once().await {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                let _ = self
                    .wait_applied(index, left.max(Duration::from_millis(200)))
                    .await;
            }
            let verdict = self.fresh_now();
            if verdict.is_ok() || tokio::time::Instant::now() >= deadline {
                return verdict;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn fresh_now(&self) -> Result<(), Refusal> {
        let (leading, lone) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let leading = m.state == openraft::ServerState::Leader;
            (
                leading,
                m.membership_config.membership().voter_ids().count() == 1,
            )
        };
        let stale = |age: Option<Duration>| {
            Refusal::unavailable(match age {
                Some(a) => format!(
                    "node {}'s state was last confirmed current {} ms ago (no quorum or leader since); it releases nothing on state that may be stale (a revocation may have passed it by)",
                    self.id,
                    a.as_millis()
                ),
                None => format!(
                    "node {} could not confirm its state with a quorum; it releases nothing on state that may be stale",
                    self.id
                ),
            })
        };
        if leading {
            if lone {
                return Ok(());
            }
            let acked = self.lease.lock().expect("lease lock").map(|(_, at)| at);
            if acked.is_some_and(|at| at.elapsed() < self.fresh_for) {
                return Ok(());
            }
        }
        // The newest confirmation whose index this node has applied.
        let applied = *self.applied.borrow();
        let witness = self
            .contacts
            .lock()
            .expect("contacts lock")
            .iter()
            .rev()
            .find(|(_, committed)| *committed <= applied)
            .map(|(at, _)| *at);
        match witness {
            Some(at) if at.elapsed() < self.fresh_for => Ok(()),
            Some(at) => Err(stale(Some(at.elapsed()))),
            None => Err(stale(None)),
        }
    }

    /// A receiver that sees every index the state machine applies.
    pub fn applied_watch(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Waits until the state machine has applied at least `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), Refusal> {
        let mut rx = self.applied.clone();
        let caught_up = matches!(
            tokio::time::timeout(timeout, rx.wait_for(|i| *i >= index)).await,
            Ok(Ok(_))
        );
        if caught_up {
            Ok(())
        } else {
            Err(Refusal::NotCaughtUp { index })
        }
    }

    /// Follows Raft's metrics to learn when a quorum last acknowledged this node as leader.
    /// openraft reports the age of that acknowledgement with every metrics update; the moment
    /// is taken as "now minus age" when the update is seen here, which can only make it later
    /// than the truth by the notification delay, a margin `lease_read_index` leaves room for.
    /// If Raft stalls, no update comes and the lease simply runs out.
    ///
    /// It runs on its own OS thread, not on the runtime: a runtime busy with requests could
    /// otherwise see an update late and take the acknowledgement for younger than it is. The
    /// remaining assumption is the usual one of leases: no thread is descheduled for longer than
    /// the margin (half an election timeout).
    pub fn watch_lease_on_own_thread(self: &Arc<Self>) {
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name("tessera-lease".into())
            .spawn(move || futures::executor::block_on(me.watch_lease()));
        if let Err(e) = spawned {
            // Without the watcher there is no lease: reads confirm with a quorum instead.
            tracing::warn!("cannot start the lease watcher thread ({e}); reads will confirm leadership with a quorum");
        }
    }

    async fn watch_lease(self: Arc<Self>) {
        let mut rx = self.raft.metrics();
        loop {
            let seen = {
                let m = rx.borrow_and_update();
                match (m.state, m.current_leader, m.millis_since_quorum_ack) {
                    (openraft::ServerState::Leader, Some(l), Some(age)) if l == self.id => {
                        Instant::now()
                            .checked_sub(Duration::from_millis(age + 1))
                            .map(|at| (m.current_term, at))
                    }
                    _ => None,
                }
            };
            *self.lease.lock().expect("lease lock") = seen;
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// On a leader whose lease holds: the index a linearizable read must wait for, with no
    /// round trip. A quorum acknowledged this leader less than half an election timeout ago,
    /// and openraft's followers refuse to vote for anyone else for a whole lease
    /// (`election_timeout_max`) after hearing from it, so no other leader can have committed
    /// anything since; everything committed is in this node's log, so its last log index is a
    /// safe read index. `None` means: confirm with a quorum instead.
    pub fn lease_read_index(&self) -> Option<u64> {
        let (term, acked_at) = (*self.lease.lock().expect("lease lock"))?;
        if acked_at.elapsed() >= self.election_timeout_min / 2 {
            return None;
        }
        let m = self.raft.metrics();
        let m = m.borrow();
        if m.state != openraft::ServerState::Leader || m.current_term != term {
            return None;
        }
        m.last_log_index
    }

    /// Whether this node is the leader under a valid lease, after waiting until its state
    /// machine applied everything committed (`lease_read_index`).
    pub async fn leader_lease_barrier(&self) -> bool {
        match self.lease_read_index() {
            Some(index) => self
                .wait_applied(index, Duration::from_secs(2))
                .await
                .is_ok(),
            None => false,
        }
    }

    /// Waits until this node's state machine has applied everything acknowledged before the
    /// call: from the leader's lease when it holds, otherwise the leader confirms its
    /// leadership with a quorum and names the index.
    pub async fn linearizable(&self) -> Result<(), Refusal> {
        if self.leader_lease_barrier().await {
            return Ok(());
        }
        let mut last_err = String::from("no leader elected");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        for attempt in 0..50u32 {
            if attempt > 0 {
                if tokio::time::Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            match self.raft.ensure_linearizable().await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
                    let (Some(id), Some(node)) = (f.leader_id, f.leader_node) else {
                        continue;
                    };
                    match self.read_index_from(id, &node).await {
                        Ok(index) => {
                            return self
                                .raft
                                .wait(Some(Duration::from_secs(10)))
                                .applied_index_at_least(Some(index), "linearizable read")
                                .await
                                .map(|_| ())
                                .map_err(|e| {
                                    Refusal::no_quorum(format!(
                                        "this node could not catch up with the leader: {e}"
                                    ))
                                });
                        }
                        Err(e) => last_err = e,
                    }
                }
                Err(e) => last_err = e.to_string(),
            }
        }
        Err(Refusal::no_quorum(format!(
            "cannot confirm a quorum for a consistent read: {last_err}; check `tessera status`"
        )))
    }

    async fn read_index_from(&self, id: NodeId, node: &NodeInfo) -> Result<u64, String> {
        let mut client = self.peers.raft(id, &node.addr).map_err(|e| e.to_string())?;
        let r = tokio::time::timeout(Duration::from_secs(2), client.read_index(Empty {}))
            .await
            .map_err(|_| format!("leader {id} did not answer in time"))?
            .map_err(|s| format!("leader {id}: {}", s.message()))?;
        Ok(r.into_inner().read_index)
    }
}
