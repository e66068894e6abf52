//! Groups of identities: `PutGroup` and `DeleteGroup`, each validated and applied here.

use std::collections::BTreeSet;

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

pub fn validate_delete(m: &Model, name: &str) -> Result<(), Refusal> {
    if !m.groups.contains_key(name) {
        return Err(Refusal::invalid(format!("group {name:?} does not exist")));
    }
    super::policy::guard_approver_group(m, name)
}

/// The group and its policy attachments go.
pub fn apply_delete(m: &mut Model, name: &str) {
    m.groups.remove(name);
    m.group_policies.remove(name);
}
