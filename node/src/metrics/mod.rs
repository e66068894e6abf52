//! Prometheus metrics: Raft progress, replication lag, request counts and latencies, audit
//! failures; served as text on the node's metrics address.
//!
//! Labels carry operation names, outcomes, node ids and signing-key names (an operator chose
//! those, and they are public in the replicated state): never a secret path, a value, or an
//! identity, so metrics can be shared freely.

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use tessera_proto::NodeStatusReply;

use crate::raft::{NodeId, Raft};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub latency: HistogramVec,
    pub audit_failures: IntCounter,
    pub share_releases: IntCounterVec,
    pub bad_shares: IntCounterVec,
    pub ack_wait: prometheus::Histogram,
    pub signatures: IntCounterVec,
    pub cheaters: IntCounterVec,
    term: IntGauge,
    leader: IntGauge,
    is_leader: IntGauge,
    commit_index: IntGauge,
    applied_index: IntGauge,
    last_log_index: IntGauge,
    snapshot_index: IntGauge,
    snapshot_installs: IntGauge,
    replication_lag: IntGaugeVec,
    pub breakglass_events: IntCounterVec,
    pub rotate_required: IntGauge,
    pub webhook_deliveries: IntCounter,
    pub webhook_failures: IntCounter,
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| -> anyhow::Result<IntGauge> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let m = Metrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "tessera_requests_total",
                    "API requests by operation and outcome.",
                ),
                &["operation", "outcome"],
            )?,
            latency: HistogramVec::new(
                HistogramOpts::new(
                    "tessera_request_duration_seconds",
                    "API request latency by operation and outcome.",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ]),
                &["operation", "outcome"],
            )?,
            audit_failures: IntCounter::new(
                "tessera_audit_failures_total",
                "Audit log writes that failed (each refused its request).",
            )?,
            share_releases: IntCounterVec::new(
                Opts::new("tessera_share_releases_total", "Shares released or refused (one per ReleaseShares item), by outcome (released, denied, refused)."),
                &["outcome"],
            )?,
            bad_shares: IntCounterVec::new(
                Opts::new("tessera_bad_shares_reported_total", "Shares readers reported as failing verification, by the node that released them."),
                &["node"],
            )?,
            ack_wait: prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "tessera_kv_write_ack_seconds",
                    "Time from submitting a secret version until t + f holders acknowledged it.",
                )
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0]),
            )?,
            signatures: IntCounterVec::new(
                Opts::new("tessera_signature_shares_total", "FROST signature shares this node was asked for, by key, purpose and outcome."),
                &["key", "purpose", "outcome"],
            )?,
            cheaters: IntCounterVec::new(
                Opts::new("tessera_signing_cheaters_reported_total", "Signers reported for signature shares that did not verify, by node."),
                &["node"],
            )?,
            term: gauge("tessera_raft_term", "Current Raft term.")?,
            leader: gauge(
                "tessera_raft_leader_id",
                "Id of the current leader, 0 if none known.",
            )?,
            is_leader: gauge("tessera_raft_is_leader", "1 if this node is the leader.")?,
            commit_index: gauge(
                "tessera_raft_commit_index",
                "Highest log index known committed.",
            )?,
            applied_index: gauge(
                "tessera_raft_applied_index",
                "Last log index applied to the state machine.",
            )?,
            last_log_index: gauge(
                "tessera_raft_last_log_index",
                "Last log index in this node's log.",
            )?,
            snapshot_index: gauge(
                "tessera_raft_snapshot_index",
                "Last log index included in the latest snapshot.",
            )?,
            snapshot_installs: gauge(
                "tessera_raft_snapshots_installed",
                "Snapshots received from a leader and installed since this process started.",
            )?,
            replication_lag: IntGaugeVec::new(
                Opts::new(
                    "tessera_raft_replication_lag_entries",
                    "On the leader: log entries a peer is behind the leader's last log index.",
                ),
                &["peer"],
            )?,
            breakglass_events: IntCounterVec::new(
                Opts::new(
                    "tessera_breakglass_events_total",
                    "Break-glass events this node served (requested, approved, denied, activated, revoked, use_committed), requests it saw expire while leading (expired), and shares or signature shares it released under a grant (released); summed over the nodes, each event counts once.",
                ),
                &["event"],
            )?,
            rotate_required: gauge(
                "tessera_secrets_rotate_required",
                "Secrets whose current version was read under a break-glass grant and not replaced since.",
            )?,
            webhook_deliveries: IntCounter::new(
                "tessera_breakglass_webhook_deliveries_total",
                "Break-glass events this node delivered to the webhook (a 2xx answer).",
            )?,
            webhook_failures: IntCounter::new(
                "tessera_breakglass_webhook_failures_total",
                "Webhook delivery attempts by this node that failed (no connection, a timeout, an answer other than 2xx); each is retried with backoff.",
            )?,
            registry,
        };
        m.registry.register(Box::new(m.requests.clone()))?;
        m.registry.register(Box::new(m.latency.clone()))?;
        m.registry.register(Box::new(m.audit_failures.clone()))?;
        m.registry.register(Box::new(m.share_releases.clone()))?;
        m.registry.register(Box::new(m.bad_shares.clone()))?;
        m.registry.register(Box::new(m.ack_wait.clone()))?;
        m.registry.register(Box::new(m.signatures.clone()))?;
        m.registry.register(Box::new(m.cheaters.clone()))?;
        m.registry.register(Box::new(m.replication_lag.clone()))?;
        m.registry.register(Box::new(m.breakglass_events.clone()))?;
        m.registry
            .register(Box::new(m.webhook_deliveries.clone()))?;
        m.registry.register(Box::new(m.webhook_failures.clone()))?;
        Ok(m)
    }

    pub fn observe(&self, operation: &str, outcome: &str, elapsed: Duration) {
        self.requests.with_label_values(&[operation, outcome]).inc();
        self.latency
            .with_label_values(&[operation, outcome])
            .observe(elapsed.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Metrics {
    /// Brings the Raft gauges up to date from this node's status and openraft's metrics.
    /// Called on every scrape, so what Prometheus sees is never older than the scrape itself.
    pub fn refresh(&self, id: NodeId, st: &NodeStatusReply, raft: &Raft, snapshot_installs: u64) {
        let m = self;
        m.term.set(st.term as i64);
        m.leader.set(st.leader.unwrap_or(0) as i64);
        m.is_leader.set(i64::from(st.leader == Some(id)));
        m.commit_index.set(st.committed as i64);
        m.applied_index.set(st.last_applied as i64);
        m.last_log_index.set(st.last_log_index as i64);
        m.snapshot_index.set(st.snapshot_index as i64);
        m.snapshot_installs.set(snapshot_installs as i64);
        m.replication_lag.reset();
        let replication = raft.metrics().borrow().replication.clone();
        for (peer, matched) in replication.into_iter().flatten() {
            if peer == id {
                continue;
            }
            let matched = matched.map(|l| l.index).unwrap_or(0);
            m.replication_lag
                .with_label_values(&[&peer.to_string()])
                .set(st.last_log_index.saturating_sub(matched) as i64);
        }
    }
}

/// A minimal HTTP/1.1 server: `GET /metrics` answers the Prometheus text format, anything else
/// 404. Kept tiny on purpose: it exposes no secrets and parses only the request line.
/// `render` brings the figures up to date and renders them, once per scrape.
pub async fn serve<F, Fut>(listener: TcpListener, render: F)
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = String> + Send,
{
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut n = 0;
            // Read until the end of the request head (or a full buffer / timeout).
            while n < buf.len() {
                let read =
                    tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..])).await;
                match read {
                    Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let head = String::from_utf8_lossy(&buf[..n]);
            let line = head.lines().next().unwrap_or("");
            let mut parts = line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let (status, ctype, body) =
                if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
                    (
                        "200 OK",
                        "text/plain; version=0.0.4; charset=utf-8",
                        render().await,
                    )
                } else {
                    (
                        "404 Not Found",
                        "text/plain",
                        "not found; try /metrics\n".to_string(),
                    )
                };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
            let _ = sock.shutdown().await;
        });
    }
}
