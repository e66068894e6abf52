//! Law 4 at the door: the node's audit log as the API uses it. A request's line is appended
//! and made durable before its answer leaves the node; if it cannot be, the request is refused.
//!
//! When no other append is under way the line is written and synced on the calling thread:
//! handing a lone fsync to another thread and back costs more than the fsync blocks this one.
//! Concurrent appends go to blocking threads, where they share fsyncs (group commit) without
//! holding up the runtime.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{AuditLog, AuditRecord};
use crate::error::Refusal;

pub struct Auditor {
    log: Arc<AuditLog>,
    /// Appends under way.
    in_flight: Arc<AtomicUsize>,
    /// Counts appends that failed (exported as `tessera_audit_failures_total`).
    failures: prometheus::IntCounter,
}

impl Auditor {
    pub fn new(log: AuditLog, failures: prometheus::IntCounter) -> Auditor {
        Auditor {
            log: Arc::new(log),
            in_flight: Arc::default(),
            failures,
        }
    }

    /// Appends the audit line for a request and returns once it is durable. A failure is
    /// counted and returned: the caller must then refuse the request (law 4).
    pub async fn append(&self, record: AuditRecord) -> Result<(), Refusal> {
        self.append_all(vec![record]).await
    }

    /// `append` for several requests answered together: their lines are written together and
    /// made durable with one sync; an error refuses all of them.
    pub async fn append_all(&self, records: Vec<AuditRecord>) -> Result<(), Refusal> {
        let busy = self.in_flight.clone();
        let res = if busy.fetch_add(1, Ordering::AcqRel) == 0 {
            let done = self.log.append_all(&records);
            busy.fetch_sub(1, Ordering::AcqRel);
            done.map_err(|e| e.to_string())
        } else {
            let log = self.log.clone();
            // The counter is released by the blocking task itself, even if this request is
            // dropped while it runs.
            tokio::task::spawn_blocking(move || {
                let done = log.append_all(&records);
                busy.fetch_sub(1, Ordering::AcqRel);
                done
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        };
        res.map_err(|e| {
            self.failures.inc();
            tracing::error!("audit log write failed, refusing request: {e}");
            Refusal::AuditUnavailable
        })
    }
}
