//! What `status` and `members add` ask of other nodes: each member's own view, and a joining
//! node's public keys, from the node itself over mutual TLS.

use std::time::Duration;

use tessera_proto::{Empty, NodeEntry, NodeStatusReply};

use crate::api::Api;
use crate::error::Refusal;

impl Api {
    /// Every member with what it reports of itself (unreachable ones marked), and the view of
    /// the member that reports itself leader, if one does.
    pub(super) async fn probe_members(&self) -> (Vec<NodeEntry>, Option<NodeStatusReply>) {
        let mut nodes = self.members();
        let probes = nodes.iter().map(|n| {
            let node = self.node.clone();
            let (nid, addr) = (n.id, n.address.clone());
            async move {
                if nid == node.id {
                    return Some(node.local_status().await);
                }
                let mut c = node.peers.raft(nid, &addr).ok()?;
                tokio::time::timeout(Duration::from_millis(1500), c.node_status(Empty {}))
                    .await
                    .ok()?
                    .ok()
                    .map(|r| r.into_inner())
            }
        });
        let reports = futures::future::join_all(probes).await;
        let mut leader_view = None;
        for (n, r) in nodes.iter_mut().zip(reports) {
            match r {
                Some(r) => {
                    n.reachable = true;
                    n.last_applied = r.last_applied;
                    n.state = r.state.clone();
                    if r.leader == Some(r.id) {
                        leader_view = Some(r);
                    }
                }
                None => n.state = "unreachable".into(),
            }
        }
        (nodes, leader_view)
    }

    /// Waits (at most `timeout`) until every reachable member has applied `index`; a member
    /// still behind then is named in this node's log.
    pub(super) async fn wait_members_applied(&self, index: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (nodes, _) = self.probe_members().await;
            let behind: Vec<u64> = nodes
                .iter()
                .filter(|n| n.reachable && n.last_applied < index)
                .map(|n| n.id)
                .collect();
            if behind.is_empty() {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(index, ?behind, "members have not applied the change yet");
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A joining node's certificate (DER), asked of the node itself over mutual TLS (its
    /// certificate must name node `id`), checked against the cluster CA and against the keys
    /// the node reports. Every node checks it again on apply and takes the region and keys
    /// from it, so neither the joiner nor the node taking the request can make them up.
    pub(super) async fn keys_of_joiner(&self, id: u64, address: &str) -> Result<Vec<u8>, Refusal> {
        // An address that cannot be dialled is the request's fault.
        let mut client = self
            .node
            .peers
            .raft(id, address)
            .map_err(|e| Refusal::invalid(e.to_string()))?;
        let status = tokio::time::timeout(Duration::from_secs(5), client.node_status(Empty {}))
            .await
            .map_err(|_| {
                Refusal::unavailable(format!(
                    "node {id} at {address} did not answer; start it first"
                ))
            })?
            .map_err(|s| {
                Refusal::unavailable(format!(
                    "node {id} at {address}: {}; start it first",
                    s.message()
                ))
            })?
            .into_inner();
        let attested = self
            .node
            .trust
            .attested_node(&status.certificate, id)
            .map_err(|e| Refusal::invalid(format!("node {id}: {e}")))?;
        if hex::encode(attested.sealing_key) != status.sealing_key
            || hex::encode(attested.ack_key) != status.ack_key
        {
            return Err(Refusal::invalid(format!(
                "node {id} reports keys its certificate does not attest"
            )));
        }
        Ok(status.certificate)
    }
}
