//! Certified checkpoints: every voter hashes the replicated state at the same log indices and
//! signs the digest, so that a follower installs a snapshot only when enough voters vouch for
//! exactly those bytes.
//!
//! Raft lets a leader replace a lagging follower's whole state with a snapshot. A Byzantine
//! leader could send one of its own making (a root policy attached to itself, a membership of
//! its choosing, versions gone), and no signed command would ever be checked: the follower would
//! simply start from that state. So snapshots are taken only at checkpoint indices (every
//! `snapshot_logs_since_last` entries, the same setting on every node), each voter that reaches
//! one by applying the log signs `(cluster, index, SHA-256 of the snapshot bytes)` with its
//! acknowledgement key and submits that vouch through Raft (`Op::Checkpoint`), and a snapshot
//! travels with the vouches for its index (`CertifiedSnapshot`).
//!
//! # Security
//!
//! A follower installs a snapshot only if a majority of the voters that the snapshot itself
//! names vouch for its digest, each with the acknowledgement key its CA-attested certificate
//! carries, none of them revoked, and at least two of them (one voter alone is enough only for a
//! one-voter cluster whose voter the follower already knows). An honest node vouches only for a
//! state it computed itself by applying the committed log, so with one compromised node at
//! least one vouch comes from an honest node, and the digest is that of the true state: a
//! forged snapshot (or a true one with a forged membership) cannot gather the vouches. The
//! digest is over the snapshot's exact bytes, which are deterministic (MessagePack of ordered
//! maps), so honest nodes at the same index agree byte for byte.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tessera_crypto::ack::{statement_digest, verify_ack};
use tessera_crypto::b64;

use super::authority::Trust;
use super::members::{Members, NodeId};
use super::revocations::Revocations;
use crate::error::Refusal;

/// How many checkpoint indices the replicated state keeps vouches for (the newest ones).
const KEPT: usize = 2;

/// The SHA-256 of a snapshot's bytes.
pub fn digest(state: &[u8]) -> [u8; 32] {
    Sha256::digest(state).into()
}

/// What a voter signs for a checkpoint: its own label, so that no acknowledgement, receipt or
/// DKG message can pass for it.
pub fn statement(cluster_id: &str, index: u64, digest: &[u8; 32]) -> Vec<u8> {
    statement_digest(
        &[b"tessera/checkpoint/v1", cluster_id.as_bytes(), digest],
        &[index],
    )
}

/// One voter's signed word that the state at a checkpoint index has this digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vouch {
    pub node: NodeId,
    #[serde(with = "b64::array")]
    pub digest: [u8; 32],
    #[serde(with = "b64::bytes")]
    pub signature: Vec<u8>,
}

/// The checkpoints as the replicated state records them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    /// The vouches for the newest `KEPT` checkpoint indices.
    pub by_index: BTreeMap<u64, BTreeMap<NodeId, Vouch>>,
    /// Whether anything but vouches was applied since the last checkpoint. A checkpoint index
    /// reached with nothing new is skipped: vouches are entries too, and without this rule an
    /// idle cluster with more voters than the interval would vouch for ever.
    pub changed: bool,
}

impl Checkpoints {
    /// The vouches for `index`, in node order.
    pub fn vouches(&self, index: u64) -> Vec<Vouch> {
        self.by_index
            .get(&index)
            .map(|v| v.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// Checks a voter's vouch before it enters the replicated state. `applied_at` is the log index
/// the vouch is applied at (0 when only validating): a vouch is for an index already behind it.
pub fn validate(
    cps: &Checkpoints,
    members: &Members,
    cluster_id: &str,
    index: u64,
    applied_at: u64,
    vouch: &Vouch,
) -> Result<(), Refusal> {
    let node = vouch.node;
    let info = members.voters.get(&node).ok_or_else(|| {
        Refusal::invalid(format!(
            "checkpoint vouch from node {node}, which is not a voter"
        ))
    })?;
    if index == 0 || (applied_at != 0 && index >= applied_at) {
        return Err(Refusal::invalid(format!(
            "checkpoint vouch for index {index}, which is not behind the log"
        )));
    }
    let kept = &cps.by_index;
    if kept.len() >= KEPT && kept.keys().next().is_some_and(|oldest| index < *oldest) {
        return Err(Refusal::invalid(format!(
            "checkpoint vouch for index {index}, older than every checkpoint kept"
        )));
    }
    if kept.get(&index).is_some_and(|v| v.contains_key(&node)) {
        return Err(Refusal::already_exists(format!(
            "node {node} already vouched for checkpoint {index}"
        )));
    }
    let key = info
        .ack_key_bytes()
        .ok_or_else(|| Refusal::invalid(format!("node {node} has no acknowledgement key")))?;
    verify_ack(
        &key,
        &statement(cluster_id, index, &vouch.digest),
        &vouch.signature,
    )
    .map_err(|_| {
        Refusal::unauthenticated(format!(
            "node {node}'s checkpoint vouch for index {index} does not verify"
        ))
    })
}

/// Records a vouch `validate` accepted, forgetting the oldest index beyond `KEPT`.
pub fn apply(cps: &mut Checkpoints, index: u64, vouch: Vouch) {
    cps.by_index
        .entry(index)
        .or_default()
        .insert(vouch.node, vouch);
    while cps.by_index.len() > KEPT {
        cps.by_index.pop_first();
    }
}

/// A snapshot as it travels from the leader: the state's bytes and the vouches for them.
#[derive(Serialize, Deserialize)]
pub struct CertifiedSnapshot {
    pub vouches: Vec<Vouch>,
    #[serde(with = "b64::bytes")]
    pub state: Vec<u8>,
}

/// Why a follower refuses a snapshot: each rule a snapshot from the leader must meet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapshotRefusal {
    #[error("the snapshot names no voters")]
    NoVoters,
    #[error(
        "only {have} of the snapshot's {voters} voters vouch for its state at index {index} \
         ({need} needed): a leader's word alone does not replace this node's state"
    )]
    TooFewVouches {
        index: u64,
        have: usize,
        need: usize,
        voters: usize,
    },
}

/// A snapshot a leader offers: taken at `index`, its bytes, the vouches it travels with, and
/// the membership and revocations its own bytes hold.
pub struct Offered<'a> {
    pub index: u64,
    pub state: &'a [u8],
    pub vouches: &'a [Vouch],
    pub members: &'a Members,
    pub revocations: &'a Revocations,
}

/// What the follower already applied: its members and revocations.
pub struct Known<'a> {
    pub members: &'a Members,
    pub revocations: &'a Revocations,
}

/// The rule a follower applies before installing a snapshot. Only vouches for this exact
/// digest count, from distinct voters of the snapshot whose certificate the cluster CA signed
/// (the key used is the attested one, not the membership's copy), who are revoked in neither
/// view, and whose signature verifies.
pub fn check_snapshot(
    trust: &Trust,
    cluster_id: &str,
    offered: &Offered,
    own: &Known,
) -> Result<(), SnapshotRefusal> {
    let (index, state, vouches) = (offered.index, offered.state, offered.vouches);
    let (snapshot_revocations, own_revocations) = (offered.revocations, own.revocations);
    let voters = &offered.members.voters;
    if voters.is_empty() {
        return Err(SnapshotRefusal::NoVoters);
    }
    let want = digest(state);
    let msg = statement(cluster_id, index, &want);
    let mut good = BTreeSet::new();
    for v in vouches.iter().filter(|v| v.digest == want) {
        let Some(info) = voters.get(&v.node) else {
            continue;
        };
        let revoked = |r: &Revocations| r.refusal("", Some(v.node), "").is_some();
        if revoked(own_revocations) || revoked(snapshot_revocations) {
            continue;
        }
        let Ok(attested) = trust.attested_node(&info.certificate, v.node) else {
            continue;
        };
        if verify_ack(&attested.ack_key, &msg, &v.signature).is_ok() {
            good.insert(v.node);
        }
    }
    let majority = voters.len() / 2 + 1;
    // One voter's word is enough only where the cluster is that one voter, and this follower
    // already knows it as such; anywhere else a second, independent voter must agree.
    let lone_known = voters.len() == 1 && own.members.voters.keys().eq(voters.keys());
    let need = if lone_known { 1 } else { majority.max(2) };
    if good.len() < need {
        return Err(SnapshotRefusal::TooFewVouches {
            index,
            have: good.len(),
            need,
            voters: voters.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use tessera_crypto::ack::AckKey;
    use tessera_crypto::attest::Attestation;

    use super::*;
    use crate::state::authority::testing::TestCa;
    use crate::state::NodeInfo;
    use crate::tls::issue::issue_node;

    struct Voter {
        id: NodeId,
        key: AckKey,
        info: NodeInfo,
    }

    fn voters(ca: &TestCa, ids: &[NodeId]) -> (Vec<Voter>, Members) {
        let mut members = Members::default();
        let mut out = Vec::new();
        for &id in ids {
            let key = AckKey::generate();
            let att = Attestation {
                region: "eu".into(),
                sealing_key: [id as u8; 32],
                ack_key: key.public(),
            };
            let cert = issue_node(&ca.ca, id, "127.0.0.1", &att).expect("node cert");
            let info = NodeInfo {
                addr: format!("127.0.0.1:{id}"),
                region: "eu".into(),
                sealing_key: hex::encode([id as u8; 32]),
                ack_key: hex::encode(key.public()),
                certificate: tessera_crypto::attest::pem_to_der(cert.cert_pem.as_bytes()).unwrap(),
            };
            members.voters.insert(id, info.clone());
            members.all.insert(id, info.clone());
            out.push(Voter { id, key, info });
        }
        (out, members)
    }

    fn vouch(v: &Voter, index: u64, state: &[u8]) -> Vouch {
        let d = digest(state);
        Vouch {
            node: v.id,
            digest: d,
            signature: v.key.sign(&statement("c", index, &d)).to_vec(),
        }
    }

    fn check_with(
        ca: &TestCa,
        vouches: &[Vouch],
        (snap, snap_revoked): (&Members, &Revocations),
        (own, own_revoked): (&Members, &Revocations),
    ) -> Result<(), SnapshotRefusal> {
        let offered = Offered {
            index: 10,
            state: b"state",
            vouches,
            members: snap,
            revocations: snap_revoked,
        };
        let known = Known {
            members: own,
            revocations: own_revoked,
        };
        check_snapshot(&ca.trust, "c", &offered, &known)
    }

    fn check(
        ca: &TestCa,
        vouches: &[Vouch],
        snap: &Members,
        own: &Members,
    ) -> Result<(), SnapshotRefusal> {
        let none = Revocations::default();
        check_with(ca, vouches, (snap, &none), (own, &none))
    }

    #[test]
    fn a_majority_of_the_snapshots_voters_must_vouch_for_its_exact_bytes() {
        let ca = TestCa::new();
        let (vs, members) = voters(&ca, &[1, 2, 3]);
        let one = [vouch(&vs[0], 10, b"state")];
        assert!(matches!(
            check(&ca, &one, &members, &members),
            Err(SnapshotRefusal::TooFewVouches {
                have: 1,
                need: 2,
                ..
            })
        ));
        let two = [vouch(&vs[0], 10, b"state"), vouch(&vs[1], 10, b"state")];
        assert_eq!(check(&ca, &two, &members, &members), Ok(()));
        // The same node twice counts once; a vouch for other bytes or another index not at all.
        let twice = [vouch(&vs[0], 10, b"state"), vouch(&vs[0], 10, b"state")];
        assert!(check(&ca, &twice, &members, &members).is_err());
        let other = [vouch(&vs[0], 10, b"state"), vouch(&vs[1], 10, b"forged")];
        assert!(check(&ca, &other, &members, &members).is_err());
        let index = [vouch(&vs[0], 10, b"state"), vouch(&vs[1], 11, b"state")];
        assert!(check(&ca, &index, &members, &members).is_err());
    }

    #[test]
    fn a_forged_membership_of_one_does_not_let_its_voter_vouch_alone() {
        let ca = TestCa::new();
        let (vs, own) = voters(&ca, &[1, 2, 3]);
        let (_, lone) = voters(&ca, &[]);
        let mut lone = lone;
        lone.voters.insert(1, vs[0].info.clone());
        let one = [vouch(&vs[0], 10, b"state")];
        assert!(check(&ca, &one, &lone, &own).is_err());
        // A one-voter cluster this follower knows as such: its voter's word is enough.
        assert_eq!(check(&ca, &one, &lone, &lone), Ok(()));
    }

    #[test]
    fn a_key_the_ca_did_not_attest_or_a_revoked_voter_does_not_count() {
        let ca = TestCa::new();
        let (vs, members) = voters(&ca, &[1, 2, 3]);
        // Node 2's entry pairs its real certificate with a key of the forger's choosing.
        let mut forged = members.clone();
        let rogue = AckKey::generate();
        forged.voters.get_mut(&2).unwrap().ack_key = hex::encode(rogue.public());
        let d = digest(b"state");
        let by_rogue = Vouch {
            node: 2,
            digest: d,
            signature: rogue.sign(&statement("c", 10, &d)).to_vec(),
        };
        assert!(check(
            &ca,
            &[vouch(&vs[0], 10, b"state"), by_rogue],
            &forged,
            &members
        )
        .is_err());
        let mut revoked = Revocations::default();
        revoked.nodes.insert(2);
        let none = Revocations::default();
        let two = [vouch(&vs[0], 10, b"state"), vouch(&vs[1], 10, b"state")];
        assert!(check_with(&ca, &two, (&members, &none), (&members, &revoked)).is_err());
        assert!(check_with(&ca, &two, (&members, &revoked), (&members, &none)).is_err());
        assert_eq!(
            check_with(&ca, &two, (&members, &none), (&members, &none)),
            Ok(())
        );
    }

    #[test]
    fn vouches_enter_the_state_only_from_voters_with_good_signatures_and_the_newest_are_kept() {
        let ca = TestCa::new();
        let (vs, members) = voters(&ca, &[1, 2, 3]);
        let mut cps = Checkpoints::default();
        let v = vouch(&vs[0], 10, b"s10");
        assert!(
            validate(&cps, &members, "c", 10, 10, &v).is_err(),
            "not behind the log"
        );
        validate(&cps, &members, "c", 10, 11, &v).unwrap();
        apply(&mut cps, 10, v.clone());
        assert!(validate(&cps, &members, "c", 10, 12, &v).is_err(), "twice");
        let mut bad = vouch(&vs[1], 10, b"s10");
        bad.signature[0] ^= 1;
        assert!(validate(&cps, &members, "c", 10, 12, &bad).is_err());
        let mut stranger = vouch(&vs[1], 10, b"s10");
        stranger.node = 9;
        assert!(validate(&cps, &members, "c", 10, 12, &stranger).is_err());
        apply(&mut cps, 20, vouch(&vs[0], 20, b"s20"));
        apply(&mut cps, 30, vouch(&vs[0], 30, b"s30"));
        assert_eq!(
            cps.by_index.keys().copied().collect::<Vec<_>>(),
            vec![20, 30]
        );
        assert!(validate(&cps, &members, "c", 10, 40, &vouch(&vs[1], 10, b"s10")).is_err());
        assert_eq!(cps.vouches(30).len(), 1);
    }
}
