//! Threshold signing keys in the replicated model: the state of each key's distributed key
//! generation (public round-1 packages, round-2 packages sealed to their recipients), and, once
//! it succeeded, the group public key and the public key package. No signing share is here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tessera_crypto::ack::{statement_digest, verify_ack};
use tessera_crypto::b64;
use tessera_crypto::seal::ShareEnvelope;

use super::members::NodeId;
use super::Members;
use super::Timestamp;
use crate::error::Refusal;

pub use tessera_crypto::purpose::KeyPurpose;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyStatus {
    Generating,
    Active,
    Failed(String),
}

/// Limits on what an SSH CA key signs (like Vault's SSH roles), checked by every signer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshRole {
    /// Principal patterns (`*` and `+` globs, as in policies).
    pub allowed_principals: Vec<String>,
    /// Extension names a certificate may carry.
    pub allowed_extensions: Vec<String>,
    /// Longest certificate lifetime, seconds.
    pub max_ttl: u64,
}

impl SshRole {
    pub fn validate(&self) -> Result<(), Refusal> {
        if self.allowed_principals.is_empty()
            || self.allowed_principals.iter().any(|p| p.is_empty())
        {
            return Err(Refusal::invalid(
                "an SSH role needs at least one non-empty allowed principal pattern",
            ));
        }
        if !(60..=7 * 24 * 3600).contains(&self.max_ttl) {
            return Err(Refusal::invalid(
                "max_ttl must be between 1 minute and 7 days",
            ));
        }
        Ok(())
    }

    /// Checks a certificate request against the role; the error names what is not allowed.
    pub fn check(
        &self,
        principals: &[String],
        extensions: &[String],
        lifetime: u64,
    ) -> Result<(), Refusal> {
        for p in principals {
            if !self
                .allowed_principals
                .iter()
                .any(|a| crate::policy::glob_match(a, p))
            {
                return Err(Refusal::invalid(format!(
                    "principal {p:?} is not allowed by the key's SSH role (allowed: {})",
                    self.allowed_principals.join(", ")
                )));
            }
        }
        for e in extensions {
            if !self.allowed_extensions.contains(e) {
                return Err(Refusal::invalid(format!(
                    "extension {e:?} is not allowed by the key's SSH role (allowed: {})",
                    if self.allowed_extensions.is_empty() {
                        "none".to_string()
                    } else {
                        self.allowed_extensions.join(", ")
                    }
                )));
            }
        }
        // The client starts certificates a minute early to absorb clock skew.
        if lifetime > self.max_ttl + 60 {
            return Err(Refusal::invalid(format!(
                "a lifetime of {lifetime} s exceeds the key's SSH role maximum of {} s",
                self.max_ttl
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub purpose: KeyPurpose,
    pub threshold: u16,
    pub participants: Vec<NodeId>,
    /// Each `key create` of a key that failed starts a new attempt (bound into every message).
    pub attempt: u64,
    pub created_time: Timestamp,
    pub created_by: String,
    /// Unix seconds after which an unfinished DKG is aborted.
    pub deadline: u64,
    pub status: KeyStatus,
    #[serde(with = "b64::by_node")]
    pub round1: BTreeMap<NodeId, Vec<u8>>,
    /// Sender → (recipient → envelope sealed to the recipient).
    pub round2: BTreeMap<NodeId, BTreeMap<NodeId, ShareEnvelope>>,
    /// Participant → the public key package it derived (all must agree).
    #[serde(with = "b64::by_node")]
    pub done: BTreeMap<NodeId, Vec<u8>>,
    pub group_key: Option<[u8; 32]>,
    pub public_key_package: Option<Vec<u8>>,
    /// For SSH CA keys: what certificates may say.
    #[serde(default)]
    pub ssh_role: Option<SshRole>,
}

/// What a DKG message (signed by its sender's acknowledgement key) says.
pub fn dkg_message(
    cluster_id: &str,
    name: &str,
    attempt: u64,
    node: NodeId,
    kind: &str,
    payload: &[u8],
) -> Vec<u8> {
    let payload_hash = Sha256::digest(payload);
    statement_digest(
        &[
            b"tessera/dkg/v1",
            cluster_id.as_bytes(),
            name.as_bytes(),
            kind.as_bytes(),
            &payload_hash,
        ],
        &[attempt, node],
    )
}

/// The bytes a round-2 message's signature covers.
pub fn round2_payload(envelopes: &BTreeMap<NodeId, ShareEnvelope>) -> Vec<u8> {
    serde_json::to_vec(envelopes).unwrap_or_default()
}

pub fn validate_key_name(name: &str) -> Result<(), Refusal> {
    super::validate_name("key", name)
}

/// A DKG message as submitted, for checking.
pub struct DkgMessage<'a> {
    pub name: &'a str,
    pub attempt: u64,
    pub node: NodeId,
    pub kind: &'static str,
    pub payload: &'a [u8],
    pub signature: &'a [u8],
}

/// Checks a DKG message: the key is generating this attempt, the sender takes part and signed it.
pub(super) fn check_dkg_message(
    keys: &BTreeMap<String, KeyEntry>,
    members: &Members,
    cluster_id: &str,
    m: &DkgMessage,
) -> Result<(), Refusal> {
    let DkgMessage {
        name,
        attempt,
        node,
        kind,
        payload,
        signature,
    } = *m;
    let k = keys
        .get(name)
        .ok_or_else(|| Refusal::invalid(format!("no key {name:?}")))?;
    if k.attempt != attempt || k.status != KeyStatus::Generating {
        return Err(Refusal::invalid(format!(
            "key {name:?} attempt {attempt} is not generating"
        )));
    }
    if !k.participants.contains(&node) {
        return Err(Refusal::invalid(format!(
            "node {node} does not take part in key {name:?}"
        )));
    }
    let info = members
        .all
        .get(&node)
        .ok_or_else(|| Refusal::invalid(format!("node {node} is not a member")))?;
    let key = info
        .ack_key_bytes()
        .ok_or_else(|| Refusal::invalid(format!("node {node} has no acknowledgement key")))?;
    verify_ack(
        &key,
        &dkg_message(cluster_id, name, attempt, node, kind, payload),
        signature,
    )
    .map_err(|e| Refusal::invalid(format!("{kind} from node {node}: {e}")))
}
