//! The signed membership (`MemberAdd`, `MemberRemove`): who holds shares, whose
//! acknowledgements count, and which regions the topology law counts.
//!
//! # Security
//!
//! A member's region and keys are what the cluster CA attests in its certificate, checked here
//! by every node; the request names only the node, its address and whether it votes. The
//! topology law is checked here, on apply, against the signed membership, so no node's local
//! view (or lie) decides it.

use super::Ctx;
use crate::error::Refusal;
use crate::state::{topology, Effects, Model, NodeId, NodeInfo};

/// The topology law for a voter set given by regions (unless the cluster allows unsafe ones).
fn check_voters<'a>(m: &Model, regions: impl Iterator<Item = &'a str>) -> Result<(), Refusal> {
    let (Some(t), false) = (m.settings.threshold, m.settings.allow_unsafe_topology) else {
        return Ok(());
    };
    topology::check(&topology::region_counts(regions), t as usize).map_err(|e| {
        Refusal::rejected(format!(
            "this membership change would break the topology guarantee: {e}"
        ))
    })
}

fn started(m: &Model) -> Result<(), Refusal> {
    match m.genesis {
        Some(_) => Ok(()),
        None => Err(Refusal::unavailable(
            "the cluster has not applied its genesis document yet",
        )),
    }
}

pub fn validate_add(
    m: &Model,
    cx: &Ctx,
    id: NodeId,
    addr: &str,
    region: &str,
    voter: bool,
    certificate: &[u8],
) -> Result<NodeInfo, Refusal> {
    started(m)?;
    if id == 0 {
        return Err(Refusal::invalid("a node id is 1 or more"));
    }
    if addr.parse::<std::net::SocketAddr>().is_err() {
        return Err(Refusal::invalid(format!(
            "address {addr:?} must be host:port with an IP host, e.g. 127.0.0.1:7106"
        )));
    }
    if m.members.all.contains_key(&id) {
        return Err(Refusal::already_exists(format!(
            "node {id} is already a member"
        )));
    }
    let attested = cx
        .trust
        .attested_node(certificate, id)
        .map_err(|e| Refusal::unauthenticated(format!("node {id}: {e}")))?;
    if !region.is_empty() && region != attested.region {
        return Err(Refusal::invalid(format!(
            "node {id}'s certificate attests region {:?}, not {region:?}",
            attested.region
        )));
    }
    if voter {
        let regions = m.members.voters.values().map(|n| n.region.as_str());
        check_voters(m, regions.chain([attested.region.as_str()]))?;
    }
    Ok(NodeInfo {
        addr: addr.to_string(),
        region: attested.region.clone(),
        sealing_key: hex::encode(attested.sealing_key),
        ack_key: hex::encode(attested.ack_key),
        certificate: certificate.to_vec(),
    })
}

#[allow(clippy::too_many_arguments)]
pub fn apply_add(
    m: &mut Model,
    cx: &Ctx,
    id: NodeId,
    addr: &str,
    region: &str,
    voter: bool,
    certificate: &[u8],
    fx: &mut Effects,
) {
    // `validate_add` accepted it just before, on this same model.
    let Ok(info) = validate_add(m, cx, id, addr, region, voter, certificate) else {
        return;
    };
    if voter {
        m.members.voters.insert(id, info.clone());
    }
    m.members.all.insert(id, info);
    fx.members = true;
}

pub fn validate_remove(m: &Model, id: NodeId) -> Result<(), Refusal> {
    started(m)?;
    if !m.members.all.contains_key(&id) {
        return Err(Refusal::not_found(format!("node {id} is not a member")));
    }
    if m.members.voters.contains_key(&id) {
        if m.members.voters.len() == 1 {
            return Err(Refusal::rejected("the last voter cannot be removed"));
        }
        let rest = m.members.voters.iter().filter(|(v, _)| **v != id);
        check_voters(m, rest.map(|(_, n)| n.region.as_str()))?;
    }
    Ok(())
}

pub fn apply_remove(m: &mut Model, id: NodeId, fx: &mut Effects) {
    m.members.voters.remove(&id);
    m.members.all.remove(&id);
    fx.members = true;
}
