//! A running node's parts, wired together: storage, Raft, the share vault, the audit log, the
//! way to the leader and to consistent reads, metrics, the signer's nonces and the policy
//! cache. Each part lives in the folder of its concern; this file only opens and connects them
//! (`server.rs` serves them).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tessera_proto::NodeStatusReply;
use tokio::sync::mpsc;

use crate::audit::{AuditLog, Auditor};
use crate::config::NodeConfig;
use crate::db;
use crate::metrics::Metrics;
use crate::raft::append_guard::AppendGuard;
use crate::raft::leader::Leader;
use crate::raft::network::{Network, Peers};
use crate::raft::reads::Reads;
use crate::raft::snapshot_guard::SnapshotGuard;
use crate::raft::state_machine::{Outgoing, SharedState, StateMachine};
use crate::raft::{log_store::LogStore, NodeId, Raft};
use crate::shares::keys::{self, FileKeyProvider};
use crate::shares::ShareVault;
use crate::signing::NonceStore;
use crate::state::authority::Trust;
use crate::tls::TlsMaterial;

pub struct Node {
    pub id: NodeId,
    pub config: NodeConfig,
    pub raft: Raft,
    /// The replicated state as this node has applied it.
    pub state: SharedState,
    pub peers: Arc<Peers>,
    pub leader: Arc<Leader>,
    pub reads: Arc<Reads>,
    /// What this node checks before it appends a leader's entries or votes (membership
    /// entries, entry times).
    pub guard: Arc<AppendGuard>,
    /// What this node checks before it lets a leader's snapshot replace its state (vouches).
    pub snapshots: SnapshotGuard,
    pub audit: Auditor,
    pub metrics: Metrics,
    pub snapshot_installs: Arc<AtomicU64>,
    /// This node's own shares and keys.
    pub vault: Arc<ShareVault>,
    /// FROST round-1 nonces awaiting round 2 (memory only).
    pub nonces: NonceStore,
    /// What authorization and signed commands are checked against (the CA, the root
    /// identities, parsed policies), shared with the state machine.
    pub trust: Arc<Trust>,
    /// This node's own certificate (DER), in which the CA attests its keys and region.
    pub certificate: Vec<u8>,
}

/// What the node's background work starts from (`server::serve` runs it).
pub struct Background {
    /// Acknowledgements and DKG messages the state machine asks this node to submit.
    pub outgoing: mpsc::UnboundedReceiver<Outgoing>,
}

impl Node {
    /// Opens storage and the audit log, loads this node's keys and starts Raft.
    pub async fn start(config: NodeConfig) -> anyhow::Result<(Arc<Node>, Background)> {
        let tls = Arc::new(TlsMaterial::load(
            &config.ca_cert,
            &config.cert,
            &config.key,
        )?);
        let ca_pem = std::fs::read(&config.ca_cert).map_err(|e| {
            anyhow::anyhow!(
                "cannot read CA certificate {}: {e}",
                config.ca_cert.display()
            )
        })?;
        let trust = Arc::new(Trust::new(&ca_pem)?);
        let certificate = std::fs::read(&config.cert)
            .map_err(anyhow::Error::from)
            .and_then(|pem| Ok(tessera_crypto::attest::pem_to_der(&pem)?))
            .map_err(|e| {
                anyhow::anyhow!("cannot read certificate {}: {e}", config.cert.display())
            })?;
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
        let (outgoing_tx, outgoing) = mpsc::unbounded_channel();
        let sm = StateMachine::open(
            db,
            config.cluster_id.clone(),
            trust.clone(),
            Some(vault.clone()),
            outgoing_tx,
        )?
        .with_checkpoints(config.raft.snapshot_logs_since_last);
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
        let log = AuditLog::open(&config.audit_path()).map_err(|e| {
            anyhow::anyhow!(
                "cannot open audit log {}: {e}",
                config.audit_path().display()
            )
        })?;
        let metrics = Metrics::new()?;
        let reads = Reads::new(
            config.id,
            raft.clone(),
            peers.clone(),
            applied,
            Duration::from_millis(config.raft.election_timeout_min_ms),
            Duration::from_millis(2 * config.raft.election_timeout_max_ms),
        );
        let guard = Arc::new(AppendGuard::new(
            config.id,
            raft.clone(),
            state.clone(),
            reads.clone(),
            peers.clone(),
        ));
        let node = Node {
            id: config.id,
            guard,
            snapshots: SnapshotGuard::new(config.cluster_id.clone(), trust.clone(), state.clone()),
            leader: Arc::new(Leader::new(
                config.id,
                raft.clone(),
                peers.clone(),
                state.clone(),
            )),
            reads,
            audit: Auditor::new(log, metrics.audit_failures.clone()),
            config,
            raft,
            state,
            peers,
            metrics,
            snapshot_installs,
            vault,
            nonces: NonceStore::default(),
            trust,
            certificate,
        };
        Ok((Arc::new(node), Background { outgoing }))
    }

    /// This node's own view, as reported to `tessera status`.
    pub async fn local_status(&self) -> NodeStatusReply {
        crate::raft::status::local_status(
            &self.raft,
            self.id,
            &self.config.region,
            self.vault.public_keys(),
            self.certificate.clone(),
        )
        .await
    }
}
