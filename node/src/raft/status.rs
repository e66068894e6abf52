//! This node's own view of Raft, as `tessera status` and the metrics report it.

use tessera_proto::NodeStatusReply;

use super::{NodeId, Raft};

/// This node's view: term, leader, indices, role, and its public keys.
pub async fn local_status(
    raft: &Raft,
    id: NodeId,
    region: &str,
    (sealing_key, ack_key): (String, String),
    certificate: Vec<u8>,
) -> NodeStatusReply {
    let m = raft.metrics().borrow().clone();
    let committed = raft
        .with_raft_state(|st| st.committed.map(|l| l.index))
        .await
        .ok()
        .flatten()
        .unwrap_or(0);
    NodeStatusReply {
        id,
        region: region.to_string(),
        term: m.current_term,
        last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
        last_log_index: m.last_log_index.unwrap_or(0),
        snapshot_index: m.snapshot.map(|l| l.index).unwrap_or(0),
        purged_index: m.purged.map(|l| l.index).unwrap_or(0),
        state: format!("{:?}", m.state),
        leader: m.current_leader,
        committed,
        sealing_key,
        ack_key,
        certificate,
        unix_millis: super::clock::now_millis(),
    }
}
