//! Secrets in the replicated model: KV v2 semantics (versions, check-and-set, soft delete,
//! destroy, metadata) over public material only: each version keeps its value ciphertext, the
//! VSS commitments, the holder list, the envelopes not yet acknowledged (each sealed to one
//! holder) and the holders' signed acknowledgements. No node can read a value from this.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tessera_crypto::ack::{
    ack_message, batch_message, complaint_message, receipt_message, verify_ack, verify_receipt,
};
use tessera_crypto::b64;
use tessera_crypto::seal::{self, SealingPublicKey, ShareEnvelope};
use tessera_crypto::value::ValueCiphertext;
use tessera_crypto::vss::Commitments;
use tessera_crypto::vss::Share;

use super::members::NodeId;
use super::Members;
use super::Timestamp;
use crate::error::Refusal;

/// Versions kept per secret unless its metadata says otherwise (like Vault's KV v2).
pub const DEFAULT_MAX_VERSIONS: u32 = 10;
/// Largest value a secret may hold.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretEntry {
    /// Highest version ever written (versions are never reused).
    pub current_version: u64,
    /// 0 means the default.
    pub max_versions: u32,
    pub cas_required: bool,
    /// `None` until the first version or metadata is written.
    pub created_time: Option<Timestamp>,
    pub updated_time: Option<Timestamp>,
    pub custom_metadata: BTreeMap<String, String>,
    pub versions: BTreeMap<u64, VersionEntry>,
}

impl SecretEntry {
    pub fn max_versions(&self) -> u32 {
        if self.max_versions == 0 {
            DEFAULT_MAX_VERSIONS
        } else {
            self.max_versions
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionEntry {
    pub created_time: Timestamp,
    pub created_by: String,
    /// Raft index at which the version was written: a holder serves it only once it has
    /// applied at least this far.
    pub index: u64,
    pub deletion_time: Option<Timestamp>,
    pub destroyed: bool,
    /// `None` once destroyed.
    pub ciphertext: Option<ValueCiphertext>,
    pub commitments: Commitments,
    pub threshold: u32,
    /// Holder `i` holds the share with x coordinate `i + 1`.
    pub holders: Vec<NodeId>,
    /// Envelopes of holders that have not acknowledged yet (a holder that was down opens its
    /// own from here, even after log compaction). Dropped on acknowledgement.
    pub envelopes: BTreeMap<NodeId, ShareEnvelope>,
    #[serde(with = "b64::by_node")]
    pub acks: BTreeMap<NodeId, Vec<u8>>,
    /// Holders whose share did not verify. They hold no share of it; the version stays
    /// readable while `t` shares can still be had (`is_valid`).
    pub complaints: BTreeMap<NodeId, String>,
    /// Set when a break-glass grant was first used to read this version: the value was seen
    /// in an emergency and should be replaced (a new version clears it, being a new entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_required: Option<RotateRequired>,
}

/// Who read a version under which break-glass grant, and when (replicated time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateRequired {
    pub grant: String,
    pub by: String,
    pub at: Timestamp,
}

impl std::fmt::Display for RotateRequired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "read by {} under break-glass grant {} at {}",
            self.by, self.grant, self.at
        )
    }
}

impl VersionEntry {
    /// Whether the version can be read: `t` holders verified their shares against the
    /// commitments (then the value is fixed, whatever anyone claims later), or enough holders
    /// have not complained that `t` still can.
    ///
    /// # Security
    ///
    /// A complaint is one holder's word. If one complaint made a version unreadable, one faulty
    /// or compromised voter could brick every secret. `t` verified shares determine the one
    /// value the commitments bind, so complaints only take the complaining holders out, and a
    /// version is lost only when fewer than `t` holders are left who could serve it.
    pub fn is_valid(&self) -> bool {
        let t = self.threshold as usize;
        self.acks.len() >= t || self.holders.len().saturating_sub(self.complaints.len()) >= t
    }

    /// Why the version is lost, if it is (`is_valid`): a sentence for a refusal.
    pub fn lost(&self) -> Option<String> {
        if self.is_valid() {
            return None;
        }
        let (node, why) = self.complaints.iter().next()?;
        Some(format!(
            "fewer than {} of its holders can serve it (node {node} reported that its share {why})",
            self.threshold
        ))
    }

    /// The acknowledgements a write waits for: `wanted` (`t + f`), but no more than the
    /// holders that have not complained, and never fewer than `t`.
    pub fn acks_needed(&self, wanted: usize) -> usize {
        let left = self.holders.len().saturating_sub(self.complaints.len());
        wanted.min(left).max(self.threshold as usize)
    }
    /// The 1-based share index of `node`, if it holds one.
    pub fn share_index(&self, node: NodeId) -> Option<u16> {
        self.holders
            .iter()
            .position(|h| *h == node)
            .map(|i| (i + 1) as u16)
    }
}

/// A new version, as the client dealt it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvPut {
    pub path: String,
    pub version: u64,
    pub cas: Option<u64>,
    pub time: Timestamp,
    pub ciphertext: ValueCiphertext,
    pub commitments: Commitments,
    pub threshold: u32,
    pub holders: Vec<NodeId>,
    pub envelopes: Vec<ShareEnvelope>,
    /// Receipts of the holders that opened and verified their own share before the write was
    /// submitted: (node, receipt). A receipt is the node's signature over `receipt_message`,
    /// which names the node's envelope, or over a batch of such statements with this one's
    /// Merkle proof (`tessera_crypto::ack::receipt_signed`).
    /// They count as acknowledgements at once, so a write commits in one Raft round instead of
    /// waiting for a second round of acknowledgements. Each such holder's envelope stays in
    /// the state until the holder has applied the write and stored its share at rest, and says
    /// so with a second, distinct acknowledgement.
    #[serde(default, with = "b64::pairs")]
    pub receipts: Vec<(NodeId, Vec<u8>)>,
}

/// A holder's verdict on its share of one version. Its statement (`ack_message` or
/// `complaint_message`) is signed with the others of its batch (`Op::KvAcks::signature`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckItem {
    pub path: String,
    pub version: u64,
    /// `None`: the share verified (an acknowledgement). `Some(reason)`: a complaint.
    pub complaint: Option<String>,
    /// A complaint's evidence: the holder's Diffie–Hellman value for its envelope
    /// (`seal::disclose`), with which every node opens that envelope and checks the share.
    #[serde(default, with = "b64::bytes", skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<u8>,
    /// The signed statement; every node recomputes it from its own state and compares.
    #[serde(with = "b64::bytes")]
    pub statement: Vec<u8>,
}

/// Secret paths: like Vault's, `a/b/c`, with no empty, `.` or `..` segment, and not under the
/// cluster's own `sys/` namespace.
pub fn validate_path(path: &str) -> Result<(), Refusal> {
    if path.is_empty() || path.len() > 512 {
        return Err(Refusal::invalid(
            "a secret path must be 1 to 512 characters",
        ));
    }
    // `sys/` and `keys/` name the cluster's own resources in policies: a secret there would
    // share its policy paths with them.
    for reserved in ["sys", "keys"] {
        if path == reserved || path.starts_with(&format!("{reserved}/")) {
            return Err(Refusal::invalid(format!(
                "{path:?}: paths under {reserved}/ are reserved for the cluster"
            )));
        }
    }
    if path
        .chars()
        .any(|c| c.is_control() || c == '*' || c == '+' || c == '"' || c == '\\')
    {
        return Err(Refusal::invalid(format!(
            "{path:?}: control characters, '*', '+', '\"' and '\\' are not allowed in a path"
        )));
    }
    for seg in path.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(Refusal::invalid(format!(
                "{path:?}: empty, '.' and '..' path segments are not allowed"
            )));
        }
    }
    Ok(())
}

pub(super) fn validate_put(
    secrets: &BTreeMap<String, SecretEntry>,
    members: &Members,
    cluster_id: &str,
    threshold: Option<u32>,
    p: &KvPut,
) -> Result<(), Refusal> {
    validate_path(&p.path)?;
    let Some(t) = threshold else {
        return Err(Refusal::rejected(
            "the cluster has no threshold configured yet; try again in a moment",
        ));
    };
    if p.threshold != t {
        return Err(Refusal::stale_topology(format!(
            "the write was dealt with threshold {}, the cluster's is {t}; fetch the topology again",
            p.threshold
        )));
    }
    let entry = secrets.get(&p.path);
    let current = entry.map(|e| e.current_version).unwrap_or(0);
    if let Some(cas) = p.cas {
        if cas != current {
            return Err(Refusal::rejected(format!(
                "check-and-set failed: the current version of {:?} is {current}, not {cas}",
                p.path
            )));
        }
    } else if entry.is_some_and(|e| e.cas_required) {
        return Err(Refusal::rejected(format!(
            "{:?} requires check-and-set: pass --cas {current}",
            p.path
        )));
    }
    if p.version != current + 1 {
        return Err(Refusal::VersionConflict {
            path: p.path.clone(),
            current,
            attempted: p.version,
        });
    }
    let voters: Vec<NodeId> = members.voters.keys().copied().collect();
    for h in &p.holders {
        if !members.voters.contains_key(h) {
            return Err(Refusal::stale_topology(format!(
                "holder list names node {h}, which is not a voting member"
            )));
        }
    }
    let mut sorted = p.holders.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(Refusal::invalid(format!(
            "the holder list names node {} twice",
            w[0]
        )));
    }
    if sorted != voters {
        return Err(Refusal::stale_topology(format!(
            "the holders must be exactly the voters {voters:?}, got {:?}",
            p.holders
        )));
    }
    p.commitments
        .check(t as usize)
        .map_err(|e| Refusal::invalid(format!("commitments: {e}")))?;
    if p.envelopes.len() != p.holders.len() {
        return Err(Refusal::invalid(format!(
            "{} envelopes for {} holders",
            p.envelopes.len(),
            p.holders.len()
        )));
    }
    for (h, env) in p.holders.iter().zip(&p.envelopes) {
        env.check(64)
            .map_err(|e| Refusal::invalid(format!("envelope for node {h}: {e}")))?;
    }
    if p.ciphertext.ciphertext.len() > MAX_VALUE_BYTES + 16 {
        return Err(Refusal::invalid(format!(
            "the value is larger than the limit of {MAX_VALUE_BYTES} bytes"
        )));
    }
    if p.ciphertext.ciphertext.len() < 16 {
        return Err(Refusal::invalid(
            "the value ciphertext is shorter than its tag",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (node, receipt) in &p.receipts {
        if !seen.insert(*node) {
            return Err(Refusal::invalid(format!("two receipts from node {node}")));
        }
        check_receipt(members, cluster_id, p, *node, receipt)?;
    }
    Ok(())
}

/// Checks one holder's receipt for a put: the node is a holder of it and signed, with the key
/// the membership records for it, the statement that names its own envelope (alone, or among
/// a batch of statements it signed together).
///
/// Apply checks every receipt this way on every node (`validate_put`). The node that gathers
/// the receipts and the followers that receive the write check them too, before apply, where
/// two cores can share the work; apply then finds each signature already verified (see
/// `tessera_crypto::ack::verify_ack`), so Raft's serial apply does not wait on the arithmetic.
pub fn check_receipt(
    members: &Members,
    cluster_id: &str,
    p: &KvPut,
    node: NodeId,
    receipt: &[u8],
) -> Result<(), Refusal> {
    let (key, statement) = receipt_statement(members, cluster_id, p, node)?;
    verify_receipt(&key, cluster_id, node, &statement, receipt).map_err(|e| {
        Refusal::invalid(format!(
            "receipt of {}@{} by node {node}: {e}",
            p.path, p.version
        ))
    })
}

/// The statement node `node`'s receipt for a put must vouch for, and the key it must verify
/// under (cheap: a hash; the verification is the costly part).
pub fn receipt_statement(
    members: &Members,
    cluster_id: &str,
    p: &KvPut,
    node: NodeId,
) -> Result<([u8; 32], Vec<u8>), Refusal> {
    let Some(pos) = p.holders.iter().position(|h| *h == node) else {
        return Err(Refusal::invalid(format!(
            "receipt from node {node}, which is not a holder of this write"
        )));
    };
    let envelope = p
        .envelopes
        .get(pos)
        .ok_or_else(|| Refusal::invalid(format!("no envelope for node {node}")))?;
    let key = ack_key(members, node)?;
    let msg = receipt_message(
        cluster_id,
        &p.path,
        p.version,
        node,
        &p.commitments,
        envelope,
    );
    Ok((key, msg))
}

fn ack_key(members: &Members, node: NodeId) -> Result<[u8; 32], Refusal> {
    let info = members.all.get(&node).ok_or_else(|| {
        Refusal::invalid(format!(
            "acknowledgement from node {node}, which is not a member"
        ))
    })?;
    info.ack_key_bytes().ok_or_else(|| {
        Refusal::invalid(format!(
            "node {node} has no acknowledgement key in the membership"
        ))
    })
}

/// Applies a put (already validated). Returns the versions pruned beyond `max_versions`, whose
/// shares the holders must now erase.
pub(super) fn apply_put(
    secrets: &mut BTreeMap<String, SecretEntry>,
    by: &str,
    index: u64,
    p: &KvPut,
) -> Vec<u64> {
    let e = secrets.entry(p.path.clone()).or_default();
    e.created_time.get_or_insert(p.time);
    e.updated_time = Some(p.time);
    e.current_version = p.version;
    e.versions.insert(
        p.version,
        VersionEntry {
            created_time: p.time,
            created_by: by.to_string(),
            index,
            deletion_time: None,
            destroyed: false,
            ciphertext: Some(p.ciphertext.clone()),
            commitments: p.commitments.clone(),
            threshold: p.threshold,
            holders: p.holders.clone(),
            envelopes: p
                .holders
                .iter()
                .copied()
                .zip(p.envelopes.iter().cloned())
                .collect(),
            acks: p.receipts.iter().cloned().collect(),
            complaints: BTreeMap::new(),
            rotate_required: None,
        },
    );
    prune(e)
}

fn prune(e: &mut SecretEntry) -> Vec<u64> {
    let mut pruned = Vec::new();
    while e.versions.len() > e.max_versions() as usize {
        let oldest = *e.versions.keys().next().expect("non-empty");
        e.versions.remove(&oldest);
        pruned.push(oldest);
    }
    pruned
}

pub(super) fn validate_acks(
    secrets: &BTreeMap<String, SecretEntry>,
    members: &Members,
    cluster_id: &str,
    node: NodeId,
    acks: &[AckItem],
    signature: &[u8],
) -> Result<(), Refusal> {
    let key = ack_key(members, node)?;
    let statements: Vec<&[u8]> = acks.iter().map(|a| a.statement.as_slice()).collect();
    verify_ack(
        &key,
        &batch_message(cluster_id, node, &statements),
        signature,
    )
    .map_err(|e| Refusal::invalid(format!("acknowledgements by node {node}: {e}")))?;
    for a in acks {
        // A version pruned or destroyed meanwhile is simply skipped on apply.
        let Some(v) = secrets
            .get(&a.path)
            .and_then(|e| e.versions.get(&a.version))
        else {
            continue;
        };
        if v.share_index(node).is_none() {
            return Err(Refusal::invalid(format!(
                "node {node} is not a holder of {}@{}",
                a.path, a.version
            )));
        }
        // A holder that vouched for its share (its receipt or acknowledgement is counted)
        // cannot take it back: otherwise one holder could make any version unreadable.
        if a.complaint.is_some() && v.acks.contains_key(&node) {
            return Err(Refusal::rejected(format!(
                "node {node} acknowledged {}@{}; it cannot complain about the share it vouched for",
                a.path, a.version
            )));
        }
        let msg = match &a.complaint {
            None => ack_message(cluster_id, &a.path, a.version, node, &v.commitments),
            Some(reason) => {
                complaint_message(cluster_id, &a.path, a.version, node, reason, &a.evidence)
            }
        };
        if msg != a.statement {
            return Err(Refusal::invalid(format!(
                "acknowledgement of {}@{} by node {node} does not state this version",
                a.path, a.version
            )));
        }
        if a.complaint.is_some() {
            check_evidence(members, cluster_id, node, a, v)?;
        }
    }
    Ok(())
}

/// A complaint proves itself: its evidence opens the holder's own envelope, and what is inside
/// is not a share of the holder's index that the version's commitments accept.
///
/// # Security
///
/// Without proof a complaint is one holder's word, and a faulty or compromised holder could mark
/// good shares bad. Every node opens the envelope itself with the disclosed value
/// (`seal::open_disclosed`), so a false complaint, with made-up evidence (nothing opens) or with
/// real evidence (the share verifies), is refused identically everywhere.
fn check_evidence(
    members: &Members,
    cluster_id: &str,
    node: NodeId,
    a: &AckItem,
    v: &VersionEntry,
) -> Result<(), Refusal> {
    let refuse = |why: &str| {
        Refusal::rejected(format!(
            "node {node}'s complaint about {}@{}: {why}",
            a.path, a.version
        ))
    };
    let dh: [u8; 32] = a
        .evidence
        .as_slice()
        .try_into()
        .map_err(|_| refuse("it carries no evidence (the value that opens its envelope)"))?;
    let env = v
        .envelopes
        .get(&node)
        .ok_or_else(|| refuse("its envelope is no longer kept"))?;
    let key = members
        .all
        .get(&node)
        .and_then(|n| hex::decode(&n.sealing_key).ok())
        .and_then(|b| SealingPublicKey::from_slice(&b).ok())
        .ok_or_else(|| refuse("the node has no sealing key in the membership"))?;
    let ctx = seal::Context {
        cluster_id,
        path: &a.path,
        version: a.version,
        node_id: node,
        purpose: seal::Purpose::Deal,
    };
    let plain = seal::open_disclosed(&key, &ctx, env, &dh)
        .map_err(|_| refuse("its evidence does not open its envelope"))?;
    let index = v.share_index(node);
    let good = match Share::from_bytes(plain.expose()) {
        Ok(s) if Some(s.index) == index => v
            .commitments
            .verifier()
            .and_then(|vf| vf.verify(&s))
            .is_ok(),
        _ => false,
    };
    if good {
        return Err(refuse(
            "the share its evidence opens verifies against the commitments: the complaint is false",
        ));
    }
    Ok(())
}

pub(super) fn apply_acks(
    secrets: &mut BTreeMap<String, SecretEntry>,
    node: NodeId,
    acks: &[AckItem],
    signature: &[u8],
) -> Vec<String> {
    let mut touched = Vec::new();
    for a in acks {
        let Some(v) = secrets
            .get_mut(&a.path)
            .and_then(|e| e.versions.get_mut(&a.version))
        else {
            continue;
        };
        v.envelopes.remove(&node);
        match &a.complaint {
            None => {
                v.acks.insert(node, signature.to_vec());
            }
            Some(reason) => {
                v.complaints.insert(node, reason.clone());
            }
        }
        touched.push(a.path.clone());
    }
    touched
}

/// Which versions an operation names: all of them must exist.
pub(super) fn check_versions(
    secrets: &BTreeMap<String, SecretEntry>,
    path: &str,
    versions: &[u64],
) -> Result<(), Refusal> {
    let e = secrets
        .get(path)
        .ok_or_else(|| Refusal::invalid(format!("no secret at {path:?}")))?;
    if versions.is_empty() {
        return Err(Refusal::invalid(
            "name at least one version (--versions 1,2)",
        ));
    }
    for v in versions {
        if !e.versions.contains_key(v) {
            return Err(Refusal::invalid(format!(
                "{path:?} has no version {v} (it never existed or was pruned)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! Law 3 as the replicated state enforces it: a write is accepted only when it is dealt to
    //! exactly the voters, with the cluster's threshold, for the next version, with well-formed
    //! commitments and envelopes, and with receipts that each holder really signed.

    use tessera_crypto::ack::{receipt_message, AckKey};
    use tessera_crypto::vss;

    use super::*;
    use crate::state::NodeInfo;

    struct Fixture {
        members: Members,
        keys: BTreeMap<NodeId, AckKey>,
        secrets: BTreeMap<String, SecretEntry>,
    }

    /// Three voters in three regions, each with its acknowledgement key.
    fn fixture() -> Fixture {
        let mut members = Members::default();
        let mut keys = BTreeMap::new();
        for (id, region) in [(1, "eu"), (2, "us"), (3, "ap")] {
            let key = AckKey::generate();
            let info = NodeInfo {
                addr: format!("127.0.0.1:{}", 7000 + id),
                region: region.into(),
                sealing_key: String::new(),
                ack_key: hex::encode(key.public()),
                ..NodeInfo::default()
            };
            members.all.insert(id, info.clone());
            members.voters.insert(id, info);
            keys.insert(id, key);
        }
        Fixture {
            members,
            keys,
            secrets: BTreeMap::new(),
        }
    }

    /// A well-formed 2-of-3 write of version 1 (envelopes of the right shape; their contents
    /// are the holders' to check).
    fn put(path: &str) -> KvPut {
        let dealing = vss::deal(2, 3).unwrap();
        KvPut {
            path: path.into(),
            version: 1,
            cas: None,
            time: Timestamp::from_unix_nanos(1),
            ciphertext: ValueCiphertext {
                nonce: [0; 12],
                ciphertext: vec![0; 32],
            },
            commitments: dealing.commitments,
            threshold: 2,
            holders: vec![1, 2, 3],
            envelopes: (0..3)
                .map(|_| ShareEnvelope {
                    enc: [5; 32],
                    ciphertext: vec![6; 80],
                })
                .collect(),
            receipts: Vec::new(),
        }
    }

    fn check(f: &Fixture, p: &KvPut) -> Result<(), Refusal> {
        validate_put(&f.secrets, &f.members, "c", Some(2), p)
    }

    fn receipt(f: &Fixture, p: &KvPut, node: NodeId) -> Vec<u8> {
        let pos = p.holders.iter().position(|h| *h == node).unwrap();
        let msg = receipt_message(
            "c",
            &p.path,
            p.version,
            node,
            &p.commitments,
            &p.envelopes[pos],
        );
        f.keys[&node].sign(&msg).to_vec()
    }

    #[test]
    fn a_well_formed_write_with_true_receipts_is_accepted() {
        let f = fixture();
        let mut p = put("a/b");
        p.receipts = vec![(2, receipt(&f, &p, 2)), (3, receipt(&f, &p, 3))];
        check(&f, &p).unwrap();
    }

    #[test]
    fn a_write_for_another_version_names_the_current_one() {
        let mut f = fixture();
        let mut p = put("a/b");
        apply_put(&mut f.secrets, "admin", 1, &p);
        let e = check(&f, &p).unwrap_err();
        assert_eq!(
            e,
            Refusal::VersionConflict {
                path: "a/b".into(),
                current: 1,
                attempted: 1
            }
        );
        p.version = 2;
        check(&f, &p).unwrap();
    }

    #[test]
    fn a_write_dealt_to_other_holders_or_another_threshold_is_stale() {
        let f = fixture();
        let mut p = put("a/b");
        p.holders = vec![1, 2, 4];
        assert!(matches!(check(&f, &p), Err(Refusal::StaleTopology { .. })));
        let mut p = put("a/b");
        p.holders.pop();
        p.envelopes.pop();
        assert!(matches!(check(&f, &p), Err(Refusal::StaleTopology { .. })));
        let p = put("a/b");
        let e = validate_put(&f.secrets, &f.members, "c", Some(3), &p).unwrap_err();
        assert!(matches!(e, Refusal::StaleTopology { .. }), "{e}");
    }

    #[test]
    fn malformed_commitments_envelopes_and_values_are_refused() {
        let f = fixture();
        let mut p = put("a/b");
        p.commitments.0.pop();
        assert!(check(&f, &p)
            .unwrap_err()
            .to_string()
            .starts_with("commitments"));
        let mut p = put("a/b");
        p.envelopes.pop();
        assert!(check(&f, &p)
            .unwrap_err()
            .to_string()
            .contains("2 envelopes for 3 holders"));
        let mut p = put("a/b");
        p.ciphertext.ciphertext = vec![0; 8];
        assert!(check(&f, &p)
            .unwrap_err()
            .to_string()
            .contains("shorter than its tag"));
        for path in ["sys/x", "keys/ssh-ca", "keys"] {
            let e = check(&f, &put(path)).unwrap_err().to_string();
            assert!(e.contains("reserved for the cluster"), "{path}: {e}");
        }
        // A holder named twice (it would count its share twice).
        let mut p = put("a/b");
        p.holders = vec![1, 2, 3, 1];
        p.envelopes.push(p.envelopes[0].clone());
        let e = check(&f, &p).unwrap_err().to_string();
        assert!(e.contains("names node 1 twice"), "{e}");
    }

    #[test]
    fn a_receipt_must_be_the_holders_own_signature_over_its_own_envelope() {
        let f = fixture();
        let mut p = put("a/b");
        // Node 2's receipt presented as node 3's.
        p.receipts = vec![(3, receipt(&f, &p, 2))];
        assert!(check(&f, &p).is_err());
        // A receipt for another envelope.
        let mut other = p.clone();
        other.envelopes[1].ciphertext[0] ^= 1;
        p.receipts = vec![(2, receipt(&f, &other, 2))];
        assert!(check(&f, &p).is_err());
        // Two receipts from one node.
        p.receipts = vec![(2, receipt(&f, &p, 2)), (2, receipt(&f, &p, 2))];
        assert!(check(&f, &p)
            .unwrap_err()
            .to_string()
            .contains("two receipts"));
    }

    #[test]
    fn check_and_set_is_enforced_when_asked_or_required() {
        let mut f = fixture();
        let p = put("a/b");
        apply_put(&mut f.secrets, "admin", 1, &p);
        let mut next = put("a/b");
        next.version = 2;
        next.cas = Some(0);
        assert!(matches!(check(&f, &next), Err(Refusal::Rejected { .. })));
        next.cas = Some(1);
        check(&f, &next).unwrap();
        f.secrets.get_mut("a/b").unwrap().cas_required = true;
        next.cas = None;
        let e = check(&f, &next).unwrap_err();
        assert!(e.to_string().contains("requires check-and-set"), "{e}");
    }

    #[test]
    fn complaints_take_out_their_holders_and_cannot_undo_t_verified_shares() {
        // Five holders, t = 3.
        let mut v = VersionEntry {
            threshold: 3,
            holders: vec![1, 2, 3, 4, 5],
            ..VersionEntry::default()
        };
        assert!(v.is_valid());
        assert_eq!(v.acks_needed(4), 4);
        // One complaint (a faulty or lying holder): still readable; a write waits for at most
        // the holders left.
        v.complaints.insert(5, "does not verify".into());
        assert!(v.is_valid());
        v.complaints.insert(4, "does not verify".into());
        assert!(v.is_valid());
        assert_eq!(v.acks_needed(4), 3);
        // A third: only two holders could serve it, and none verified: lost.
        v.complaints.insert(3, "does not verify".into());
        assert!(!v.is_valid());
        assert_eq!(v.acks_needed(4), 3);
        // Once t holders verified their shares, the value is fixed, whatever others claim.
        let mut w = VersionEntry {
            threshold: 3,
            holders: vec![1, 2, 3, 4, 5],
            ..VersionEntry::default()
        };
        for n in 1..=3 {
            w.acks.insert(n, vec![]);
        }
        w.complaints.insert(4, "does not verify".into());
        w.complaints.insert(5, "does not verify".into());
        assert!(w.is_valid());
    }
}
