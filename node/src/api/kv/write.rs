//! The write path's two waits: the other holders' receipts before a write is submitted (a
//! holder that finds its share bad stops the write before anything is stored), and the
//! acknowledgements that make it readable at once after it commits.

use std::time::{Duration, Instant};

use tessera_proto::{ReceiptRequest, ShareEnvelope};

use super::bad;
use crate::api::Api;
use crate::error::Refusal;
use crate::state::kv::{self as model_kv, KvPut as KvPutCmd};

/// How long a write waits for the other holders' receipts before it is submitted without the
/// missing ones (those holders then acknowledge through Raft once they apply it).
const RECEIPT_WAIT: Duration = Duration::from_millis(500);
/// How much longer the other holders get once enough receipts are in.
const RECEIPT_GRACE: Duration = Duration::from_millis(100);

impl Api {
    /// Receipts for a write about to be submitted: this node's own and those of the other
    /// holders, asked at once. A holder that finds its share bad refuses the write here, before
    /// anything is stored. One that cannot be reached in time is left out: it acknowledges
    /// through Raft when it applies the write, as a holder that was down does.
    pub(super) async fn gather_receipts(
        &self,
        p: &KvPutCmd,
    ) -> Result<Vec<(u64, Vec<u8>)>, Refusal> {
        let need = {
            let st = self.node.state.read().expect("state lock");
            st.model.settings.acks_required(p.holders.len())
        };
        let members = self.members_now();
        let cluster_id = self.node.config.cluster_id.as_str();
        let commitments: Vec<Vec<u8>> = p.commitments.0.iter().map(|c| c.to_vec()).collect();
        let mut asks = tokio::task::JoinSet::new();
        for (h, env) in p.holders.iter().zip(&p.envelopes) {
            if *h == self.node.id {
                continue;
            }
            let (Some(info), id) = (members.all.get(h), *h) else {
                continue;
            };
            let Ok(queue) = self.node.peers.receipts(id, &info.addr) else {
                continue;
            };
            let req = ReceiptRequest {
                path: p.path.clone(),
                version: p.version,
                commitments: commitments.clone(),
                holders: p.holders.clone(),
                envelope: Some(ShareEnvelope {
                    enc: env.enc.to_vec(),
                    ciphertext: env.ciphertext.clone(),
                }),
            };
            asks.spawn(async move {
                let answer = queue.send(req).await.unwrap_or_else(|_| {
                    Err(Refusal::unavailable(
                        "the receipt queue for this holder closed",
                    ))
                });
                (id, answer)
            });
        }
        // This node's own share is checked now; its receipt is signed once the others are
        // in, together with those of other writes gathered meanwhile (`OwnTicket`).
        let own = match p.holders.iter().position(|h| *h == self.node.id) {
            Some(pos) => {
                let statement = self
                    .node
                    .vault
                    .check_for_receipt(
                        &p.path,
                        p.version,
                        &p.commitments,
                        &p.holders,
                        &p.envelopes[pos],
                    )
                    .map_err(|e| {
                        bad(format!(
                            "envelope for node {} (this node): {e}",
                            self.node.id
                        ))
                    })?;
                Some(self.node.vault.file_own_receipt(statement))
            }
            None => None,
        };
        let mut receipts = Vec::with_capacity(p.holders.len());
        let deadline = tokio::time::Instant::now() + RECEIPT_WAIT;
        // Once enough receipts are in, the others get a little longer: a holder's refusal then
        // still stops a bad write before anything is stored, and a late receipt saves that
        // holder an acknowledgement round through Raft.
        let mut until = deadline;
        loop {
            if receipts.len() + usize::from(own.is_some()) >= need && until == deadline {
                until = deadline.min(tokio::time::Instant::now() + RECEIPT_GRACE);
            }
            match tokio::time::timeout_at(until, asks.join_next()).await {
                Ok(Some(Ok((id, Ok(receipt))))) => {
                    // Checked here as every node checks it on apply: a receipt that does not
                    // verify (a faulty or hostile holder) is left out instead of having the
                    // whole write refused on apply, and apply finds the others verified.
                    // Receipts a holder signed together cost one verification for all.
                    match model_kv::check_receipt(&members, cluster_id, p, id, &receipt) {
                        Ok(()) => receipts.push((id, receipt)),
                        Err(e) => {
                            tracing::warn!(node = id, error = %e, "left out a receipt that does not verify")
                        }
                    }
                }
                // The holder opened its envelope and found its share bad.
                Ok(Some(Ok((id, Err(Refusal::Invalid { reason }))))) => {
                    return Err(bad(format!(
                        "node {id} refused its share of this write: {reason}; nothing was stored"
                    )));
                }
                Ok(Some(Ok((id, Err(e))))) => {
                    tracing::debug!(node = id, error = %e, "no receipt from holder");
                }
                Ok(Some(Err(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if let Some(own) = own {
            receipts.insert(0, (self.node.id, own.receipt()));
        }
        Ok(receipts)
    }

    /// Waits until `t + f` holders acknowledged the version, or a holder complained.
    pub(super) async fn wait_for_acks(&self, path: &str, version: u64) -> Result<u32, Refusal> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut rx = self.node.reads.applied_watch();
        let (mut have, mut need) = (0, 0);
        loop {
            {
                let st = self.node.state.read().expect("state lock");
                if let Some(v) = st
                    .model
                    .secrets
                    .get(path)
                    .and_then(|e| e.versions.get(&version))
                {
                    if let Some(why) = v.lost() {
                        return Err(Refusal::rejected(format!(
                            "version {version} of {path:?} is invalid: {why}"
                        )));
                    }
                    need = v.acks_needed(st.model.settings.acks_required(v.holders.len()));
                    have = v.acks.len();
                    if have >= need {
                        return Ok(have as u32);
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                return Err(Refusal::TooFewAcks {
                    have: have as u32,
                    need: need as u32,
                    reason: format!(
                        "version {version} of {path:?} is written but only {have} holders acknowledged within 15 s; it becomes readable when enough holders catch up"
                    ),
                });
            }
        }
    }
}
