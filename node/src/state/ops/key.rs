//! Threshold signing keys: `KeyCreate` starts a distributed key generation among the voters,
//! `DkgRound1`/`DkgRound2`/`DkgDone` carry each participant's signed messages, `SshRoleWrite`
//! limits an SSH CA key, `KeyAbort` abandons a generation. Each is applied here, and validated
//! here too except the DKG messages, whose signature check lives with their type in
//! `state::keys` (`check_dkg_message`).

use std::collections::BTreeMap;

use crate::error::Refusal;
use crate::state::keys::{validate_key_name, KeyEntry, KeyPurpose, KeyStatus, SshRole};
use crate::state::{Effects, Members, Model, NodeId, Timestamp};

pub fn validate_create(m: &Model, members: &Members, name: &str) -> Result<(), Refusal> {
    validate_key_name(name)?;
    match m.keys.get(name).map(|k| &k.status) {
        Some(KeyStatus::Active) => {
            return Err(Refusal::invalid(format!("key {name:?} already exists")))
        }
        Some(KeyStatus::Generating) => {
            return Err(Refusal::invalid(format!(
                "key {name:?} is being generated; wait for it or its timeout"
            )))
        }
        _ => {}
    }
    let t = m.settings.threshold.ok_or_else(|| {
        Refusal::rejected("the cluster has no threshold configured yet; try again in a moment")
    })?;
    if (members.voters.len() as u32) < t || t < 2 {
        return Err(Refusal::invalid(format!(
            "threshold {t} needs at least {t} voters"
        )));
    }
    Ok(())
}

/// What `KeyCreate` carries.
pub struct Create<'a> {
    pub name: &'a str,
    pub purpose: KeyPurpose,
    pub time: Timestamp,
    pub deadline: u64,
    pub by: &'a str,
}

/// A new generation among today's voters, with the cluster's threshold; an SSH role set on an
/// earlier generation is kept.
pub fn apply_create(m: &mut Model, members: &Members, c: Create, fx: &mut Effects) {
    let attempt = m.keys.get(c.name).map(|k| k.attempt + 1).unwrap_or(1);
    let entry = KeyEntry {
        purpose: c.purpose,
        threshold: m.settings.threshold.unwrap_or(2) as u16,
        participants: members.voters.keys().copied().collect(),
        attempt,
        created_time: c.time,
        created_by: c.by.to_string(),
        deadline: c.deadline,
        status: KeyStatus::Generating,
        round1: BTreeMap::new(),
        round2: BTreeMap::new(),
        done: BTreeMap::new(),
        group_key: None,
        public_key_package: None,
        ssh_role: m.keys.get(c.name).and_then(|k| k.ssh_role.clone()),
    };
    m.keys.insert(c.name.to_string(), entry);
    fx.dkg = Some(c.name.to_string());
}

pub fn apply_round1(m: &mut Model, name: &str, node: NodeId, package: &[u8], fx: &mut Effects) {
    let k = m.keys.get_mut(name).expect("validated");
    k.round1.insert(node, package.to_vec());
    fx.dkg = Some(name.to_string());
}

pub fn apply_round2(
    m: &mut Model,
    name: &str,
    node: NodeId,
    envelopes: &BTreeMap<NodeId, tessera_crypto::seal::ShareEnvelope>,
    fx: &mut Effects,
) {
    let k = m.keys.get_mut(name).expect("validated");
    k.round2.insert(node, envelopes.clone());
    fx.dkg = Some(name.to_string());
}

/// A participant's public key package. Once every participant has sent one, the key is active
/// if they all agree (and fails otherwise); the round messages are dropped.
pub fn apply_done(
    m: &mut Model,
    name: &str,
    node: NodeId,
    public_key_package: &[u8],
    fx: &mut Effects,
) {
    let k = m.keys.get_mut(name).expect("validated");
    k.done.insert(node, public_key_package.to_vec());
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
            k.status = KeyStatus::Failed("participants derived different group keys".into());
        }
        k.round1.clear();
        k.round2.clear();
    }
    fx.dkg = Some(name.to_string());
}

/// The group key inside a serialized public key package.
fn group_key_of(public_key_package: &[u8]) -> Option<[u8; 32]> {
    let pkp = frost_ed25519::keys::PublicKeyPackage::deserialize(public_key_package).ok()?;
    pkp.verifying_key().serialize().ok()?.try_into().ok()
}

pub fn validate_ssh_role(m: &Model, key: &str, role: &SshRole) -> Result<(), Refusal> {
    let k = m
        .keys
        .get(key)
        .ok_or_else(|| Refusal::invalid(format!("no key {key:?}")))?;
    if !matches!(k.purpose, KeyPurpose::SshUserCa | KeyPurpose::SshHostCa) {
        return Err(Refusal::invalid(format!(
            "key {key:?} is a {} key; SSH roles apply to ssh-user-ca and ssh-host-ca keys",
            k.purpose.as_str()
        )));
    }
    role.validate()
}

pub fn apply_ssh_role(m: &mut Model, key: &str, role: &SshRole) {
    m.keys.get_mut(key).expect("validated").ssh_role = Some(role.clone());
}

pub fn validate_abort(m: &Model, name: &str, attempt: u64) -> Result<(), Refusal> {
    let k = m
        .keys
        .get(name)
        .ok_or_else(|| Refusal::invalid(format!("no key {name:?}")))?;
    if k.attempt != attempt || k.status != KeyStatus::Generating {
        return Err(Refusal::invalid(format!(
            "key {name:?} attempt {attempt} is not generating"
        )));
    }
    Ok(())
}

pub fn apply_abort(m: &mut Model, name: &str, reason: &str, fx: &mut Effects) {
    let k = m.keys.get_mut(name).expect("validated");
    k.status = KeyStatus::Failed(reason.to_string());
    k.round1.clear();
    k.round2.clear();
    fx.dkg = Some(name.to_string());
}
