//! Raft's own membership may only follow the signed one.
//!
//! # Security
//!
//! openraft takes a membership entry into effect the moment a follower appends it, outside the
//! state machine, so the signed-command check on apply cannot stop it: a compromised leader
//! could append an entry that adds a voter of its own, or drops honest voters, and with them
//! change who commits the log. So a follower looks at every membership entry before it appends
//! it (`raft::append_guard`), once it has applied the entries committed before it (the signed
//! `MemberAdd` or `MemberRemove` that a real change follows is among them), and refuses the
//! entry (and everything after it) unless it is a step towards the signed membership
//! ([`crate::state::Members`]):
//! - a node new to Raft's membership must be a signed member, with exactly its signed address,
//!   region, keys and certificate;
//! - a voter in any of the entry's configurations must be a signed voter, or already a voter
//!   (the old half of a joint configuration while one leaves);
//! - a signed voter that votes now keeps its vote in every configuration, and a signed member
//!   stays a node: only a signed removal takes either away.
//!
//! A leader checks the same before it proposes a change ([`check_leader_op`]), so an honest
//! leader never starts a change its followers would refuse. Before the genesis document has
//! applied there is no signed membership yet, and a node follows the bootstrap membership of
//! its own configuration.

use openraft::Membership;

use super::leader::LeaderOp;
use super::{NodeId, NodeInfo};
use crate::error::Refusal;
use crate::state::Members;

/// Why `next` is not a step from `prev` towards the signed membership, if it is not.
pub fn check(
    signed: &Members,
    prev: &Membership<NodeId, NodeInfo>,
    next: &Membership<NodeId, NodeInfo>,
) -> Result<(), String> {
    for (id, info) in next.nodes() {
        if prev.get_node(id).is_some() {
            continue;
        }
        match signed.all.get(id) {
            None => {
                return Err(format!(
                    "it adds node {id}, which no signed command made a member"
                ))
            }
            Some(s) if s != info => {
                return Err(format!(
                    "it adds node {id} with an address, region or keys the signed membership does not give it"
                ))
            }
            Some(_) => {}
        }
    }
    let prev_voters: std::collections::BTreeSet<NodeId> = prev.voter_ids().collect();
    for config in next.get_joint_config() {
        for v in config {
            if !signed.voters.contains_key(v) && !prev_voters.contains(v) {
                return Err(format!(
                    "it makes node {v} a voter, which no signed command did"
                ));
            }
        }
        for v in prev_voters.iter().filter(|v| signed.voters.contains_key(v)) {
            if !config.contains(v) {
                return Err(format!(
                    "it takes the vote of node {v}, which no signed command removed"
                ));
            }
        }
    }
    for (id, _) in prev.nodes() {
        if signed.all.contains_key(id) && next.get_node(id).is_none() {
            return Err(format!(
                "it removes node {id}, which no signed command removed"
            ));
        }
    }
    Ok(())
}

/// Whether a leader may start this change: the same rule, before it proposes (a node could
/// forward one nobody signed, and an honest leader must not start a change its followers
/// would refuse).
pub fn check_leader_op(signed: &Members, started: bool, op: &LeaderOp) -> Result<(), Refusal> {
    if !started {
        return Ok(());
    }
    let refuse = |why: String| {
        Err(Refusal::rejected(format!(
            "this Raft membership change departs from the signed membership: {why}"
        )))
    };
    match op {
        LeaderOp::Command(_) => Ok(()),
        LeaderOp::AddLearner { id, node } => match signed.all.get(id) {
            Some(s) if s == node => Ok(()),
            Some(_) => refuse(format!(
                "node {id} with an address, region or keys the signed membership does not give it"
            )),
            None => refuse(format!("no signed command made node {id} a member")),
        },
        LeaderOp::AddVoter { id } if signed.voters.contains_key(id) => Ok(()),
        LeaderOp::AddVoter { id } => refuse(format!("no signed command made node {id} a voter")),
        LeaderOp::Remove { id } if signed.all.contains_key(id) => {
            refuse(format!("no signed command removed node {id}"))
        }
        LeaderOp::Remove { .. } => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn info(id: NodeId) -> NodeInfo {
        NodeInfo {
            addr: format!("127.0.0.1:{}", 7000 + id),
            region: format!("r{}", id % 3),
            ..NodeInfo::default()
        }
    }

    fn membership(voters: &[&[NodeId]], nodes: &[NodeId]) -> Membership<NodeId, NodeInfo> {
        let configs: Vec<BTreeSet<NodeId>> =
            voters.iter().map(|c| c.iter().copied().collect()).collect();
        let nodes: BTreeMap<NodeId, NodeInfo> = nodes.iter().map(|i| (*i, info(*i))).collect();
        Membership::new(configs, nodes)
    }

    fn signed(voters: &[NodeId], learners: &[NodeId]) -> Members {
        let mut m = Members::default();
        for v in voters {
            m.voters.insert(*v, info(*v));
            m.all.insert(*v, info(*v));
        }
        for l in learners {
            m.all.insert(*l, info(*l));
        }
        m
    }

    #[test]
    fn the_steps_of_a_signed_addition_pass() {
        let prev = membership(&[&[1, 2, 3]], &[1, 2, 3]);
        let s = signed(&[1, 2, 3, 4], &[]);
        let learner = membership(&[&[1, 2, 3]], &[1, 2, 3, 4]);
        assert_eq!(check(&s, &prev, &learner), Ok(()));
        let joint = membership(&[&[1, 2, 3], &[1, 2, 3, 4]], &[1, 2, 3, 4]);
        assert_eq!(check(&s, &learner, &joint), Ok(()));
        let last = membership(&[&[1, 2, 3, 4]], &[1, 2, 3, 4]);
        assert_eq!(check(&s, &joint, &last), Ok(()));
    }

    #[test]
    fn the_steps_of_a_signed_removal_pass() {
        let prev = membership(&[&[1, 2, 3, 4]], &[1, 2, 3, 4]);
        let s = signed(&[1, 2, 3], &[]);
        let joint = membership(&[&[1, 2, 3, 4], &[1, 2, 3]], &[1, 2, 3, 4]);
        assert_eq!(check(&s, &prev, &joint), Ok(()));
        let last = membership(&[&[1, 2, 3]], &[1, 2, 3]);
        assert_eq!(check(&s, &joint, &last), Ok(()));
    }

    #[test]
    fn unsigned_changes_are_refused() {
        let prev = membership(&[&[1, 2, 3]], &[1, 2, 3]);
        let s = signed(&[1, 2, 3], &[]);
        // A node nobody added.
        let rogue = membership(&[&[1, 2, 3]], &[1, 2, 3, 9]);
        assert!(check(&s, &prev, &rogue)
            .unwrap_err()
            .contains("adds node 9"));
        // A signed member under another address.
        let s4 = signed(&[1, 2, 3], &[4]);
        let mut moved = info(4);
        moved.addr = "10.0.0.9:1".into();
        let nodes: BTreeMap<NodeId, NodeInfo> =
            [(1, info(1)), (2, info(2)), (3, info(3)), (4, moved)]
                .into_iter()
                .collect();
        let redirected = Membership::new(vec![[1, 2, 3].into()], nodes);
        assert!(check(&s4, &prev, &redirected).is_err());
        // A signed learner made a voter.
        let learner = membership(&[&[1, 2, 3]], &[1, 2, 3, 4]);
        let promoted = membership(&[&[1, 2, 3, 4]], &[1, 2, 3, 4]);
        assert!(check(&s4, &learner, &promoted)
            .unwrap_err()
            .contains("makes node 4 a voter"));
        // An honest voter dropped, jointly or at once.
        let joint = membership(&[&[1, 2, 3], &[1, 2]], &[1, 2, 3]);
        assert!(check(&s, &prev, &joint)
            .unwrap_err()
            .contains("takes the vote of node 3"));
        let at_once = membership(&[&[1, 2]], &[1, 2, 3]);
        assert!(check(&s, &prev, &at_once).is_err());
        // A signed member dropped from the nodes.
        let gone = membership(&[&[1, 2]], &[1, 2]);
        assert!(check(&s, &prev, &gone).is_err());
    }
}
