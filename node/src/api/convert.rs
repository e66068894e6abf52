//! Domain types into their wire form, in one place: holders and members with their public
//! keys, a version's public metadata, a key's public state.

use tessera_crypto::value::ValueCiphertext;
use tessera_proto::{Holder, KeyInfo, KvMetadataReply, KvVersionReply, NodeEntry, VersionInfo};

use super::Api;
use crate::state::keys::{KeyEntry, KeyStatus};
use crate::state::kv::{SecretEntry, VersionEntry};
use crate::state::Members;

pub(super) fn status_str(s: &KeyStatus) -> String {
    match s {
        KeyStatus::Generating => "generating".into(),
        KeyStatus::Active => "active".into(),
        KeyStatus::Failed(r) => format!("failed: {r}"),
    }
}

/// A secret's metadata and every version's public facts (never a value or a share).
pub(super) fn metadata_reply(path: &str, e: &SecretEntry) -> KvMetadataReply {
    let time = |t: Option<crate::state::Timestamp>| t.map(|t| t.to_string()).unwrap_or_default();
    KvMetadataReply {
        path: path.to_string(),
        current_version: e.current_version,
        created_time: time(e.created_time),
        updated_time: time(e.updated_time),
        max_versions: e.max_versions(),
        cas_required: e.cas_required,
        custom_metadata: e.custom_metadata.clone().into_iter().collect(),
        versions: e
            .versions
            .iter()
            .map(|(n, v)| VersionInfo {
                version: *n,
                created_time: v.created_time.to_string(),
                created_by: v.created_by.clone(),
                deletion_time: time(v.deletion_time),
                destroyed: v.destroyed,
                acks: v.acks.keys().copied().collect(),
                holders: v.holders.clone(),
                threshold: v.threshold,
                valid: v.is_valid(),
                complaints: v.complaints.keys().copied().collect(),
                pending: v.envelopes.keys().copied().collect(),
                rotate_required: v
                    .rotate_required
                    .as_ref()
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
            })
            .collect(),
    }
}

impl Api {
    pub(super) fn members_now(&self) -> Members {
        let st = self.node.state.read().expect("state lock");
        st.model.members.clone()
    }

    pub(super) fn holders(&self, ids: &[u64]) -> Vec<Holder> {
        let members = self.members_now();
        ids.iter()
            .filter_map(|id| {
                let n = members.all.get(id)?;
                Some(Holder {
                    id: *id,
                    address: n.addr.clone(),
                    region: n.region.clone(),
                    sealing_key: hex::decode(&n.sealing_key).unwrap_or_default(),
                    certificate: n.certificate.clone(),
                })
            })
            .collect()
    }

    /// The public metadata of one version (the ciphertext only when asked: one holder sends it).
    pub(super) fn version_reply(
        &self,
        path: String,
        n: u64,
        v: VersionEntry,
        with_ciphertext: bool,
        stale: bool,
    ) -> KvVersionReply {
        let rotate_required = v
            .rotate_required
            .as_ref()
            .map(|r| r.to_string())
            .unwrap_or_default();
        let ct = v
            .ciphertext
            .filter(|_| with_ciphertext)
            .unwrap_or(ValueCiphertext {
                nonce: [0; 12],
                ciphertext: Vec::new(),
            });
        KvVersionReply {
            path,
            version: n,
            nonce: ct.nonce.to_vec(),
            ciphertext: ct.ciphertext,
            commitments: v.commitments.0.iter().map(|c| c.to_vec()).collect(),
            threshold: v.threshold,
            holders: self.holders(&v.holders),
            index: v.index,
            cluster_id: self.node.config.cluster_id.clone(),
            region: self.node.config.region.clone(),
            stale,
            rotate_required,
        }
    }

    pub(super) fn key_info(&self, name: &str, k: &KeyEntry) -> KeyInfo {
        KeyInfo {
            name: name.to_string(),
            purpose: k.purpose.as_str().into(),
            status: status_str(&k.status),
            group_key: k.group_key.map(|g| g.to_vec()).unwrap_or_default(),
            public_key_package: k.public_key_package.clone().unwrap_or_default(),
            threshold: k.threshold as u32,
            participants: self.holders(&k.participants),
            attempt: k.attempt,
            created_time: k.created_time.to_string(),
            created_by: k.created_by.clone(),
            region: self.node.config.region.clone(),
            ssh_allowed_principals: k
                .ssh_role
                .as_ref()
                .map(|r| r.allowed_principals.clone())
                .unwrap_or_default(),
            ssh_allowed_extensions: k
                .ssh_role
                .as_ref()
                .map(|r| r.allowed_extensions.clone())
                .unwrap_or_default(),
            ssh_max_ttl_seconds: k.ssh_role.as_ref().map(|r| r.max_ttl).unwrap_or_default(),
        }
    }

    /// Whether Raft's own membership (as this node knows it) has node `id`.
    pub(super) fn in_raft(&self, id: u64) -> bool {
        let m = self.node.raft.metrics().borrow().clone();
        let present = m.membership_config.membership().get_node(&id).is_some();
        present
    }

    /// The signed membership (`state::members`).
    pub(super) fn members(&self) -> Vec<NodeEntry> {
        let mut members = self.members_now();
        if members.all.is_empty() {
            // Before the genesis document applied: the bootstrap membership Raft started with.
            let m = self.node.raft.metrics().borrow().clone();
            let membership = m.membership_config.membership();
            members.all = membership.nodes().map(|(i, n)| (*i, n.clone())).collect();
            members.voters = membership
                .voter_ids()
                .filter_map(|i| Some((i, members.all.get(&i)?.clone())))
                .collect();
        }
        let voters = &members.voters;
        members
            .all
            .iter()
            .map(|(id, n)| NodeEntry {
                id: *id,
                address: n.addr.clone(),
                region: n.region.clone(),
                role: if voters.contains_key(id) {
                    "voter"
                } else {
                    "learner"
                }
                .into(),
                reachable: false,
                last_applied: 0,
                state: String::new(),
            })
            .collect()
    }
}
