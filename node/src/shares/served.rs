//! Which uses of break-glass grants this node has served: at most one share (or signature
//! share) per committed use, remembered on disk before anything is released.
//!
//! # Security
//!
//! A grant's `uses` budget is exact across holders only if no holder serves one use twice: the
//! cluster commits at most `uses` use ids, and each holder releases once per id. The record is
//! written (synced) before the share leaves, so a restart, a crash right after the release, or
//! a retry from the client cannot release a second share for the same use. A release that
//! fails after the record was written has still spent the use on this node: a failed read
//! spends its use, as the rule says, never the other way round.

use std::sync::Mutex;

use crate::db::{cf, synced, CF_SHARES};
use crate::error::Refusal;

use super::ShareVault;

/// Serialises check-and-record, so that two calls naming one use cannot both pass.
#[derive(Default)]
pub(super) struct Served {
    lock: Mutex<()>,
}

fn served_key(grant: &str, use_id: &str) -> Vec<u8> {
    // Neither contains a NUL (hex ids, checked on apply); the prefix keeps them apart from
    // shares (`share/`) and key shares.
    format!("breakglass-served/{grant}\0{use_id}").into_bytes()
}

impl ShareVault {
    /// Records that this node serves use `use_id` of `grant` (what, in `what`), or refuses
    /// if it already did. Durable before it returns.
    pub fn serve_use(&self, grant: &str, use_id: &str, what: &str) -> Result<(), Refusal> {
        let _one_at_a_time = self.served.lock.lock().expect("served lock");
        let key = served_key(grant, use_id);
        let shares = cf(&self.db, CF_SHARES);
        let seen = self
            .db
            .get_cf(shares, &key)
            .map_err(|e| Refusal::internal(format!("share store: {e}")))?;
        if let Some(before) = seen {
            return Err(Refusal::rejected(format!(
                "node {} already served use {use_id} of break-glass grant {grant} ({}); each use is one read or one signature: commit another use",
                self.node_id,
                String::from_utf8_lossy(&before)
            )));
        }
        self.db
            .put_cf_opt(shares, &key, what.as_bytes(), &synced())
            .map_err(|e| Refusal::internal(format!("share store: {e}")))
    }
}
