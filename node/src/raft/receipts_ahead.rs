//! Followers check the receipts of the writes in an append on another task, while Raft stores
//! the entries and waits for the disk.

use tessera_crypto::ack::{receipt_signed, verify_ack};

use super::state_machine::SharedState;
use super::Entry;
use crate::state::kv::{receipt_statement, KvPut};
use crate::state::Op;
use openraft::EntryPayload;

/// Starts checking the receipts of the writes in an append on another task, while Raft
/// stores the entries and waits for the disk. Apply checks every receipt again and alone
/// decides (`state::kv::validate_put`); it then finds these already verified, instead of
/// verifying them one after another on its single task.
pub fn check_receipts_ahead(state: &SharedState, cluster_id: &str, entries: &[Entry]) {
    let puts: Vec<&KvPut> = entries
        .iter()
        .filter_map(|e| match &e.payload {
            EntryPayload::Normal(cmd) => Some(cmd.each()),
            _ => None,
        })
        .flatten()
        .filter_map(|c| match &c.op {
            Op::KvPut(p) => Some(&**p),
            _ => None,
        })
        .collect();
    // Heartbeats and other entries: nothing to check, and no membership to copy.
    if puts.is_empty() {
        return;
    }
    let members = {
        let st = state.read().expect("state lock");
        st.model.members.clone()
    };
    // The statements are hashed here (cheap); only the signature checks go to the task.
    // Receipts a holder signed together share one signature over one message: it is
    // verified once.
    let mut checks: Vec<([u8; 32], Vec<u8>, [u8; 64])> = puts
        .into_iter()
        .flat_map(|p| {
            p.receipts.iter().filter_map(|(node, receipt)| {
                let (key, statement) = receipt_statement(&members, cluster_id, p, *node).ok()?;
                let (msg, sig) = receipt_signed(cluster_id, *node, &statement, receipt).ok()?;
                Some((key, msg, sig))
            })
        })
        .collect();
    checks.sort_unstable();
    checks.dedup();
    if checks.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for (key, msg, signature) in &checks {
            // Only the verification is wanted here; apply reports any failure.
            let _ = verify_ack(key, msg, signature);
        }
    });
}
