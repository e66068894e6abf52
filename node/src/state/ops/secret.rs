//! Secrets apart from writing versions (`state::kv` holds `KvPut` and `KvAcks`): soft delete,
//! undelete, destroy, metadata and removing a secret. Each is validated and applied here;
//! destroying or pruning a version lists it in `Effects::erased`, and every holder then erases
//! its share of it.

use std::collections::BTreeMap;

use crate::error::Refusal;
use crate::state::kv::{check_versions, validate_path, SecretEntry};
use crate::state::{Effects, Model, Timestamp};

/// The versions a delete names; none means the current one (decided here, on apply, so that
/// the op stays exactly what the client signed).
fn delete_targets(m: &Model, path: &str, versions: &[u64]) -> Vec<u64> {
    if versions.is_empty() {
        if let Some(e) = m.secrets.get(path) {
            return vec![e.current_version];
        }
    }
    versions.to_vec()
}

pub fn validate_delete(m: &Model, path: &str, versions: &[u64]) -> Result<(), Refusal> {
    check_versions(&m.secrets, path, &delete_targets(m, path, versions))
}

/// Marks the versions deleted at `time` (a destroyed or already deleted one is left as is).
pub fn apply_delete(
    m: &mut Model,
    path: &str,
    versions: &[u64],
    time: Timestamp,
    fx: &mut Effects,
) {
    let versions = delete_targets(m, path, versions);
    let e = m.secrets.get_mut(path).expect("validated");
    for v in &versions {
        let ve = e.versions.get_mut(v).expect("validated");
        if ve.deletion_time.is_none() && !ve.destroyed {
            ve.deletion_time = Some(time);
        }
    }
    fx.secrets.push(path.to_string());
}

pub fn validate_undelete(m: &Model, path: &str, versions: &[u64]) -> Result<(), Refusal> {
    check_versions(&m.secrets, path, versions)?;
    let e = &m.secrets[path];
    for v in versions {
        if e.versions[v].destroyed {
            return Err(Refusal::invalid(format!(
                "{path:?} version {v} is destroyed and cannot be undeleted"
            )));
        }
    }
    Ok(())
}

pub fn apply_undelete(m: &mut Model, path: &str, versions: &[u64], fx: &mut Effects) {
    let e = m.secrets.get_mut(path).expect("validated");
    for v in versions {
        e.versions.get_mut(v).expect("validated").deletion_time = None;
    }
    fx.secrets.push(path.to_string());
}

pub fn validate_destroy(m: &Model, path: &str, versions: &[u64]) -> Result<(), Refusal> {
    check_versions(&m.secrets, path, versions)
}

/// The versions' ciphertexts and envelopes go from the model; every holder erases its share.
pub fn apply_destroy(m: &mut Model, path: &str, versions: &[u64], fx: &mut Effects) {
    let e = m.secrets.get_mut(path).expect("validated");
    for v in versions {
        let ve = e.versions.get_mut(v).expect("validated");
        ve.destroyed = true;
        ve.ciphertext = None;
        ve.envelopes.clear();
        fx.erased.push((path.to_string(), *v));
    }
    fx.secrets.push(path.to_string());
}

pub fn validate_metadata_put(path: &str, max_versions: Option<u32>) -> Result<(), Refusal> {
    validate_path(path)?;
    if max_versions.is_some_and(|m| m > 1000) {
        return Err(Refusal::invalid(
            "max_versions must be at most 1000 (0 means the default, 10)",
        ));
    }
    Ok(())
}

/// What `KvMetadataPut` sets; `None` leaves a field as it is.
pub struct MetadataPut<'a> {
    pub path: &'a str,
    pub max_versions: Option<u32>,
    pub cas_required: Option<bool>,
    pub custom_metadata: Option<&'a BTreeMap<String, String>>,
    pub time: Timestamp,
}

/// Creates the entry if needed; versions beyond a lowered `max_versions` are pruned (erased).
pub fn apply_metadata_put(m: &mut Model, put: MetadataPut, fx: &mut Effects) {
    let path = put.path;
    let e: &mut SecretEntry = m.secrets.entry(path.to_string()).or_default();
    e.created_time.get_or_insert(put.time);
    e.updated_time = Some(put.time);
    if let Some(max) = put.max_versions {
        e.max_versions = max;
    }
    if let Some(c) = put.cas_required {
        e.cas_required = c;
    }
    if let Some(c) = put.custom_metadata {
        e.custom_metadata = c.clone();
    }
    let max = e.max_versions() as usize;
    while e.versions.len() > max {
        let oldest = *e.versions.keys().next().expect("non-empty");
        e.versions.remove(&oldest);
        fx.erased.push((path.to_string(), oldest));
    }
    fx.secrets.push(path.to_string());
}

pub fn validate_metadata_delete(m: &Model, path: &str) -> Result<(), Refusal> {
    if !m.secrets.contains_key(path) {
        return Err(Refusal::invalid(format!("no secret at {path:?}")));
    }
    Ok(())
}

/// The secret, every version and its metadata go; every holder erases its shares.
pub fn apply_metadata_delete(m: &mut Model, path: &str, fx: &mut Effects) {
    if let Some(e) = m.secrets.remove(path) {
        for v in e.versions.keys() {
            fx.erased.push((path.to_string(), *v));
        }
    }
    fx.secrets.push(path.to_string());
}
