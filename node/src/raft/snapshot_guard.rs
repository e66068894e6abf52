//! A snapshot from the leader, received chunk by chunk and checked whole before openraft sees
//! any of it: openraft installs what it is given, so the vouches (`state::checkpoint`) are
//! checked here, and a snapshot that fails them never reaches the state machine.
//!
//! # Security
//!
//! A follower's state is replaced only by a snapshot that a majority of the snapshot's own
//! voters (at least two) vouch for (`checkpoint::check_snapshot`). The snapshot's metadata must
//! name the very index and membership its vouched bytes hold: openraft records the metadata's,
//! so a leader cannot pair certified bytes with another index. A refused snapshot leaves the
//! follower as it was, behind; the leader may try again once more voters have vouched.

use std::io::Cursor;
use std::sync::Arc;

use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::storage::Snapshot;
use tokio::sync::Mutex;

use super::state_machine::{snapshot_view, SharedState};
use super::{codec, NodeId, Raft, TypeConfig};
use crate::error::Refusal;
use crate::state::authority::Trust;
use crate::state::checkpoint::{check_snapshot, CertifiedSnapshot, Known, Offered};

/// A snapshot being received: from whom, which one, and the bytes so far.
struct Incoming {
    from: NodeId,
    id: String,
    data: Vec<u8>,
}

pub struct SnapshotGuard {
    cluster_id: String,
    trust: Arc<Trust>,
    state: SharedState,
    incoming: Mutex<Option<Incoming>>,
}

/// What the service answers a leader: openraft's own reply, or its fatal error.
type Reply = Result<
    InstallSnapshotResponse<NodeId>,
    openraft::error::RaftError<NodeId, openraft::error::InstallSnapshotError>,
>;

impl SnapshotGuard {
    pub fn new(cluster_id: String, trust: Arc<Trust>, state: SharedState) -> Self {
        Self {
            cluster_id,
            trust,
            state,
            incoming: Mutex::new(None),
        }
    }

    /// Takes one chunk from leader `from`. Chunks are gathered here; the last one has the
    /// whole snapshot checked, and only then handed to openraft.
    pub async fn receive(
        &self,
        raft: &Raft,
        from: NodeId,
        req: InstallSnapshotRequest<TypeConfig>,
    ) -> Result<Reply, Refusal> {
        let my_vote = raft.metrics().borrow().vote;
        let resp = InstallSnapshotResponse { vote: my_vote };
        // A leader of an older term is told the newer vote, as openraft would tell it.
        if req.vote < my_vote {
            return Ok(Ok(resp));
        }
        let mut incoming = self.incoming.lock().await;
        if req.offset == 0 {
            *incoming = Some(Incoming {
                from,
                id: req.meta.snapshot_id.clone(),
                data: Vec::new(),
            });
        }
        let Some(cur) = incoming.as_mut().filter(|c| {
            c.from == from && c.id == req.meta.snapshot_id && c.data.len() as u64 == req.offset
        }) else {
            return Err(Refusal::invalid(format!(
                "snapshot chunk at offset {} of {:?} does not follow the chunks received",
                req.offset, req.meta.snapshot_id
            )));
        };
        cur.data.extend_from_slice(&req.data);
        if !req.done {
            return Ok(Ok(resp));
        }
        let data = incoming.take().map(|c| c.data).unwrap_or_default();
        drop(incoming);
        if let Err(why) = self.check(&req.meta, &data) {
            tracing::warn!(leader = from, snapshot = %req.meta.snapshot_id, %why, "refused a snapshot");
            return Err(Refusal::rejected(why));
        }
        let snapshot = Snapshot {
            meta: req.meta,
            snapshot: Box::new(Cursor::new(data)),
        };
        Ok(raft
            .install_full_snapshot(req.vote, snapshot)
            .await
            .map(|r| InstallSnapshotResponse { vote: r.vote })
            .map_err(openraft::error::RaftError::Fatal))
    }

    /// Whether the whole snapshot may replace this node's state; why not.
    fn check(&self, meta: &super::SnapshotMeta, data: &[u8]) -> Result<(), String> {
        let wire: CertifiedSnapshot =
            codec::decode(data).map_err(|e| format!("unreadable snapshot: {e}"))?;
        let view = snapshot_view(&wire.state).map_err(|e| format!("unreadable snapshot: {e}"))?;
        let Some(last) = meta.last_log_id else {
            return Err("the snapshot names no log index".into());
        };
        if view.last_applied != meta.last_log_id || view.membership != meta.last_membership {
            return Err(format!(
                "the snapshot's metadata (index {}) does not match the state it carries",
                last.index
            ));
        }
        let own = self.state.read().expect("state lock");
        let offered = Offered {
            index: last.index,
            state: &wire.state,
            vouches: &wire.vouches,
            members: &view.members,
            revocations: &view.revocations,
        };
        let known = Known {
            members: &own.model.members,
            revocations: &own.model.revocations,
        };
        check_snapshot(&self.trust, &self.cluster_id, &offered, &known).map_err(|e| e.to_string())
    }
}
