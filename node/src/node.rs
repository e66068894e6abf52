//! A running node: opens storage, starts Raft, serves the gRPC services and metrics, forms the
//! cluster on first start, and offers the two primitives every API call is built on:
//! `write` (through Raft, forwarded to the leader when needed) and `linearizable`
//! (a read barrier after which the local state is at least as new as any acknowledged write).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use serde::{Deserialize, Serialize};
use tessera_proto::{Empty, NodeStatusReply, RaftPayload};
use tonic::Status;

use crate::audit::{AuditLog, AuditRecord};
use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::raft::batcher::Batcher;
use crate::raft::network::{Network, Peers, MAX_MESSAGE_BYTES};
use crate::raft::state_machine::{Outgoing, SharedState, StateMachine};
use crate::raft::{db, log_store::LogStore, NodeId, NodeInfo, Raft};
use crate::shares::keys::{self, FileKeyProvider};
use crate::shares::ShareVault;
use crate::state::kv::AckItem;
use crate::state::{Command, Op};
use crate::tls::TlsMaterial;

/// Work only the leader can do, sent to it by whichever node received the request (after that
/// node authorized it).
#[derive(Debug, Serialize, Deserialize)]
pub enum LeaderOp {
    Command(Command),
    AddLearner { id: NodeId, node: NodeInfo },
    AddVoter { id: NodeId },
    Remove { id: NodeId },
}

/// An acknowledgement to send: path, version, and a complaint if the share did not verify.
type PendingAck = (String, u64, Option<String>);

#[derive(Debug, Serialize, Deserialize)]
pub struct LeaderReply {
    pub index: u64,
    pub error: Option<String>,
}

pub struct Node {
    pub id: NodeId,
    pub config: NodeConfig,
    pub raft: Raft,
    /// Commands for Raft while this node leads, written together when they arrive together.
    commands: Batcher,
    pub state: SharedState,
    pub peers: Arc<Peers>,
    pub audit: Arc<AuditLog>,
    /// Audit appends under way; see `audit_started`.
    audits_in_flight: Arc<std::sync::atomic::AtomicUsize>,
    pub metrics: Metrics,
    pub snapshot_installs: Arc<AtomicU64>,
    pub vault: Arc<ShareVault>,
    /// The last applied index, after every durable apply.
    pub applied: tokio::sync::watch::Receiver<u64>,
    /// FROST round-1 nonces awaiting round 2 (memory only).
    pub nonces: crate::api::NonceStore,
    acks_rx: std::sync::Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<Outgoing>>>,
    /// While leader: the term and the moment a quorum last acknowledged this node, as observed
    /// here (see `lease_read_index`).
    lease: std::sync::Mutex<Option<(u64, Instant)>>,
    /// Parsed policies, so that authorizing a request does not parse HCL.
    pub policies: crate::policy::PolicyCache,
}

impl Node {
    /// Opens storage and starts Raft. Serving is done by `serve`.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Arc<Node>> {
        let tls = Arc::new(TlsMaterial::load(
            &config.ca_cert,
            &config.cert,
            &config.key,
        )?);
        let db = db::open(&config.data_dir)?;
        let log_store = LogStore::new(db.clone());
        let node_keys = keys::load(
            config.id,
            &FileKeyProvider {
                path: config.kek_file.clone(),
            },
            &config.keys_file,
        )?;
        let vault = Arc::new(ShareVault::new(
            db.clone(),
            node_keys,
            config.id,
            config.cluster_id.clone(),
        ));
        let (acks_tx, acks_rx) = tokio::sync::mpsc::unbounded_channel();
        let sm = StateMachine::open(db, config.cluster_id.clone(), Some(vault.clone()), acks_tx)?;
        let state = sm.shared();
        let applied = sm.applied_watch();
        let snapshot_installs = sm.installs.clone();
        let peers = Arc::new(Peers::new(tls));
        let t = &config.raft;
        let raft_config = openraft::Config {
            cluster_name: config.cluster_id.clone(),
            heartbeat_interval: t.heartbeat_ms,
            election_timeout_min: t.election_timeout_min_ms,
            election_timeout_max: t.election_timeout_max_ms,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(t.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: t.max_in_snapshot_log_to_keep,
            snapshot_max_chunk_size: t.snapshot_chunk_bytes,
            install_snapshot_timeout: 2000,
            ..Default::default()
        }
        .validate()?;
        let raft = Raft::new(
            config.id,
            Arc::new(raft_config),
            Network::new(peers.clone()),
            log_store,
            sm,
        )
        .await?;
        let audit = Arc::new(AuditLog::open(&config.audit_path()).map_err(|e| {
            anyhow::anyhow!(
                "cannot open audit log {}: {e}",
                config.audit_path().display()
            )
        })?);
        let metrics = Metrics::new()?;
        Ok(Arc::new(Node {
            id: config.id,
            commands: Batcher::start(raft.clone(), config.id),
            config,
            raft,
            state,
            peers,
            audit,
            audits_in_flight: Arc::default(),
            metrics,
            snapshot_installs,
            vault,
            applied,
            nonces: crate::api::NonceStore::default(),
            acks_rx: std::sync::Mutex::new(Some(acks_rx)),
            lease: std::sync::Mutex::new(None),
            policies: Default::default(),
        }))
    }

    /// Serves gRPC (both services, mutual TLS) and metrics, forms the cluster if this is a
    /// bootstrap member that has never started, and runs until `shutdown` resolves.
    pub async fn serve(
        self: Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let tls = TlsMaterial::load(&self.config.ca_cert, &self.config.cert, &self.config.key)?;
        let addr: std::net::SocketAddr = self
            .config
            .api_addr
            .parse()
            .map_err(|e| anyhow::anyhow!("api_addr {:?}: {e}", self.config.api_addr))?;
        let raft_svc = tessera_proto::raft_server::RaftServer::new(
            crate::raft::service::RaftService::new(self.clone()),
        )
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let api_svc =
            tessera_proto::tessera_server::TesseraServer::new(crate::api::Api::new(self.clone()))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES);

        let metrics_listener = tokio::net::TcpListener::bind(&self.config.metrics_addr)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on metrics_addr {}: {e}",
                    self.config.metrics_addr
                )
            })?;
        tokio::spawn(crate::metrics::serve(metrics_listener, self.clone()));

        // Nagle's algorithm would hold small replies back for a delayed ACK (tens of ms per
        // round trip); every request here is small, so it is off.
        let incoming = tonic::transport::server::TcpIncoming::bind(addr)
            .map_err(|e| anyhow::anyhow!("cannot listen on api_addr {addr}: {e}"))?
            .with_nodelay(Some(true));
        tracing::info!(id = self.id, %addr, region = %self.config.region, "node serving");

        if self.config.bootstrap {
            let me = self.clone();
            tokio::spawn(async move { me.bootstrap().await });
        }
        if let Some(rx) = self.acks_rx.lock().expect("acks lock").take() {
            tokio::spawn(self.clone().send_acks(rx));
        }
        tokio::spawn(self.clone().seed_settings());
        self.watch_lease_on_own_thread();
        tokio::spawn(self.clone().abort_stale_dkgs());

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .tls_config(tls.server())?
            .tcp_nodelay(true)
            .add_service(raft_svc)
            .add_service(api_svc)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            });
        tokio::spawn(async move {
            shutdown.await;
            let _ = tx.send(());
        });
        server.await?;
        tracing::info!(id = self.id, "shutting down raft");
        let _ = self.raft.shutdown().await;
        Ok(())
    }

    /// Forms the initial cluster from the configured peers. Every bootstrap member does the same
    /// with the same membership, which openraft allows; a node that already has state skips it.
    async fn bootstrap(&self) {
        if self.raft.is_initialized().await.unwrap_or(true) {
            return;
        }
        let members: BTreeMap<NodeId, NodeInfo> = self
            .config
            .peers
            .iter()
            .map(|p| {
                (
                    p.id,
                    NodeInfo {
                        addr: p.address.clone(),
                        region: p.region.clone(),
                        sealing_key: p.sealing_key.clone(),
                        ack_key: p.ack_key.clone(),
                    },
                )
            })
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => tracing::info!(id = self.id, "initialized cluster membership"),
            Err(e) => tracing::info!(id = self.id, "not initializing: {e}"),
        }
    }

    /// Signs and submits this node's acknowledgements (and complaints) through Raft, in batches.
    /// A failed submission is retried; an acknowledgement for a version that is gone is dropped.
    /// Confirmations (a share this node acknowledged on receiving the write is now at rest) are
    /// not urgent: they wait up to `CONFIRM_DELAY` and ride with the next batch, so that they
    /// do not hold up the Raft round another holder's acknowledgement is waiting for.
    async fn send_acks(self: Arc<Self>, mut rx: tokio::sync::mpsc::UnboundedReceiver<Outgoing>) {
        const CONFIRM_DELAY: Duration = Duration::from_millis(50);
        let mut confirmations: Vec<PendingAck> = Vec::new();
        // When the oldest waiting confirmation was queued: the wait is counted from it, so a
        // steady stream of work cannot hold confirmations back.
        let mut oldest: Option<Instant> = None;
        loop {
            let first = if confirmations.is_empty() {
                match rx.recv().await {
                    Some(x) => Some(x),
                    None => return,
                }
            } else {
                let left =
                    CONFIRM_DELAY.saturating_sub(oldest.map_or(CONFIRM_DELAY, |t| t.elapsed()));
                match tokio::time::timeout(left, rx.recv()).await {
                    Ok(Some(x)) => Some(x),
                    Ok(None) => return,
                    Err(_) => None,
                }
            };
            let flush = first.is_none()
                || confirmations.len() >= 512
                || oldest.is_some_and(|t| t.elapsed() >= CONFIRM_DELAY);
            let mut items_in: Vec<Outgoing> = first.into_iter().collect();
            while items_in.len() < 512 {
                match rx.try_recv() {
                    Ok(p) => items_in.push(p),
                    Err(_) => break,
                }
            }
            let mut batch = Vec::new();
            for item in items_in {
                match item {
                    Outgoing::Ack(p, v, c) => batch.push((p, v, c)),
                    Outgoing::Op(op) => {
                        let me = self.clone();
                        tokio::spawn(async move { me.submit_own(op).await });
                    }
                }
            }
            let (urgent, later) = self.sort_acks(batch);
            if confirmations.is_empty() && !later.is_empty() {
                oldest = Some(Instant::now());
            }
            confirmations.extend(later);
            if urgent.is_empty() && !flush {
                continue;
            }
            oldest = None;
            let (mut items, still_later) = self.sort_acks(std::mem::take(&mut confirmations));
            items.extend(urgent);
            items.extend(
                still_later.iter().filter_map(|(path, version, complaint)| {
                    self.ack_now(path, *version, complaint)
                }),
            );
            if items.is_empty() {
                continue;
            }
            let signature = self.vault.sign_acks(&items);
            self.clone()
                .submit_own(Op::KvAcks {
                    node: self.id,
                    acks: items,
                    signature,
                })
                .await;
        }
    }

    /// Splits pending acknowledgements into ones to send now (signed) and confirmations that
    /// can wait; drops what is already done or gone.
    fn sort_acks(&self, batch: Vec<PendingAck>) -> (Vec<AckItem>, Vec<PendingAck>) {
        let st = self.state.read().expect("state lock");
        let mut now = Vec::new();
        let mut later = Vec::new();
        for (path, version, complaint) in batch {
            let Some(v) = st
                .model
                .secrets
                .get(&path)
                .and_then(|e| e.versions.get(&version))
            else {
                continue;
            };
            let acked = v.acks.contains_key(&self.id);
            let pending = v.envelopes.contains_key(&self.id);
            if (acked && !pending) || v.complaints.contains_key(&self.id) {
                continue;
            }
            if acked && complaint.is_none() {
                later.push((path, version, complaint));
            } else {
                now.push(self.vault.ack_item(&path, version, v, complaint));
            }
        }
        (now, later)
    }

    /// The signed acknowledgement for a version, if it is still to be sent.
    fn ack_now(&self, path: &str, version: u64, complaint: &Option<String>) -> Option<AckItem> {
        let st = self.state.read().expect("state lock");
        let v = st.model.secrets.get(path)?.versions.get(&version)?;
        let done = v.acks.contains_key(&self.id) && !v.envelopes.contains_key(&self.id);
        if done || v.complaints.contains_key(&self.id) {
            return None;
        }
        Some(self.vault.ack_item(path, version, v, complaint.clone()))
    }

    /// Submits one of this node's own commands (acknowledgements, DKG messages), retrying while
    /// the cluster is unavailable; a refusal is final. Acknowledgements still unsent when the
    /// retries run out are queued again when the node restarts.
    async fn submit_own(self: Arc<Self>, op: Op) {
        let cmd = Command {
            by: crate::raft::node_dns_name(self.id),
            op,
        };
        let mut delay = Duration::from_millis(100);
        for _ in 0..30 {
            match self.on_leader(LeaderOp::Command(cmd.clone())).await {
                Ok(_) => return,
                Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                    tracing::warn!("command refused: {}", s.message());
                    return;
                }
                Err(s) => {
                    tracing::warn!("command not submitted yet: {}", s.message());
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// The leader abandons key generations that passed their deadline.
    async fn abort_stale_dkgs(self: Arc<Self>) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if self.raft.metrics().borrow().current_leader != Some(self.id) {
                continue;
            }
            let now = time::OffsetDateTime::now_utc().unix_timestamp() as u64;
            let stale: Vec<(String, u64)> = {
                let st = self.state.read().expect("state lock");
                st.model
                    .keys
                    .iter()
                    .filter(|(_, k)| {
                        k.status == crate::state::keys::KeyStatus::Generating && k.deadline < now
                    })
                    .map(|(n, k)| (n.clone(), k.attempt))
                    .collect()
            };
            for (name, attempt) in stale {
                tracing::warn!(key = %name, attempt, "key generation timed out; aborting");
                let op = Op::KeyAbort {
                    name,
                    attempt,
                    reason: "the key generation did not finish in time (a participant is down?); run `tessera key create` again".into(),
                };
                self.clone().submit_own(op).await;
            }
        }
    }

    /// The first leader writes the threshold `operator init` chose into the replicated settings.
    async fn seed_settings(self: Arc<Self>) {
        let Some(t) = self.config.initial_threshold else {
            return;
        };
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if self
                .state
                .read()
                .expect("state lock")
                .model
                .settings
                .threshold
                .is_some()
            {
                return;
            }
            if self.raft.metrics().borrow().current_leader != Some(self.id) {
                continue;
            }
            let cmd = Command {
                by: crate::raft::node_dns_name(self.id),
                op: Op::SetSettings {
                    threshold: Some(t),
                    ack_fault_tolerance: self.config.ack_fault_tolerance,
                    allow_unsafe_topology: Some(self.config.allow_unsafe_topology),
                },
            };
            match self.on_leader(LeaderOp::Command(cmd)).await {
                Ok(_) => return,
                Err(e) => tracing::error!("cannot set the initial threshold {t}: {}", e.message()),
            }
        }
    }

    /// Waits until the state machine has applied at least `index`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> Result<(), Status> {
        let mut rx = self.applied.clone();
        let res = tokio::time::timeout(timeout, rx.wait_for(|i| *i >= index)).await;
        match res {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Status::unavailable(format!(
                "this node has not applied index {index} yet; try again or ask another node"
            ))),
        }
    }

    /// Runs `op` on the leader: here if we are it, otherwise forwarded over mutual TLS.
    pub async fn on_leader(&self, op: LeaderOp) -> Result<u64, Status> {
        let mut last_err = String::from("no leader elected");
        for attempt in 0..20u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            match self.run_as_leader(&op).await {
                Ok(reply) => return reply_to_result(reply),
                Err(Some(fwd)) => {
                    let (Some(id), Some(node)) = (fwd.leader_id, fwd.leader_node) else {
                        continue;
                    };
                    match self.forward(id, &node, &op).await {
                        Ok(reply) => return reply_to_result(reply),
                        Err(e) => last_err = e,
                    }
                }
                Err(None) => {}
            }
        }
        Err(Status::unavailable(format!(
            "the cluster could not commit the change: {last_err}; check `tessera status`"
        )))
    }

    async fn forward(
        &self,
        id: NodeId,
        node: &NodeInfo,
        op: &LeaderOp,
    ) -> Result<LeaderReply, String> {
        let mut client = self.peers.client(id, &node.addr)?;
        let data = crate::raft::codec::encode(op).map_err(|e| e.to_string())?;
        let reply = tokio::time::timeout(
            Duration::from_secs(10),
            client.forward(RaftPayload { data }),
        )
        .await
        .map_err(|_| format!("leader {id} did not answer in time"))?
        .map_err(|s| format!("leader {id}: {}", s.message()))?;
        crate::raft::codec::decode(&reply.into_inner().data).map_err(|e| e.to_string())
    }

    /// Executes a leader operation locally. `Err(Some(_))` says who the leader is;
    /// `Err(None)` means try again (e.g. an election is running).
    pub async fn run_as_leader(
        &self,
        op: &LeaderOp,
    ) -> Result<LeaderReply, Option<ForwardToLeader<NodeId, NodeInfo>>> {
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
                .map(|r| LeaderReply {
                    index: r.log_id.index,
                    error: None,
                }),
            LeaderOp::AddVoter { id } => self
                .raft
                .change_membership(openraft::ChangeMembers::AddVoterIds([*id].into()), false)
                .await
                .map(|r| LeaderReply {
                    index: r.log_id.index,
                    error: None,
                }),
            LeaderOp::Remove { id } => {
                let voters: std::collections::BTreeSet<NodeId> = [*id].into();
                let is_voter = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == *id);
                let change = if is_voter {
                    openraft::ChangeMembers::RemoveVoters(voters)
                } else {
                    openraft::ChangeMembers::RemoveNodes(voters)
                };
                self.raft
                    .change_membership(change, false)
                    .await
                    .map(|r| LeaderReply {
                        index: r.log_id.index,
                        error: None,
                    })
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
                    error: Some(e.to_string()),
                })
            }
            Err(e) => {
                tracing::warn!("leader operation failed: {e}");
                Err(None)
            }
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
    fn watch_lease_on_own_thread(self: &Arc<Self>) {
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
        let window = Duration::from_millis(self.config.raft.election_timeout_min_ms / 2);
        if acked_at.elapsed() >= window {
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
    pub async fn linearizable(&self) -> Result<(), Status> {
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
                                    Status::unavailable(format!(
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
        Err(Status::unavailable(format!(
            "cannot confirm a quorum for a consistent read: {last_err}; check `tessera status`"
        )))
    }

    async fn read_index_from(&self, id: NodeId, node: &NodeInfo) -> Result<u64, String> {
        let mut client = self.peers.client(id, &node.addr)?;
        let r = tokio::time::timeout(Duration::from_secs(2), client.read_index(Empty {}))
            .await
            .map_err(|_| format!("leader {id} did not answer in time"))?
            .map_err(|s| format!("leader {id}: {}", s.message()))?;
        Ok(r.into_inner().read_index)
    }

    /// This node's own view, as reported to `tessera status`.
    pub async fn local_status(&self) -> NodeStatusReply {
        let m = self.raft.metrics().borrow().clone();
        let committed = self
            .raft
            .with_raft_state(|st| st.committed.map(|l| l.index))
            .await
            .ok()
            .flatten()
            .unwrap_or(0);
        NodeStatusReply {
            id: self.id,
            region: self.config.region.clone(),
            term: m.current_term,
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            last_log_index: m.last_log_index.unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
            purged_index: m.purged.map(|l| l.index).unwrap_or(0),
            state: format!("{:?}", m.state),
            leader: m.current_leader,
            committed,
            sealing_key: self.vault.public_keys().0,
            ack_key: self.vault.public_keys().1,
        }
    }

    /// Appends the audit line for a request and returns once it is durable. A failure is
    /// counted and returned: the caller must then refuse the request (law 4).
    ///
    /// When no other append is under way the line is written and synced on the calling thread:
    /// handing a lone fsync to another thread and back costs more than the fsync blocks this
    /// one. Concurrent appends go to blocking threads, where they share fsyncs (group commit)
    /// without holding up the runtime.
    pub async fn audit(&self, record: AuditRecord) -> Result<(), Status> {
        self.audit_all(vec![record]).await
    }

    /// `audit` for several requests answered together: their lines are written together and
    /// made durable with one sync; an error refuses all of them.
    pub async fn audit_all(&self, records: Vec<AuditRecord>) -> Result<(), Status> {
        use std::sync::atomic::Ordering;
        let busy = self.audits_in_flight.clone();
        let res = if busy.fetch_add(1, Ordering::AcqRel) == 0 {
            let done = self.audit.append_all(&records);
            busy.fetch_sub(1, Ordering::AcqRel);
            done.map_err(|e| e.to_string())
        } else {
            let audit = self.audit.clone();
            // The counter is released by the blocking task itself, even if this request is
            // dropped while it runs.
            tokio::task::spawn_blocking(move || {
                let done = audit.append_all(&records);
                busy.fetch_sub(1, Ordering::AcqRel);
                done
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        };
        res.map_err(|e| {
            self.metrics.audit_failures.inc();
            tracing::error!("audit log write failed, refusing request: {e}");
            Status::unavailable("the node cannot write its audit log, so it refuses the request")
        })
    }
}

fn reply_to_result(reply: LeaderReply) -> Result<u64, Status> {
    match reply.error {
        None => Ok(reply.index),
        Some(e) => Err(Status::failed_precondition(e)),
    }
}
