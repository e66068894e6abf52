//! Forming a new cluster: the first voters initialize Raft's membership, and the first leader
//! carries the signed genesis document (threshold, roots, first voters) into the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::leader::{Leader, LeaderOp};
use super::state_machine::SharedState;
use super::{node_dns_name, NodeId, NodeInfo, Raft};
use crate::config::NodeConfig;
use crate::state::authority::Trust;
use crate::state::{Command, Op};

/// Forms the initial cluster: from the genesis document's voters when the node has one
/// (checked as on apply: signed by a root, each voter's keys and region attested), else from
/// the configured peers. Every bootstrap member does the same with the same membership, which
/// openraft allows; a node that already has state skips it.
pub async fn initialize(raft: &Raft, config: &NodeConfig, trust: &Trust) {
    if raft.is_initialized().await.unwrap_or(true) {
        return;
    }
    let members: BTreeMap<NodeId, NodeInfo> = match &config.genesis {
        Some(path) => {
            let start = crate::state::genesis::read(path).and_then(|g| {
                g.verify(trust, &config.cluster_id)
                    .map_err(|e| anyhow::anyhow!("genesis {}: {e}", path.display()))
            });
            match start {
                Ok(s) => s.members.voters,
                Err(e) => {
                    tracing::error!("not initializing: {e}");
                    return;
                }
            }
        }
        None => config
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
            .collect(),
    };
    match raft.initialize(members).await {
        Ok(()) => tracing::info!(id = config.id, "initialized cluster membership"),
        Err(e) => tracing::info!(id = config.id, "not initializing: {e}"),
    }
}

/// The first leader carries the genesis document into the log; every node checks it when it
/// applies it (`state::genesis`). A node without one (a later joiner) only waits.
pub async fn seed_genesis(config: NodeConfig, state: SharedState, leader: Arc<Leader>) {
    let Some(path) = config.genesis.clone() else {
        return;
    };
    let genesis = match crate::state::genesis::read(&path) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!("{e}");
            return;
        }
    };
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if state.read().expect("state lock").model.genesis.is_some() {
            return;
        }
        if !leader.is_me() {
            continue;
        }
        let cmd = Command::by_node(
            node_dns_name(config.id),
            Op::Genesis(Box::new(genesis.clone())),
        );
        match leader.submit(LeaderOp::Command(cmd)).await {
            Ok(_) => return,
            Err(e) => {
                tracing::error!("the genesis document {} was refused: {e}", path.display());
                return;
            }
        }
    }
}
