//! The data model every node holds a full copy of. It carries only public data (names, group
//! members, policy text, settings, secret ciphertexts, commitments and envelopes sealed to one
//! node each); no node can learn a secret from it (law 1).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{AttachTarget, Command, CommandResult, Op};
use super::keys::{self, KeyEntry, KeyStatus};
use super::kv::{self, SecretEntry};
use super::{topology, Members};
use crate::policy::Policy;

/// Name of the built-in policy that grants everything; it cannot be written or deleted.
pub const ROOT_POLICY: &str = "root";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Shares needed to read a secret (`t`). `None` until the first leader sets it from the
    /// configuration `operator init` wrote.
    pub threshold: Option<u32>,
    /// Holders beyond `t` that must acknowledge a write before it succeeds (`f`).
    pub ack_fault_tolerance: Option<u32>,
    pub allow_unsafe_topology: bool,
}

impl Settings {
    /// `t + f` acknowledgements, capped at `n`. By default `f` is 1 when the cluster can still
    /// take writes with one holder down, else 0.
    pub fn acks_required(&self, holders: usize) -> usize {
        let t = self.threshold.unwrap_or(2) as usize;
        let f = match self.ack_fault_tolerance {
            Some(f) => f as usize,
            None => holders.saturating_sub(1 + t).min(1),
        };
        (t + f).min(holders)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Policy name → HCL source.
    pub policies: BTreeMap<String, String>,
    pub identity_policies: BTreeMap<String, BTreeSet<String>>,
    pub group_policies: BTreeMap<String, BTreeSet<String>>,
    #[serde(default)]
    pub settings: Settings,
    /// Threshold signing keys (public state of each DKG, group keys).
    #[serde(default)]
    pub keys: BTreeMap<String, keys::KeyEntry>,
    /// Persisted one entry per key by the state machine, not with the rest of the model.
    #[serde(skip)]
    pub secrets: BTreeMap<String, SecretEntry>,
}

/// What an applied command changed beyond the small part of the model, for the state machine
/// to persist and for the node's own share vault to act on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Secret entries that changed (persist, or delete if gone).
    pub secrets: Vec<String>,
    /// A version this command created (holders open their envelope).
    pub created: Option<(String, u64)>,
    /// Versions whose shares every holder must now erase.
    pub erased: Vec<(String, u64)>,
    /// A key whose DKG moved on (this node's DKG runner looks at it).
    pub dkg: Option<String>,
}

/// The group key inside a serialized public key package.
fn group_key_of(public_key_package: &[u8]) -> Option<[u8; 32]> {
    let pkp = frost_ed25519::keys::PublicKeyPackage::deserialize(public_key_package).ok()?;
    pkp.verifying_key().serialize().ok()?.try_into().ok()
}

/// Names are path segments in policies and audit lines: keep them boring.
pub fn validate_name(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!("{kind} name must be 1 to 128 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
    {
        return Err(format!(
            "{kind} name {name:?} may only contain letters, digits, '-', '_', '.', '@'"
        ));
    }
    Ok(())
}

/// What applying needs besides the model: the membership, the cluster id and the log index.
pub struct ApplyCtx<'a> {
    pub members: &'a Members,
    pub cluster_id: &'a str,
    pub index: u64,
}

impl Model {
    /// Applies one command. On refusal the model is unchanged.
    pub fn apply(&mut self, cmd: &Command, ctx: &ApplyCtx) -> (CommandResult, Effects) {
        match self.validate(cmd, ctx.members, ctx.cluster_id) {
            Err(e) => (CommandResult::refused(e), Effects::default()),
            Ok(()) => (
                CommandResult::ok(),
                self.mutate(cmd, ctx.index, ctx.members),
            ),
        }
    }

    /// Checks a command against the current model without changing it: the serving node uses
    /// this for a precise error before anything reaches the log, and apply uses it again.
    pub fn validate(
        &self,
        cmd: &Command,
        members: &Members,
        cluster_id: &str,
    ) -> Result<(), String> {
        match &cmd.op {
            Op::PutGroup { name, members } => {
                validate_name("group", name)?;
                for m in members {
                    validate_name("identity", m)?;
                }
            }
            Op::DeleteGroup { name } => {
                if !self.groups.contains_key(name) {
                    return Err(format!("group {name:?} does not exist"));
                }
            }
            Op::PutPolicy { name, text } => {
                validate_name("policy", name)?;
                if name == ROOT_POLICY {
                    return Err("the root policy is built in and cannot be changed".into());
                }
                Policy::parse(text).map_err(|e| format!("policy {name:?}: {e}"))?;
            }
            Op::DeletePolicy { name } => {
                if name == ROOT_POLICY {
                    return Err("the root policy is built in and cannot be deleted".into());
                }
                if !self.policies.contains_key(name) {
                    return Err(format!("policy {name:?} does not exist"));
                }
            }
            Op::Attach {
                policy,
                target,
                detach,
            } => {
                if policy != ROOT_POLICY && !self.policies.contains_key(policy) {
                    return Err(format!("policy {policy:?} does not exist"));
                }
                let (map, who) = match target {
                    AttachTarget::Group(g) => {
                        if !self.groups.contains_key(g) {
                            return Err(format!("group {g:?} does not exist"));
                        }
                        (&self.group_policies, g)
                    }
                    AttachTarget::Identity(i) => {
                        validate_name("identity", i)?;
                        (&self.identity_policies, i)
                    }
                };
                if *detach && !map.get(who).is_some_and(|s| s.contains(policy)) {
                    return Err(format!("policy {policy:?} is not attached to {who:?}"));
                }
            }
            Op::Restore { model } => {
                for (name, text) in &model.policies {
                    Policy::parse(text).map_err(|e| format!("policy {name:?}: {e}"))?;
                }
            }
            Op::SetSettings {
                threshold,
                ack_fault_tolerance,
                allow_unsafe_topology,
            } => {
                let unsafe_ok =
                    allow_unsafe_topology.unwrap_or(self.settings.allow_unsafe_topology);
                let t = threshold.or(self.settings.threshold);
                let n = members.voters.len();
                if let Some(t) = t {
                    if !unsafe_ok {
                        topology::check(&members.region_counts(), t as usize)?;
                    } else if t < 2 || t as usize > n.max(2) {
                        return Err(format!("threshold {t} is impossible with {n} share holders (need 2 <= t <= {n})"));
                    }
                    if let Some(f) = ack_fault_tolerance {
                        if (t + f) as usize > n {
                            return Err(format!("t + f = {} exceeds the {n} share holders", t + f));
                        }
                    }
                }
            }
            Op::KvPut(p) => kv::validate_put(
                &self.secrets,
                members,
                cluster_id,
                self.settings.threshold,
                p,
            )?,
            Op::KvAcks {
                node,
                acks,
                signature,
            } => kv::validate_acks(&self.secrets, members, cluster_id, *node, acks, signature)?,
            Op::KvDelete { path, versions, .. } | Op::KvDestroy { path, versions } => {
                kv::check_versions(&self.secrets, path, versions)?;
            }
            Op::KvUndelete { path, versions } => {
                kv::check_versions(&self.secrets, path, versions)?;
                let e = &self.secrets[path];
                for v in versions {
                    if e.versions[v].destroyed {
                        return Err(format!(
                            "{path:?} version {v} is destroyed and cannot be undeleted"
                        ));
                    }
                }
            }
            Op::KvMetadataPut {
                path, max_versions, ..
            } => {
                kv::validate_path(path)?;
                if let Some(m) = max_versions {
                    if *m > 1000 {
                        return Err(
                            "max_versions must be at most 1000 (0 means the default, 10)".into(),
                        );
                    }
                }
            }
            Op::KvMetadataDelete { path } => {
                if !self.secrets.contains_key(path) {
                    return Err(format!("no secret at {path:?}"));
                }
            }
            Op::KeyCreate { name, .. } => {
                keys::validate_key_name(name)?;
                match self.keys.get(name).map(|k| &k.status) {
                    Some(KeyStatus::Active) => return Err(format!("key {name:?} already exists")),
                    Some(KeyStatus::Generating) => {
                        return Err(format!(
                            "key {name:?} is being generated; wait for it or its timeout"
                        ))
                    }
                    _ => {}
                }
                let t = self
                    .settings
                    .threshold
                    .ok_or("the cluster has no threshold configured yet; try again in a moment")?;
                if (members.voters.len() as u32) < t || t < 2 {
                    return Err(format!("threshold {t} needs at least {t} voters"));
                }
            }
            Op::DkgRound1 {
                name,
                attempt,
                node,
                package,
                signature,
            } => {
                let m = keys::DkgMessage {
                    name,
                    attempt: *attempt,
                    node: *node,
                    kind: "round1",
                    payload: package,
                    signature,
                };
                keys::check_dkg_message(&self.keys, members, cluster_id, &m)?;
            }
            Op::DkgRound2 {
                name,
                attempt,
                node,
                envelopes,
                signature,
            } => {
                let payload = keys::round2_payload(envelopes);
                let m = keys::DkgMessage {
                    name,
                    attempt: *attempt,
                    node: *node,
                    kind: "round2",
                    payload: &payload,
                    signature,
                };
                keys::check_dkg_message(&self.keys, members, cluster_id, &m)?;
            }
            Op::DkgDone {
                name,
                attempt,
                node,
                public_key_package,
                signature,
            } => {
                let m = keys::DkgMessage {
                    name,
                    attempt: *attempt,
                    node: *node,
                    kind: "done",
                    payload: public_key_package,
                    signature,
                };
                keys::check_dkg_message(&self.keys, members, cluster_id, &m)?;
            }
            Op::SshRoleWrite { key, role } => {
                let k = self
                    .keys
                    .get(key)
                    .ok_or_else(|| format!("no key {key:?}"))?;
                if !matches!(
                    k.purpose,
                    keys::KeyPurpose::SshUserCa | keys::KeyPurpose::SshHostCa
                ) {
                    return Err(format!("key {key:?} is a {} key; SSH roles apply to ssh-user-ca and ssh-host-ca keys", k.purpose.as_str()));
                }
                role.validate()?;
            }
            Op::KeyAbort { name, attempt, .. } => {
                let k = self
                    .keys
                    .get(name)
                    .ok_or_else(|| format!("no key {name:?}"))?;
                if k.attempt != *attempt || k.status != KeyStatus::Generating {
                    return Err(format!("key {name:?} attempt {attempt} is not generating"));
                }
            }
            // The state machine applies a batch's commands one by one; reaching here means a
            // batch inside a batch, which no node builds.
            Op::Batch(_) => return Err("a batch of commands cannot be nested".into()),
        }
        Ok(())
    }

    /// Applies a command that `validate` accepted.
    fn mutate(&mut self, cmd: &Command, index: u64, members: &Members) -> Effects {
        let mut fx = Effects::default();
        match &cmd.op {
            Op::PutGroup { name, members } => {
                self.groups.insert(name.clone(), members.clone());
            }
            Op::DeleteGroup { name } => {
                self.groups.remove(name);
                self.group_policies.remove(name);
            }
            Op::PutPolicy { name, text } => {
                self.policies.insert(name.clone(), text.clone());
            }
            Op::DeletePolicy { name } => {
                self.policies.remove(name);
                for set in self
                    .identity_policies
                    .values_mut()
                    .chain(self.group_policies.values_mut())
                {
                    set.remove(name);
                }
                self.identity_policies.retain(|_, s| !s.is_empty());
                self.group_policies.retain(|_, s| !s.is_empty());
            }
            Op::Attach {
                policy,
                target,
                detach,
            } => {
                let (map, who) = match target {
                    AttachTarget::Group(g) => (&mut self.group_policies, g),
                    AttachTarget::Identity(i) => (&mut self.identity_policies, i),
                };
                if *detach {
                    if let Some(s) = map.get_mut(who) {
                        s.remove(policy);
                    }
                    map.retain(|_, s| !s.is_empty());
                } else {
                    map.entry(who.clone()).or_default().insert(policy.clone());
                }
            }
            Op::Restore { model } => {
                self.groups = model.groups.clone();
                self.policies = model.policies.clone();
                self.identity_policies = model.identity_policies.clone();
                self.group_policies = model.group_policies.clone();
            }
            Op::SetSettings {
                threshold,
                ack_fault_tolerance,
                allow_unsafe_topology,
            } => {
                if let Some(t) = threshold {
                    self.settings.threshold = Some(*t);
                }
                if let Some(f) = ack_fault_tolerance {
                    self.settings.ack_fault_tolerance = Some(*f);
                }
                if let Some(u) = allow_unsafe_topology {
                    self.settings.allow_unsafe_topology = *u;
                }
            }
            Op::KvPut(p) => {
                for v in kv::apply_put(&mut self.secrets, &cmd.by, index, p) {
                    fx.erased.push((p.path.clone(), v));
                }
                fx.secrets.push(p.path.clone());
                fx.created = Some((p.path.clone(), p.version));
            }
            Op::KvAcks {
                node,
                acks,
                signature,
            } => {
                fx.secrets = kv::apply_acks(&mut self.secrets, *node, acks, signature);
                fx.secrets.dedup();
            }
            Op::KvDelete {
                path,
                versions,
                time,
            } => {
                let e = self.secrets.get_mut(path).expect("validated");
                for v in versions {
                    let ve = e.versions.get_mut(v).expect("validated");
                    if ve.deletion_time.is_none() && !ve.destroyed {
                        ve.deletion_time = Some(time.clone());
                    }
                }
                fx.secrets.push(path.clone());
            }
            Op::KvUndelete { path, versions } => {
                let e = self.secrets.get_mut(path).expect("validated");
                for v in versions {
                    e.versions.get_mut(v).expect("validated").deletion_time = None;
                }
                fx.secrets.push(path.clone());
            }
            Op::KvDestroy { path, versions } => {
                let e = self.secrets.get_mut(path).expect("validated");
                for v in versions {
                    let ve = e.versions.get_mut(v).expect("validated");
                    ve.destroyed = true;
                    ve.ciphertext = None;
                    ve.envelopes.clear();
                    fx.erased.push((path.clone(), *v));
                }
                fx.secrets.push(path.clone());
            }
            Op::KvMetadataPut {
                path,
                max_versions,
                cas_required,
                custom_metadata,
                time,
            } => {
                let e = self.secrets.entry(path.clone()).or_default();
                if e.created_time.is_empty() {
                    e.created_time = time.clone();
                }
                e.updated_time = time.clone();
                if let Some(m) = max_versions {
                    e.max_versions = *m;
                }
                if let Some(c) = cas_required {
                    e.cas_required = *c;
                }
                if let Some(c) = custom_metadata {
                    e.custom_metadata = c.clone();
                }
                let max = e.max_versions() as usize;
                while e.versions.len() > max {
                    let oldest = *e.versions.keys().next().expect("non-empty");
                    e.versions.remove(&oldest);
                    fx.erased.push((path.clone(), oldest));
                }
                fx.secrets.push(path.clone());
            }
            Op::KeyCreate {
                name,
                purpose,
                time,
                deadline,
            } => {
                let attempt = self.keys.get(name).map(|k| k.attempt + 1).unwrap_or(1);
                self.keys.insert(
                    name.clone(),
                    KeyEntry {
                        purpose: *purpose,
                        threshold: self.settings.threshold.unwrap_or(2) as u16,
                        participants: members.voters.keys().copied().collect(),
                        attempt,
                        created_time: time.clone(),
                        created_by: cmd.by.clone(),
                        deadline: *deadline,
                        status: KeyStatus::Generating,
                        round1: BTreeMap::new(),
                        round2: BTreeMap::new(),
                        done: BTreeMap::new(),
                        group_key: None,
                        public_key_package: None,
                        ssh_role: self.keys.get(name).and_then(|k| k.ssh_role.clone()),
                    },
                );
                fx.dkg = Some(name.clone());
            }
            Op::DkgRound1 {
                name,
                node,
                package,
                ..
            } => {
                let k = self.keys.get_mut(name).expect("validated");
                k.round1.insert(*node, package.clone());
                fx.dkg = Some(name.clone());
            }
            Op::DkgRound2 {
                name,
                node,
                envelopes,
                ..
            } => {
                let k = self.keys.get_mut(name).expect("validated");
                k.round2.insert(*node, envelopes.clone());
                fx.dkg = Some(name.clone());
            }
            Op::DkgDone {
                name,
                node,
                public_key_package,
                ..
            } => {
                let k = self.keys.get_mut(name).expect("validated");
                k.done.insert(*node, public_key_package.clone());
                if k.done.len() == k.participants.len() {
                    let first = k.done.values().next().cloned().unwrap_or_default();
                    if k.done.values().all(|p| *p == first) {
                        k.group_key = group_key_of(&first);
                        k.public_key_package = Some(first);
                        k.status = if k.group_key.is_some() {
                            KeyStatus::Active
                        } else {
                            KeyStatus::Failed("unreadable public key package".into())
                        };
                    } else {
                        k.status =
                            KeyStatus::Failed("participants derived different group keys".into());
                    }
                    // Round messages are no longer needed.
                    k.round1.clear();
                    k.round2.clear();
                }
                fx.dkg = Some(name.clone());
            }
            Op::SshRoleWrite { key, role } => {
                self.keys.get_mut(key).expect("validated").ssh_role = Some(role.clone());
            }
            Op::KeyAbort { name, reason, .. } => {
                let k = self.keys.get_mut(name).expect("validated");
                k.status = KeyStatus::Failed(reason.clone());
                k.round1.clear();
                k.round2.clear();
                fx.dkg = Some(name.clone());
            }
            Op::KvMetadataDelete { path } => {
                if let Some(e) = self.secrets.remove(path) {
                    for v in e.versions.keys() {
                        fx.erased.push((path.clone(), *v));
                    }
                }
                fx.secrets.push(path.clone());
            }
            Op::Batch(_) => {} // refused by `validate`
        }
        fx
    }

    /// Groups the identity belongs to.
    pub fn groups_of(&self, identity: &str) -> Vec<String> {
        self.groups
            .iter()
            .filter(|(_, m)| m.contains(identity))
            .map(|(g, _)| g.clone())
            .collect()
    }

    /// Names of every policy that applies to the identity, directly or through a group.
    pub fn policies_of(&self, identity: &str) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = self
            .identity_policies
            .get(identity)
            .cloned()
            .unwrap_or_default();
        for g in self.groups_of(identity) {
            if let Some(p) = self.group_policies.get(&g) {
                out.extend(p.iter().cloned());
            }
        }
        out
    }

    /// Everything but the secrets: cheap to clone for a handler.
    pub fn directory_and_settings(&self) -> Model {
        Model {
            settings: self.settings.clone(),
            keys: self.keys.clone(),
            ..self.directory()
        }
    }

    /// The groups/policies part, for `operator snapshot save`.
    pub fn directory(&self) -> Model {
        Model {
            groups: self.groups.clone(),
            policies: self.policies.clone(),
            identity_policies: self.identity_policies.clone(),
            group_policies: self.group_policies.clone(),
            settings: Settings::default(),
            keys: BTreeMap::new(),
            secrets: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::command::Op::*;

    fn cmd(op: Op) -> Command {
        Command {
            by: "admin".into(),
            op,
        }
    }

    fn apply(m: &mut Model, op: Op) -> CommandResult {
        let members = Members::default();
        m.apply(
            &cmd(op),
            &ApplyCtx {
                members: &members,
                cluster_id: "c",
                index: 1,
            },
        )
        .0
    }

    #[test]
    fn a_batch_of_acknowledgements_counts_only_with_its_signature_and_true_statements() {
        use crate::raft::NodeInfo;
        use crate::state::kv::{AckItem, SecretEntry, VersionEntry};
        use tessera_crypto::ack::{ack_message, batch_message, AckKey};
        use tessera_crypto::seal::Envelope;
        use tessera_crypto::vss::Commitments;

        let key = AckKey::generate();
        let mut members = Members::default();
        members.all.insert(
            2,
            NodeInfo {
                addr: "127.0.0.1:1".into(),
                region: "a".into(),
                sealing_key: String::new(),
                ack_key: hex::encode(key.public()),
            },
        );
        let commitments = Commitments(vec![[7; 32], [8; 32], [9; 32]]);
        let version = VersionEntry {
            commitments: commitments.clone(),
            holders: vec![1, 2],
            envelopes: [(
                2,
                Envelope {
                    enc: [1; 32],
                    ciphertext: vec![2; 48],
                },
            )]
            .into(),
            ..VersionEntry::default()
        };
        let mut m = Model::default();
        m.secrets.insert(
            "p".into(),
            SecretEntry {
                versions: [(1, version)].into(),
                ..SecretEntry::default()
            },
        );
        let ctx = ApplyCtx {
            members: &members,
            cluster_id: "c",
            index: 5,
        };
        let item = |statement: Vec<u8>| AckItem {
            path: "p".into(),
            version: 1,
            complaint: None,
            statement,
        };
        let acks = |items: Vec<AckItem>, signature: Vec<u8>| {
            cmd(KvAcks {
                node: 2,
                acks: items,
                signature,
            })
        };
        let sign = |statements: &[&[u8]]| key.sign(&batch_message("c", 2, statements)).to_vec();
        let before = m.clone();

        // A statement about other commitments, even when signed, does not count.
        let wrong = ack_message("c", "p", 1, 2, &Commitments(vec![[6; 32]; 3]));
        let r = m
            .apply(&acks(vec![item(wrong.clone())], sign(&[&wrong])), &ctx)
            .0;
        assert!(r.error.unwrap().contains("does not state this version"));
        assert_eq!(m, before);

        // The true statement with a signature over something else does not count either.
        let right = ack_message("c", "p", 1, 2, &commitments);
        let r = m
            .apply(&acks(vec![item(right.clone())], sign(&[&wrong])), &ctx)
            .0;
        assert!(r.error.unwrap().contains("bad signature"));
        assert_eq!(m, before);

        // Signed as a batch, it counts, and the holder's envelope leaves the state.
        let r = m
            .apply(&acks(vec![item(right.clone())], sign(&[&right])), &ctx)
            .0;
        assert!(r.error.is_none(), "{r:?}");
        let v = &m.secrets["p"].versions[&1];
        assert!(v.acks.contains_key(&2));
        assert!(v.envelopes.is_empty());
    }

    #[test]
    fn malformed_policy_is_refused_and_nothing_changes() {
        let mut m = Model::default();
        let before = m.clone();
        let r = apply(
            &mut m,
            PutPolicy {
                name: "p".into(),
                text: "path \"a/*\" { capabilities = [\"raed\"] }".into(),
            },
        );
        assert!(r.error.unwrap().contains("raed"));
        assert_eq!(m, before);
    }

    #[test]
    fn policies_reach_identities_through_groups_and_detach_works() {
        let mut m = Model::default();
        for op in [
            PutPolicy {
                name: "app".into(),
                text: "path \"prod/app/*\" { capabilities = [\"read\"] }".into(),
            },
            PutGroup {
                name: "devs".into(),
                members: ["alice".to_string()].into(),
            },
            Attach {
                policy: "app".into(),
                target: AttachTarget::Group("devs".into()),
                detach: false,
            },
        ] {
            assert_eq!(apply(&mut m, op).error, None);
        }
        assert_eq!(m.policies_of("alice"), ["app".to_string()].into());
        assert!(m.policies_of("bob").is_empty());
        let r = apply(
            &mut m,
            Attach {
                policy: "app".into(),
                target: AttachTarget::Identity("bob".into()),
                detach: true,
            },
        );
        assert!(r.error.unwrap().contains("not attached"));
        assert_eq!(
            apply(&mut m, DeletePolicy { name: "app".into() }).error,
            None
        );
        assert!(m.policies_of("alice").is_empty());
    }

    #[test]
    fn root_policy_is_immutable() {
        let mut m = Model::default();
        assert!(apply(
            &mut m,
            PutPolicy {
                name: ROOT_POLICY.into(),
                text: String::new()
            }
        )
        .error
        .is_some());
        assert!(apply(
            &mut m,
            DeletePolicy {
                name: ROOT_POLICY.into()
            }
        )
        .error
        .is_some());
    }

    #[test]
    fn acks_required_defaults_to_t_plus_one_when_a_holder_can_be_spared() {
        let s = |t| Settings {
            threshold: Some(t),
            ..Settings::default()
        };
        assert_eq!(s(2).acks_required(3), 2);
        assert_eq!(s(3).acks_required(5), 4);
        let explicit = Settings {
            threshold: Some(3),
            ack_fault_tolerance: Some(2),
            allow_unsafe_topology: false,
        };
        assert_eq!(explicit.acks_required(5), 5);
    }
}
