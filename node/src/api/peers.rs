//! Who may call the node-to-node services: a node certificate, and for the calls that act on
//! the cluster's behalf, a current member.

use tonic::Request;

use super::Node;
use crate::error::Refusal;
use crate::raft::NodeId;
use crate::tls::peer_identity;

/// The node id the caller's certificate proves, or a refusal for anything that is not a node.
pub fn calling_node<T>(req: &Request<T>) -> Result<NodeId, Refusal> {
    let id = peer_identity(req)?;
    id.node.ok_or_else(|| {
        Refusal::unauthenticated(format!(
            "{:?} presented a client certificate; node-to-node services are for cluster nodes only",
            id.common_name
        ))
    })
}

pub fn same_sender(cert: NodeId, claimed: NodeId) -> Result<(), Refusal> {
    if cert != claimed {
        tracing::warn!(
            cert,
            claimed,
            "refused a Raft message sent on behalf of another node"
        );
        return Err(Refusal::unauthenticated(format!(
            "certificate of node {cert} cannot send Raft messages as node {claimed}"
        )));
    }
    Ok(())
}

/// `calling_node`, and none of the node's certificates (nor this one) is revoked.
pub fn peer_node<T>(node: &Node, req: &Request<T>) -> Result<NodeId, Refusal> {
    if crate::byzantine::cut_off() {
        return Err(Refusal::unavailable(
            "TEST BUILD: cut off from the other nodes",
        ));
    }
    let cert = peer_identity(req)?;
    let id = calling_node(req)?;
    let st = node.state.read().expect("state lock");
    match st
        .model
        .revocations
        .refusal(&cert.common_name, Some(id), &cert.serial)
    {
        Some(why) => Err(Refusal::unauthenticated(why)),
        None => Ok(id),
    }
}

/// `peer_node`, and the node is a current member (voter or learner). Forwarding to the
/// leader and holder calls act on the cluster's behalf: a removed node's certificate, still
/// valid, gets nothing.
pub fn member_node<T>(node: &Node, req: &Request<T>) -> Result<NodeId, Refusal> {
    let id = peer_node(node, req)?;
    // The signed membership decides; before the genesis document applied, the bootstrap
    // membership from this node's own configuration.
    let is_member = {
        let st = node.state.read().expect("state lock");
        match st.model.genesis {
            Some(_) => st.model.members.all.contains_key(&id),
            None => node
                .raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&id)
                .is_some(),
        }
    };
    if !is_member {
        return Err(Refusal::unauthenticated(format!(
            "node {id} is not a member of this cluster"
        )));
    }
    Ok(id)
}
