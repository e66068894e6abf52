//! Break-glass notifications: every event of every request (`events`) reaches the webhook
//! (`webhook`) at least once, sent by the cluster rather than by each node.
//!
//! The leader delivers. It reads the events off the replicated records, POSTs each one the
//! records do not mark as notified, and then commits which it delivered
//! (`Op::BreakGlassNotified`, signed with its acknowledgement key). A leader that dies between
//! a delivery and that commit leaves the events unmarked, and the next leader sends them again
//! with the same ids: at least once, never lost across a leader change, duplicates dropped by
//! the receiver by `X-Tessera-Event-Id`. A failed attempt is counted
//! (`tessera_breakglass_webhook_failures_total`) and retried with exponential backoff.
//!
//! "expired" is the one event no command makes: the leader that first sees a request past its
//! end writes its audit line and counts it (`tessera_breakglass_events_total{event="expired"}`),
//! with or without a webhook.
//!
//! # Security
//!
//! Notification is liveness, not safety: a compromised leader (or a member that commits a
//! false "notified") can delay or suppress a notification, never change a request, a grant or
//! a use. The events stay in the replicated record, in `breakglass show`, and in the audit
//! lines of the nodes that served them.

pub mod events;
pub mod webhook;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::audit::AuditRecord;
use crate::node::Node;
use crate::state::breakglass::Status;
use crate::state::ops::breakglass::{notified_message, MAX_NOTIFIED};
use crate::state::{Op, Timestamp};
use events::Event;
use webhook::Webhook;

/// How often the leader looks for events to deliver.
const TICK: Duration = Duration::from_millis(250);
/// The first retry's delay after a failed attempt, doubled each time up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a delivered event waits for its "notified" record before it is sent again (the
/// record was lost, e.g. refused while leadership moved).
const MARK_TIMEOUT: Duration = Duration::from_secs(30);

/// The leader's delivery loop (runs on every node; acts while this node leads).
pub struct Notifier {
    node: Arc<Node>,
    webhook: Option<Webhook>,
    /// Delivered here, "notified" record not applied yet.
    sent: HashMap<String, Instant>,
    /// Failed here: when to try next, and the delay after that.
    backoff: HashMap<String, (Instant, Duration)>,
    /// "expired" events this node has written an audit line for.
    audited: HashSet<String>,
}

impl Notifier {
    /// The notifier of `node`, with the webhook its configuration names (checked at start, so
    /// a bad URL or an unreadable secret stops the node with a clear message).
    pub fn new(node: Arc<Node>) -> anyhow::Result<Notifier> {
        let webhook = match &node.config.webhook {
            Some(c) => Some(Webhook::from_config(c)?),
            None => None,
        };
        if let Some(w) = &webhook {
            tracing::info!(url = %w.url(), "break-glass events go to the webhook");
        }
        Ok(Notifier {
            node,
            webhook,
            sent: HashMap::new(),
            backoff: HashMap::new(),
            audited: HashSet::new(),
        })
    }

    pub async fn run(mut self) {
        loop {
            tokio::time::sleep(TICK).await;
            if !self.node.leader.is_me() {
                // A later term starts from the records, not from what this node did before.
                self.sent.clear();
                self.backoff.clear();
                continue;
            }
            self.pass().await;
        }
    }

    /// The events no record marks as notified yet, oldest request first.
    fn pending(&self, now: Timestamp) -> Vec<Event> {
        let st = self.node.state.read().expect("state lock");
        let cluster = &self.node.config.cluster_id;
        let mut out = Vec::new();
        for r in st.model.breakglass.values() {
            // Most records are done: every event marked (the count is cheap, the events not).
            // Without a webhook only an expiry has anything left to do.
            let done = match self.webhook {
                Some(_) => r.notified.len() >= events::count_of(r, now),
                None => r.notified.contains("expired") || r.status(now) != Status::Expired,
            };
            if done {
                continue;
            }
            for e in events::events_of(cluster, r, now) {
                if !r.notified.contains(&e.key) {
                    out.push(e);
                }
            }
        }
        out
    }

    async fn pass(&mut self) {
        let now = Timestamp::now();
        let pending = self.pending(now);
        let live: HashSet<&str> = pending.iter().map(|e| e.id.as_str()).collect();
        self.sent
            .retain(|id, at| live.contains(id.as_str()) && at.elapsed() < MARK_TIMEOUT);
        self.backoff.retain(|id, _| live.contains(id.as_str()));
        let mut done: Vec<(String, String)> = Vec::new();
        for mut e in pending {
            if done.len() >= MAX_NOTIFIED || self.sent.contains_key(&e.id) {
                continue;
            }
            if self
                .backoff
                .get(&e.id)
                .is_some_and(|(next, _)| Instant::now() < *next)
            {
                continue;
            }
            if e.event == "expired" && !self.audited.contains(&e.id) {
                if self.audit_expired(&e).await.is_err() {
                    continue; // counted by the auditor; tried again next pass
                }
                self.audited.insert(e.id.clone());
            }
            let Some(w) = &self.webhook else {
                // Nothing to send; only the expiry's bookkeeping is recorded.
                if e.event == "expired" {
                    done.push((e.request.clone(), e.key.clone()));
                }
                continue;
            };
            let age = now.unix_secs().saturating_sub(e.time.unix_secs());
            if age > w.max_age_secs {
                tracing::warn!(event = %e.id, age, "break-glass event older than the webhook's max_age_secs; not sent");
                done.push((e.request.clone(), e.key.clone()));
                continue;
            }
            e.sent_by = crate::state::members::node_dns_name(self.node.id);
            let body = serde_json::to_vec(&e).unwrap_or_default();
            match w.deliver(&e.id, e.event, &body).await {
                Ok(()) => {
                    self.node.metrics.webhook_deliveries.inc();
                    self.backoff.remove(&e.id);
                    done.push((e.request.clone(), e.key.clone()));
                }
                Err(err) => {
                    self.node.metrics.webhook_failures.inc();
                    let delay = self
                        .backoff
                        .get(&e.id)
                        .map(|(_, d)| (*d * 2).min(MAX_BACKOFF))
                        .unwrap_or(FIRST_BACKOFF);
                    tracing::warn!(event = %e.id, retry_in_ms = delay.as_millis() as u64, "webhook delivery failed: {err}");
                    self.backoff
                        .insert(e.id.clone(), (Instant::now() + delay, delay));
                }
            }
        }
        if done.is_empty() {
            return;
        }
        for (request, key) in &done {
            self.sent.insert(format!("{request}.{key}"), Instant::now());
        }
        let signature = self.node.vault.sign_statement(&notified_message(
            &self.node.config.cluster_id,
            self.node.id,
            &done,
        ));
        let leader = self.node.leader.clone();
        let op = Op::BreakGlassNotified {
            node: self.node.id,
            items: done,
            signature,
        };
        // Not awaited: the next pass skips what is in `sent` meanwhile.
        tokio::spawn(async move { leader.submit_own(op).await });
    }

    /// The audit line (and count) for a request this leader saw expire.
    async fn audit_expired(&self, e: &Event) -> Result<(), crate::error::Refusal> {
        self.node
            .audit
            .append(AuditRecord {
                time: String::new(),
                request_id: e.id.clone(),
                identity: e.requester.clone(),
                operation: "breakglass.expired".into(),
                path: e.path.clone(),
                outcome: "ok".into(),
                remote_addr: String::new(),
                error: None,
                detail: Some(format!("grant {} expired at {}", e.request, e.at)),
            })
            .await?;
        self.node
            .metrics
            .breakglass_events
            .with_label_values(&["expired"])
            .inc();
        Ok(())
    }
}
