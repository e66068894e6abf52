//! Forming a new cluster: the first voters initialize the membership, and the first leader
//! writes the starting threshold into the replicated settings.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::leader::{Leader, LeaderOp};
use super::state_machine::SharedState;
use super::{node_dns_name, NodeId, NodeInfo, Raft};
use crate::config::NodeConfig;
use crate::state::{Command, Op};

/// Forms the initial cluster from the configured peers. Every bootstrap member does the same
/// with the same membership, which openraft allows; a node that already has state skips it.
pub async fn initialize(raft: &Raft, config: &NodeConfig) {
    if raft.is_initialized().await.unwrap_or(true) {
        return;
    }
    let members: BTreeMap<NodeId, NodeInfo> = config
        .peers
        .iter()
        .map(|p| {
            (
                p.id,
                NodeInfo {
                    addr: p.address.clone(),
                    region: p.region.clone(),
                    sealing_key: p.sealing_key.clone(),
                    ack_key: p.ack_key.clone(),
                    certificate: tessera_crypto::attest::pem_to_der(p.certificate.as_bytes())
                        .unwrap_or_default(),
                },
            )
        })
        .collect();
    match raft.initialize(members).await {
        Ok(()) => tracing::info!(id = config.id, "initialized cluster membership"),
        Err(e) => tracing::info!(id = config.id, "not initializing: {e}"),
    }
}

/// The first leader writes the threshold `operator init` chose into the replicated settings.
pub async fn seed_settings(config: NodeConfig, state: SharedState, leader: Arc<Leader>) {
    let Some(t) = config.initial_threshold else {
        return;
    };
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seeded = state
            .read()
            .expect("state lock")
            .model
            .settings
            .threshold
            .is_some();
        if seeded {
            return;
        }
        if !leader.is_me() {
            continue;
        }
        let cmd = Command::by_node(
            node_dns_name(config.id),
            Op::SetSettings {
                threshold: Some(t),
                ack_fault_tolerance: config.ack_fault_tolerance,
                allow_unsafe_topology: Some(config.allow_unsafe_topology),
            },
        );
        match leader.submit(LeaderOp::Command(cmd)).await {
            Ok(_) => return,
            Err(e) => tracing::error!("cannot set the initial threshold {t}: {e}"),
        }
    }
}
