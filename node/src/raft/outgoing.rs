//! What the state machine asks this node to submit through Raft: its acknowledgements (and
//! complaints) for the versions it received, signed and sent in batches (the ack pipeline), and
//! its DKG messages.
//!
//! A holder that opened and verified its share acknowledges it; one whose share does not verify
//! complains. Confirmations (a share this node acknowledged on receiving the write is now at
//! rest) are not urgent and ride with the next batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::leader::Leader;
use super::state_machine::{Outgoing, SharedState};
use super::NodeId;
use crate::shares::ShareVault;
use crate::state::kv::AckItem;
use crate::state::Op;

/// An acknowledgement to send: path, version, and a complaint if the share did not verify.
type PendingAck = (String, u64, Option<String>);

/// What the pipeline needs: the replicated state to see what is still to send, the vault to
/// sign, and the way to the leader.
pub struct Acks {
    pub id: NodeId,
    pub state: SharedState,
    pub vault: Arc<ShareVault>,
    pub leader: Arc<Leader>,
}

impl Acks {
    /// Signs and submits this node's acknowledgements (and complaints) through Raft, in batches.
    /// A failed submission is retried; an acknowledgement for a version that is gone is dropped.
    /// Confirmations (a share this node acknowledged on receiving the write is now at rest) are
    /// not urgent: they wait up to `CONFIRM_DELAY` and ride with the next batch, so that they
    /// do not hold up the Raft round another holder's acknowledgement is waiting for.
    pub async fn run(self, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
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
                        let leader = self.leader.clone();
                        tokio::spawn(async move { leader.submit_own(op).await });
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
            self.leader
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
            // Having vouched for this share, this node cannot complain about it (every node
            // refuses that); sending it would refuse the whole batch with it.
            if acked && complaint.is_some() {
                tracing::error!(%path, version, "a share this node acknowledged no longer checks; not complaining");
                continue;
            }
            if acked && complaint.is_none() {
                later.push((path, version, complaint));
            } else {
                now.extend(self.vault.ack_item(&path, version, v, complaint));
            }
        }
        (now, later)
    }

    /// The signed acknowledgement for a version, if it is still to be sent.
    fn ack_now(&self, path: &str, version: u64, complaint: &Option<String>) -> Option<AckItem> {
        let st = self.state.read().expect("state lock");
        let v = st.model.secrets.get(path)?.versions.get(&version)?;
        let acked = v.acks.contains_key(&self.id);
        let done = acked && !v.envelopes.contains_key(&self.id);
        if done || v.complaints.contains_key(&self.id) || (acked && complaint.is_some()) {
            return None;
        }
        self.vault.ack_item(path, version, v, complaint.clone())
    }
}
