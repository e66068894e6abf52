//! Policies and who they are attached to: `PutPolicy`, `DeletePolicy`, `Attach` and `Restore`
//! (an operator's snapshot of groups, policies and attachments), each validated and applied
//! here. A policy's text is parsed again on apply, so a malformed policy never enters the
//! model, whoever submitted it.

use crate::error::Refusal;
use crate::policy::break_glass::Approver;
use crate::policy::Policy;
use crate::state::{validate_name, AttachTarget, Model, ROOT_POLICY};

pub fn validate_put(m: &Model, name: &str, text: &str) -> Result<(), Refusal> {
    validate_name("policy", name)?;
    if name == ROOT_POLICY {
        return Err(Refusal::invalid(
            "the root policy is built in and cannot be changed",
        ));
    }
    parse_text(name, text)?;
    if m.policies.get(name).is_some_and(|old| old != text) {
        gate_locked(m, name)?;
    }
    Ok(())
}

/// Whether `text` holds a `break_glass` block.
fn gates(text: &str) -> bool {
    Policy::parse(text).is_ok_and(|p| p.rules.iter().any(|r| r.break_glass.is_some()))
}

/// Refuses a change to policy `name` when it holds a gate.
///
/// # Security
///
/// A gate an admin could edit or delete away would bind nobody: the admin (or whoever holds
/// the admin's key) would remove it, read, and put it back. The rule is that such a change
/// needs a grant under the gate's own factors; until this version can take one, a policy with
/// a `break_glass` block cannot be changed or deleted at all (gates can be added, in a new or
/// a gate-free policy; none can be taken away). Attaching and detaching do not move a gate:
/// a gate binds every identity whatever it is attached to.
fn gate_locked(m: &Model, name: &str) -> Result<(), Refusal> {
    match m.policies.get(name) {
        Some(text) if gates(text) => Err(Refusal::rejected(format!(
            "policy {name:?} holds a break_glass gate: changing or deleting it needs a break-glass grant under its own factors, which this version cannot take yet, so it is refused"
        ))),
        _ => Ok(()),
    }
}

/// Refuses deleting a group a gate names as approvers: the factor would be left unmeetable,
/// or meetable by whoever next creates a group of that name.
pub fn guard_approver_group(m: &Model, group: &str) -> Result<(), Refusal> {
    for (name, text) in &m.policies {
        let Ok(p) = Policy::parse(text) else { continue };
        let named = p
            .rules
            .iter()
            .filter_map(|r| r.break_glass.as_ref())
            .flat_map(|bg| bg.factors.iter())
            .flat_map(|f| f.approvers.iter())
            .any(|a| matches!(a, Approver::Group(g) if g == group));
        if named {
            return Err(Refusal::rejected(format!(
                "group {group:?} approves break-glass requests in policy {name:?}; removing it needs a break-glass grant, which this version cannot take yet, so it is refused"
            )));
        }
    }
    Ok(())
}

/// A policy's text as the cluster accepts it: parsed, with every mistake shown at its place.
pub fn parse_text(name: &str, text: &str) -> Result<Policy, Refusal> {
    Policy::parse(text).map_err(|e| Refusal::invalid(format!("policy {name:?}: {e}")))
}

pub fn apply_put(m: &mut Model, name: &str, text: &str) {
    m.policies.insert(name.to_string(), text.to_string());
}

pub fn validate_delete(m: &Model, name: &str) -> Result<(), Refusal> {
    if name == ROOT_POLICY {
        return Err(Refusal::invalid(
            "the root policy is built in and cannot be deleted",
        ));
    }
    if !m.policies.contains_key(name) {
        return Err(Refusal::invalid(format!("policy {name:?} does not exist")));
    }
    gate_locked(m, name)
}

/// The policy goes, and with it every attachment of it.
pub fn apply_delete(m: &mut Model, name: &str) {
    m.policies.remove(name);
    for set in m
        .identity_policies
        .values_mut()
        .chain(m.group_policies.values_mut())
    {
        set.remove(name);
    }
    m.identity_policies.retain(|_, s| !s.is_empty());
    m.group_policies.retain(|_, s| !s.is_empty());
}

pub fn validate_attach(
    m: &Model,
    policy: &str,
    target: &AttachTarget,
    detach: bool,
) -> Result<(), Refusal> {
    if policy != ROOT_POLICY && !m.policies.contains_key(policy) {
        return Err(Refusal::invalid(format!(
            "policy {policy:?} does not exist"
        )));
    }
    let (map, who) = match target {
        AttachTarget::Group(g) => {
            if !m.groups.contains_key(g) {
                return Err(Refusal::invalid(format!("group {g:?} does not exist")));
            }
            (&m.group_policies, g)
        }
        AttachTarget::Identity(i) => {
            validate_name("identity", i)?;
            (&m.identity_policies, i)
        }
    };
    if detach && !map.get(who).is_some_and(|s| s.contains(policy)) {
        return Err(Refusal::invalid(format!(
            "policy {policy:?} is not attached to {who:?}"
        )));
    }
    Ok(())
}

pub fn apply_attach(m: &mut Model, policy: &str, target: &AttachTarget, detach: bool) {
    let (map, who) = match target {
        AttachTarget::Group(g) => (&mut m.group_policies, g),
        AttachTarget::Identity(i) => (&mut m.identity_policies, i),
    };
    if detach {
        if let Some(s) = map.get_mut(who) {
            s.remove(policy);
        }
        map.retain(|_, s| !s.is_empty());
    } else {
        map.entry(who.clone())
            .or_default()
            .insert(policy.to_string());
    }
}

pub fn validate_restore(m: &Model, model: &Model) -> Result<(), Refusal> {
    // A restore may not take a gate away either (see `gate_locked`).
    for (name, text) in &m.policies {
        if model.policies.get(name) != Some(text) {
            gate_locked(m, name)?;
        }
    }
    for group in m.groups.keys() {
        if !model.groups.contains_key(group) {
            guard_approver_group(m, group)?;
        }
    }
    for (name, text) in &model.policies {
        parse_text(name, text)?;
    }
    Ok(())
}

/// Groups, policies and attachments are replaced; membership, settings, keys and secrets are
/// not touched.
pub fn apply_restore(m: &mut Model, model: &Model) {
    m.groups = model.groups.clone();
    m.policies = model.policies.clone();
    m.identity_policies = model.identity_policies.clone();
    m.group_policies = model.group_policies.clone();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_can_be_added_but_never_edited_or_deleted_away() {
        let gate = "path \"prod/*\" {\n  capabilities = [\"read\"]\n  break_glass {\n    max_ttl = \"1h\"\n    factor \"a\" { approvers = [\"group:sre\"] approvals = 2 }\n  }\n}\n";
        let plain = "path \"prod/*\" { capabilities = [\"read\"] }";
        let mut m = Model::default();
        assert!(validate_put(&m, "p", gate).is_ok());
        m.policies.insert("p".into(), plain.into());
        assert!(validate_put(&m, "p", gate).is_ok(), "a gate may be added");
        m.policies.insert("p".into(), gate.into());
        m.groups.insert("sre".into(), Default::default());
        m.groups.insert("other".into(), Default::default());
        assert!(validate_put(&m, "p", gate).is_ok(), "the same text again");
        let err = validate_put(&m, "p", plain).unwrap_err().to_string();
        assert!(err.contains("holds a break_glass gate"), "{err}");
        assert!(validate_delete(&m, "p").is_err());
        assert!(guard_approver_group(&m, "sre").is_err());
        assert!(guard_approver_group(&m, "other").is_ok());
        let mut without = m.clone();
        without.policies.remove("p");
        assert!(validate_restore(&m, &without).is_err());
        let mut without_sre = m.clone();
        without_sre.groups.remove("sre");
        assert!(validate_restore(&m, &without_sre).is_err());
        assert!(validate_restore(&m, &m.clone()).is_ok());
    }
}
