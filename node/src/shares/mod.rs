//! The node's own share vault: the only place a node keeps secret material, and only its own.
//!
//! On apply of a new version a holder opens the envelope sealed to it, verifies the share
//! against the commitments (law 3), and stores it sealed under its key-encryption key; a share
//! that does not verify becomes a signed complaint instead. On release it opens its share for
//! the API to seal to the reader's one-time key. Shares live in their own column family, outside the
//! replicated state and its snapshots, so no other node ever receives them.

pub mod dkg;
pub mod keys;
mod own_receipts;
mod served;

use std::collections::HashMap;
use std::sync::Arc;

use rocksdb::{IteratorMode, WriteBatch, DB};
use tessera_crypto::ack::{ack_message, batch_message, complaint_message, receipt_message};
use tessera_crypto::frost;
use tessera_crypto::seal::{self, Context, Purpose, ShareEnvelope};
use tessera_crypto::vss::{self, Share};

use crate::db::{cf, CF_SHARES};
use crate::error::Refusal;
use crate::state::kv::{AckItem, VersionEntry};
use crate::state::NodeId;
pub use keys::NodeKeys;
pub use own_receipts::OwnTicket;

/// Why this node's share of a version is bad, or cannot be checked: what its complaint (or its
/// refusal to give a receipt) states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShareProblem(pub String);

impl From<String> for ShareProblem {
    fn from(s: String) -> Self {
        ShareProblem(s)
    }
}

impl From<&str> for ShareProblem {
    fn from(s: &str) -> Self {
        ShareProblem(s.to_string())
    }
}

pub struct ShareVault {
    db: Arc<DB>,
    keys: NodeKeys,
    node_id: NodeId,
    cluster_id: String,
    /// Test builds only: release a corrupted share and sign bad receipts for peers (a
    /// Byzantine holder).
    corrupt_releases: bool,
    /// Test builds only: withhold receipts and complain about every share (a holder trying to
    /// brick versions).
    pub false_complaints: bool,
    dkg: dkg::DkgRunner,
    /// Signing shares already opened and parsed, by key name, with their generation.
    key_shares: std::sync::Mutex<HashMap<String, (u64, Arc<frost::KeyShare>)>>,
    /// Shares this node opened and checked for a receipt, kept until the write is applied so
    /// that apply need not open and check the same envelope again (see `Checked`).
    checked: std::sync::Mutex<HashMap<(String, u64), Checked>>,
    /// This node's receipts for the writes it gathers, signed together (`own_receipts`).
    own_receipts: own_receipts::OwnReceipts,
    /// Uses of break-glass grants this node served (`served`).
    served: served::Served,
}

/// This node's share of one write as dealt: where it belongs and what it must match.
#[derive(Clone, Copy)]
struct Dealt<'a> {
    path: &'a str,
    version: u64,
    /// The share index this node must find (its position in the holder list, plus one).
    index: u16,
    env: &'a ShareEnvelope,
    commitments: &'a vss::Commitments,
}

/// A share checked at receipt time, with exactly what it was checked against. Apply uses it
/// only for the same envelope and the same commitments; anything else is opened and checked
/// anew. Only this node's own share (law 1); zeroized on drop with the share.
struct Checked {
    envelope: ShareEnvelope,
    commitments: vss::Commitments,
    index: u16,
    share: Share,
    at: std::time::Instant,
}

/// Receipt-time shares kept at most, and for at most this long (a write is applied within
/// milliseconds of its receipts; one that never is, was refused or lost).
const CHECKED_MAX: usize = 4096;
const CHECKED_TTL: std::time::Duration = std::time::Duration::from_secs(30);

impl std::fmt::Debug for ShareVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShareVault {{ node: {} }}", self.node_id)
    }
}

fn share_key(path: &str, version: u64) -> Vec<u8> {
    let mut k = b"share/".to_vec();
    k.extend_from_slice(path.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn parse_share_key(k: &[u8]) -> Option<(String, u64)> {
    // `path \0 version(8 bytes)`: the version bytes may contain zeros, so split from the end.
    let rest = k.strip_prefix(b"share/")?;
    let sep = rest.len().checked_sub(9)?;
    if rest[sep] != 0 {
        return None;
    }
    let path = String::from_utf8(rest[..sep].to_vec()).ok()?;
    let v: [u8; 8] = rest[sep + 1..].try_into().ok()?;
    Some((path, u64::from_be_bytes(v)))
}

fn at_rest_label(node: NodeId, path: &str, version: u64) -> Vec<u8> {
    format!("tessera/share-at-rest/v1/{node}/{version}/{path}").into_bytes()
}

impl ShareVault {
    pub fn new(db: Arc<DB>, keys: NodeKeys, node_id: NodeId, cluster_id: String) -> Self {
        let corrupt_releases = crate::byzantine::corrupt_releases();
        Self {
            db,
            keys,
            node_id,
            cluster_id,
            corrupt_releases,
            false_complaints: crate::byzantine::false_complaints(),
            dkg: dkg::DkgRunner::default(),
            key_shares: Default::default(),
            checked: Default::default(),
            own_receipts: Default::default(),
            served: Default::default(),
        }
    }

    /// Public sealing and acknowledgement keys, hex, as the membership records them.
    pub fn public_keys(&self) -> (String, String) {
        (
            hex::encode(self.keys.sealing.public().0),
            hex::encode(self.keys.ack.public()),
        )
    }

    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    fn ctx<'a>(&'a self, path: &'a str, version: u64, purpose: Purpose) -> Context<'a> {
        Context {
            cluster_id: &self.cluster_id,
            path,
            version,
            node_id: self.node_id,
            purpose,
        }
    }

    /// Opens this node's envelope of a new version and checks the share (law 3). On success the
    /// share, sealed under the KEK, is added to `batch` (written with the applied index).
    pub fn accept(
        &self,
        batch: &mut WriteBatch,
        path: &str,
        version: u64,
        v: &VersionEntry,
    ) -> Result<(), ShareProblem> {
        let index = v
            .share_index(self.node_id)
            .ok_or("this node is not a holder")?;
        let env = v
            .envelopes
            .get(&self.node_id)
            .ok_or("no envelope for this node")?;
        let dealt = Dealt {
            path,
            version,
            index,
            env,
            commitments: &v.commitments,
        };
        let share = match self.take_checked(&dealt) {
            Some(share) => share,
            None => self.open_verified(&dealt)?,
        };
        let sealed = self.keys.kek.seal(
            &at_rest_label(self.node_id, path, version),
            &share.to_bytes(),
        );
        batch.put_cf(cf(&self.db, CF_SHARES), share_key(path, version), sealed);
        Ok(())
    }

    /// Opens this node's envelope of a version and checks the share against the commitments.
    fn open_verified(&self, d: &Dealt) -> Result<Share, ShareProblem> {
        let Dealt {
            path,
            version,
            index,
            env,
            commitments,
        } = *d;
        let plain = seal::open(
            &self.keys.sealing,
            &self.ctx(path, version, Purpose::Deal),
            env,
        )
        .map_err(|e| format!("envelope does not open: {e}"))?;
        let share = Share::from_bytes(plain.expose()).map_err(|e| e.to_string())?;
        if share.index != index {
            return Err(ShareProblem(format!(
                "share index {} where {index} was expected",
                share.index
            )));
        }
        // One multiscalar product (a property test shows it agrees with vsss-rs's check).
        commitments
            .verifier()
            .and_then(|v| v.verify(&share))
            .map_err(|e| e.to_string())?;
        Ok(share)
    }

    /// Opens and checks this node's share of a write that is about to be submitted, and keeps
    /// it for apply; returns the statement its receipt signs (`receipt_message`; see
    /// `KvPut::receipts`). Nothing is stored: the share is stored when the write is applied,
    /// from the same envelope, which the receipt names.
    pub fn check_for_receipt(
        &self,
        path: &str,
        version: u64,
        commitments: &vss::Commitments,
        holders: &[u64],
        env: &ShareEnvelope,
    ) -> Result<Vec<u8>, ShareProblem> {
        let pos = holders
            .iter()
            .position(|h| *h == self.node_id)
            .ok_or("this node is not a holder of the write")?;
        let index = u16::try_from(pos + 1).map_err(|_| "too many holders")?;
        let dealt = Dealt {
            path,
            version,
            index,
            env,
            commitments,
        };
        let share = self.open_verified(&dealt)?;
        self.keep_checked(&dealt, share);
        Ok(receipt_message(
            &self.cluster_id,
            path,
            version,
            self.node_id,
            commitments,
            env,
        ))
    }

    /// Receipts for statements from `check_for_receipt`, in order, under one signature.
    pub fn sign_receipts(&self, statements: &[&[u8]]) -> Vec<Vec<u8>> {
        self.keys
            .ack
            .sign_receipts(&self.cluster_id, self.node_id, statements)
    }

    /// A receipt as sent to the node that asked for it (it gathers the write's receipts). A
    /// Byzantine holder (test builds) sends one with a wrong signature: the gatherer must leave
    /// it out rather than submit a write that every node would refuse on apply.
    pub fn for_peer(&self, mut receipt: Vec<u8>) -> Vec<u8> {
        if self.corrupt_releases {
            receipt[0] ^= 1;
        }
        receipt
    }

    fn keep_checked(&self, d: &Dealt, share: Share) {
        let mut checked = self.checked.lock().expect("checked shares lock");
        if checked.len() >= CHECKED_MAX {
            checked.retain(|_, c| c.at.elapsed() < CHECKED_TTL);
            if checked.len() >= CHECKED_MAX {
                checked.clear();
            }
        }
        checked.insert(
            (d.path.to_string(), d.version),
            Checked {
                envelope: d.env.clone(),
                commitments: d.commitments.clone(),
                index: d.index,
                share,
                at: std::time::Instant::now(),
            },
        );
    }

    /// The receipt-time share of a version, if it was checked against exactly this envelope,
    /// these commitments and this index, lately. Taken: it serves one apply.
    fn take_checked(&self, d: &Dealt) -> Option<Share> {
        let c = self
            .checked
            .lock()
            .expect("checked shares lock")
            .remove(&(d.path.to_string(), d.version))?;
        (c.envelope == *d.env
            && c.commitments == *d.commitments
            && c.index == d.index
            && c.at.elapsed() < CHECKED_TTL)
            .then_some(c.share)
    }

    pub fn erase(&self, batch: &mut WriteBatch, path: &str, version: u64) {
        batch.delete_cf(cf(&self.db, CF_SHARES), share_key(path, version));
    }

    pub fn has(&self, path: &str, version: u64) -> bool {
        matches!(
            self.db
                .get_pinned_cf(cf(&self.db, CF_SHARES), share_key(path, version)),
            Ok(Some(_))
        )
    }

    /// Opens this node's share of a version for release. The caller seals it to the reader's
    /// one-time key at once (`tessera_crypto::release`); the plaintext is zeroized on drop.
    pub fn share_for_release(&self, path: &str, version: u64) -> Result<Share, Refusal> {
        let sealed = self
            .db
            .get_cf(cf(&self.db, CF_SHARES), share_key(path, version))
            .map_err(|e| Refusal::internal(format!("share store: {e}")))?
            .ok_or_else(|| Refusal::NotAHolder {
                node: self.node_id,
                reason: format!("this node holds no share of {path:?} version {version}"),
            })?;
        let plain = self
            .keys
            .kek
            .open(&at_rest_label(self.node_id, path, version), &sealed)
            .map_err(|e| Refusal::internal(format!("stored share does not open: {e}")))?;
        let share = Share::from_bytes(plain.expose())
            .map_err(|e| Refusal::internal(format!("stored share does not parse: {e}")))?;
        Ok(if self.corrupt_releases {
            share.corrupted()
        } else {
            share
        })
    }

    /// Every share this node holds, as (path, version). Values are never reported.
    pub fn list(&self) -> Vec<(String, u64)> {
        self.db
            .iterator_cf(cf(&self.db, CF_SHARES), IteratorMode::Start)
            .filter_map(|r| r.ok())
            .filter_map(|(k, _)| parse_share_key(&k))
            .collect()
    }

    /// The acknowledgement (or complaint) for a version, to be signed with its batch. A
    /// complaint carries its evidence (`seal::disclose`); one this node cannot prove (its
    /// envelope does not open at all) is not sent, since every node would refuse it: the
    /// version is served by the other holders.
    pub fn ack_item(
        &self,
        path: &str,
        version: u64,
        v: &VersionEntry,
        complaint: Option<String>,
    ) -> Option<AckItem> {
        let complaint = match complaint {
            None if self.false_complaints => Some("TEST BUILD: a false complaint".to_string()),
            c => c,
        };
        let mut evidence = Vec::new();
        if let Some(reason) = &complaint {
            let env = v.envelopes.get(&self.node_id)?;
            let dh = seal::disclose(&self.keys.sealing, env).ok()?;
            let opens = seal::open_disclosed(
                &self.keys.sealing.public(),
                &self.ctx(path, version, Purpose::Deal),
                env,
                &dh,
            )
            .is_ok();
            if !opens && !self.false_complaints {
                tracing::warn!(%path, version, %reason, "this node's envelope does not open, which it cannot prove to the others; not complaining (the other holders serve the version)");
                return None;
            }
            evidence = dh.to_vec();
        }
        let msg = match &complaint {
            None => ack_message(
                &self.cluster_id,
                path,
                version,
                self.node_id,
                &v.commitments,
            ),
            Some(reason) => complaint_message(
                &self.cluster_id,
                path,
                version,
                self.node_id,
                reason,
                &evidence,
            ),
        };
        Some(AckItem {
            path: path.to_string(),
            version,
            complaint,
            statement: msg,
            evidence,
        })
    }

    /// This node's signature over a batch of its acknowledgements (`batch_message`).
    /// This node's vouch that the state at checkpoint `index` has `digest` (it computed that
    /// state itself by applying the log: `state::checkpoint`).
    pub fn vouch(&self, index: u64, digest: [u8; 32]) -> crate::state::checkpoint::Vouch {
        let msg = crate::state::checkpoint::statement(&self.cluster_id, index, &digest);
        crate::state::checkpoint::Vouch {
            node: self.node_id,
            digest,
            signature: self.keys.ack.sign(&msg).to_vec(),
        }
    }

    pub fn sign_acks(&self, items: &[AckItem]) -> Vec<u8> {
        let statements: Vec<&[u8]> = items.iter().map(|a| a.statement.as_slice()).collect();
        let msg = batch_message(&self.cluster_id, self.node_id, &statements);
        self.keys.ack.sign(&msg).to_vec()
    }

    /// Signs another of this node's statements to the cluster (each kind is its own message,
    /// domain-separated by a label, e.g. `state::ops::breakglass::notified_message`).
    pub fn sign_statement(&self, msg: &[u8]) -> Vec<u8> {
        self.keys.ack.sign(msg).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_crypto::ack::AckKey;
    use tessera_crypto::at_rest::Kek;
    use tessera_crypto::seal::SealingKey;

    pub(super) fn vault(dir: &std::path::Path) -> ShareVault {
        let keys = NodeKeys {
            kek: Kek::generate(),
            sealing: SealingKey::generate(),
            ack: AckKey::generate(),
        };
        ShareVault::new(crate::db::open(dir).unwrap(), keys, 2, "c1".into())
    }

    fn entry(commitments: &vss::Commitments, env: &ShareEnvelope) -> VersionEntry {
        VersionEntry {
            commitments: commitments.clone(),
            threshold: 2,
            holders: vec![1, 2, 3],
            envelopes: [(2, env.clone())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_share_checked_for_a_receipt_serves_apply_only_for_what_it_was_checked_against() {
        let dir = tempfile::tempdir().unwrap();
        let vault = vault(dir.path());
        let d = vss::deal(2, 3).unwrap();
        let to_me = |version, share: &Share| {
            let ctx = vault.ctx("a", version, Purpose::Deal);
            seal::seal(&vault.keys.sealing.public(), &ctx, &share.to_bytes()).unwrap()
        };

        // Checked at receipt time, then applied as it was checked: stored, and it releases.
        let env = to_me(1, &d.shares[1]);
        vault
            .check_for_receipt("a", 1, &d.commitments, &[1, 2, 3], &env)
            .unwrap();
        let mut batch = WriteBatch::default();
        vault
            .accept(&mut batch, "a", 1, &entry(&d.commitments, &env))
            .unwrap();
        vault.db.write(batch).unwrap();
        assert_eq!(vault.share_for_release("a", 1).unwrap(), d.shares[1]);

        // The same envelope written with other commitments than the receipt saw: apply checks
        // anew and refuses (a receipt-time check vouches for nothing else).
        let env = to_me(2, &d.shares[1]);
        vault
            .check_for_receipt("a", 2, &d.commitments, &[1, 2, 3], &env)
            .unwrap();
        let other = vss::deal(2, 3).unwrap();
        let mut batch = WriteBatch::default();
        let refused = vault.accept(&mut batch, "a", 2, &entry(&other.commitments, &env));
        assert!(refused.is_err(), "{refused:?}");

        // Another envelope than the one checked: opened and checked anew (here it is good).
        let env3 = to_me(3, &d.shares[1]);
        vault
            .check_for_receipt("a", 3, &d.commitments, &[1, 2, 3], &to_me(3, &d.shares[1]))
            .unwrap();
        let mut batch = WriteBatch::default();
        vault
            .accept(&mut batch, "a", 3, &entry(&d.commitments, &env3))
            .unwrap();
        // A bad share is never kept: its receipt is refused.
        let bad = to_me(4, &d.shares[1].corrupted());
        assert!(vault
            .check_for_receipt("a", 4, &d.commitments, &[1, 2, 3], &bad)
            .is_err());
        assert!(vault.checked.lock().unwrap().is_empty());
    }

    #[test]
    fn share_keys_round_trip_paths_with_slashes() {
        for v in [1, 42, 256, u64::MAX] {
            let k = share_key("prod/db/password", v);
            assert_eq!(parse_share_key(&k), Some(("prod/db/password".into(), v)));
        }
    }
}
