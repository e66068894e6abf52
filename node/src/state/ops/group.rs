//! Groups of identities: `PutGroup` and `DeleteGroup`, each validated and applied here.

use std::collections::BTreeSet;

use super::policy::Change;
use crate::error::Refusal;
use crate::state::{validate_name, Model};

pub fn validate_put(name: &str, members: &BTreeSet<String>) -> Result<(), Refusal> {
    validate_name("group", name)?;
    for m in members {
        validate_name("identity", m)?;
    }
    Ok(())
}

pub fn apply_put(m: &mut Model, name: &str, members: &BTreeSet<String>) {
    m.groups.insert(name.to_string(), members.clone());
}

pub fn validate_delete(m: &Model, ch: &Change, name: &str) -> Result<(), Refusal> {
    if !m.groups.contains_key(name) {
        return Err(Refusal::invalid(format!("group {name:?} does not exist")));
    }
    super::policy::guard_approver_group(m, ch, name)
}

/// The group and its policy attachments go (a gated deletion spends its grant's use).
pub fn apply_delete(m: &mut Model, ch: &Change, name: &str) {
    if super::policy::names_group(m, name) {
        super::policy::spend(m, ch, format!("delete group {name}").as_bytes());
    }
    m.groups.remove(name);
    m.group_policies.remove(name);
}
