//! A node's configuration file (`DIR/node<ID>.toml`), written by `tessera operator init` and read
//! by `tessera server --config`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One member of the initial cluster, as every node's configuration lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeerConfig {
    pub id: u64,
    pub address: String,
    pub region: String,
    /// Public X25519 sealing key, hex.
    #[serde(default)]
    pub sealing_key: String,
    /// Public Ed25519 acknowledgement key, hex.
    #[serde(default)]
    pub ack_key: String,
    /// The node's certificate (PEM), in which the CA attests its keys and region.
    #[serde(default)]
    pub certificate: String,
}

/// Raft timing and log-compaction knobs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default)]
pub struct RaftTuning {
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and compact the log) after this many applied entries.
    pub snapshot_logs_since_last: u64,
    /// Entries kept in the log behind the latest snapshot, for slow followers.
    pub max_in_snapshot_log_to_keep: u64,
    /// Size of one install-snapshot chunk on the wire.
    pub snapshot_chunk_bytes: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        Self {
            heartbeat_ms: 200,
            election_timeout_min_ms: 1000,
            election_timeout_max_ms: 2000,
            snapshot_logs_since_last: 5000,
            max_in_snapshot_log_to_keep: 500,
            snapshot_chunk_bytes: 64 * 1024,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeConfig {
    pub id: u64,
    pub cluster_id: String,
    pub region: String,
    /// gRPC address (clients and peers), served over mutual TLS.
    pub api_addr: String,
    /// Plain HTTP address for Prometheus `/metrics`.
    pub metrics_addr: String,
    pub data_dir: PathBuf,
    /// Defaults to `<data_dir>/audit.log`.
    #[serde(default)]
    pub audit_file: Option<PathBuf>,
    pub ca_cert: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The key-encryption key (64 hex characters, mode 0600): seals this node's shares and keys.
    pub kek_file: PathBuf,
    /// This node's private sealing and acknowledgement keys, sealed under the KEK.
    pub keys_file: PathBuf,
    /// The genesis document (`state::genesis`) the first leader carries into the log: the
    /// threshold, the root identities and the first voters, signed at `operator init`. Only
    /// the members of the initial cluster have one.
    #[serde(default)]
    pub genesis: Option<PathBuf>,
    /// True for the members of the initial cluster: they form it on first start.
    /// False for a node that waits to be added with `tessera operator members add`.
    #[serde(default)]
    pub bootstrap: bool,
    #[serde(default)]
    pub raft: RaftTuning,
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// Where break-glass events are POSTed (`notify`); none when absent. Every node that can
    /// lead should name the same one: the leader delivers.
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

/// The `[webhook]` section: one HTTP(S) endpoint that receives every break-glass event.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// `http://` or `https://` URL the events are POSTed to.
    pub url: String,
    /// A file (mode 0600) holding the HMAC-SHA256 key the `X-Tessera-Signature` header is
    /// made with: at least 16 bytes; surrounding whitespace is ignored.
    pub secret_file: PathBuf,
    /// PEM certificates trusted for an `https://` URL; the system bundle
    /// (`/etc/ssl/certs/ca-certificates.crt`) when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long one delivery attempt may take.
    #[serde(default = "default_webhook_timeout_ms")]
    pub timeout_ms: u64,
    /// Events older than this when first seen are not sent (so that naming a webhook on an
    /// old cluster does not replay its history).
    #[serde(default = "default_webhook_max_age_secs")]
    pub max_age_secs: u64,
}

fn default_webhook_timeout_ms() -> u64 {
    5000
}

fn default_webhook_max_age_secs() -> u64 {
    24 * 3600
}

impl NodeConfig {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("cannot read config {}: {e}", path.display()))?;
        let cfg: NodeConfig = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", path.display()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.id == 0 {
            anyhow::bail!("config: id must be 1 or more");
        }
        // A first member forms the cluster from its genesis document (or, without one, from
        // `[[peers]]`), and must be in it.
        if self.bootstrap && self.genesis.is_none() && !self.peers.iter().any(|p| p.id == self.id) {
            anyhow::bail!(
                "config: bootstrap = true but node {} is not in [[peers]] and there is no genesis",
                self.id
            );
        }
        let r = &self.raft;
        if r.election_timeout_min_ms <= r.heartbeat_ms
            || r.election_timeout_max_ms <= r.election_timeout_min_ms
        {
            anyhow::bail!(
                "config: raft needs heartbeat_ms < election_timeout_min_ms < election_timeout_max_ms"
            );
        }
        Ok(())
    }

    pub fn audit_path(&self) -> PathBuf {
        self.audit_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit.log"))
    }
}
