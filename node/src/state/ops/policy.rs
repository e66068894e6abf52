//! Policies and who they are attached to: `PutPolicy`, `DeletePolicy`, `Attach` and `Restore`
//! (an operator's snapshot of groups, policies and attachments), each validated and applied
//! here. A policy's text is parsed again on apply, so a malformed policy never enters the
//! model, whoever submitted it.

use crate::error::Refusal;
use crate::policy::Policy;
use crate::state::{validate_name, AttachTarget, Model, ROOT_POLICY};

pub fn validate_put(name: &str, text: &str) -> Result<(), Refusal> {
    validate_name("policy", name)?;
    if name == ROOT_POLICY {
        return Err(Refusal::invalid(
            "the root policy is built in and cannot be changed",
        ));
    }
    parse_text(name, text)?;
    Ok(())
}

/// A policy's text as the cluster accepts it: parsed, and without a `break_glass` block for
/// now. The block parses (so its mistakes are shown with their place), but holders do not yet
/// enforce it, and a gate stored and not enforced would let an operator believe a path guarded
/// that a plain `read` opens; so it is refused until they do.
pub fn parse_text(name: &str, text: &str) -> Result<Policy, Refusal> {
    let policy =
        Policy::parse(text).map_err(|e| Refusal::invalid(format!("policy {name:?}: {e}")))?;
    if let Some(rule) = policy.rules.iter().find(|r| r.break_glass.is_some()) {
        return Err(Refusal::invalid(format!(
            "policy {name:?}: the break_glass block of path {:?} is well formed, but this version \
             does not enforce break-glass yet, so it is refused rather than stored and ignored",
            rule.pattern
        )));
    }
    Ok(policy)
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
    Ok(())
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

pub fn validate_restore(model: &Model) -> Result<(), Refusal> {
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
    fn a_gate_that_holders_do_not_enforce_is_never_stored() {
        let gate = "path \"prod/*\" {\n  capabilities = [\"read\"]\n  break_glass {\n    max_ttl = \"1h\"\n    factor \"a\" { approvers = [\"group:sre\"] approvals = 2 }\n  }\n}\n";
        let err = validate_put("p", gate).unwrap_err().to_string();
        assert!(err.contains("does not enforce break-glass yet"), "{err}");
        let mut model = Model::default();
        model.policies.insert("p".into(), gate.into());
        assert!(validate_restore(&model).is_err());
        assert!(validate_put("p", "path \"prod/*\" { capabilities = [\"read\"] }").is_ok());
    }
}
