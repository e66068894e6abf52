//! The data model every node holds a full copy of. It carries only public data (names, group
//! members, policy text); no secret material ever lives here (law 1).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::command::{AttachTarget, Command, CommandResult, Op};
use crate::policy::Policy;

/// Name of the built-in policy that grants everything; it cannot be written or deleted.
pub const ROOT_POLICY: &str = "root";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Model {
    pub groups: BTreeMap<String, BTreeSet<String>>,
    /// Policy name → HCL source.
    pub policies: BTreeMap<String, String>,
    pub identity_policies: BTreeMap<String, BTreeSet<String>>,
    pub group_policies: BTreeMap<String, BTreeSet<String>>,
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

impl Model {
    /// Applies one command. On refusal the model is unchanged.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        match self.try_apply(&cmd.op) {
            Ok(()) => CommandResult::ok(),
            Err(e) => CommandResult::refused(e),
        }
    }

    /// Checks a command against the current model without changing it, so the serving node
    /// can give a precise error before anything reaches the log.
    pub fn check(&self, op: &Op) -> Result<(), String> {
        self.clone().try_apply(op)
    }

    fn try_apply(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::PutGroup { name, members } => {
                validate_name("group", name)?;
                for m in members {
                    validate_name("identity", m)?;
                }
                self.groups.insert(name.clone(), members.clone());
            }
            Op::DeleteGroup { name } => {
                if self.groups.remove(name).is_none() {
                    return Err(format!("group {name:?} does not exist"));
                }
                self.group_policies.remove(name);
            }
            Op::PutPolicy { name, text } => {
                validate_name("policy", name)?;
                if name == ROOT_POLICY {
                    return Err("the root policy is built in and cannot be changed".into());
                }
                Policy::parse(text).map_err(|e| format!("policy {name:?}: {e}"))?;
                self.policies.insert(name.clone(), text.clone());
            }
            Op::DeletePolicy { name } => {
                if name == ROOT_POLICY {
                    return Err("the root policy is built in and cannot be deleted".into());
                }
                if self.policies.remove(name).is_none() {
                    return Err(format!("policy {name:?} does not exist"));
                }
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
                if policy != ROOT_POLICY && !self.policies.contains_key(policy) {
                    return Err(format!("policy {policy:?} does not exist"));
                }
                let (map, who) = match target {
                    AttachTarget::Group(g) => {
                        if !self.groups.contains_key(g) {
                            return Err(format!("group {g:?} does not exist"));
                        }
                        (&mut self.group_policies, g)
                    }
                    AttachTarget::Identity(i) => {
                        validate_name("identity", i)?;
                        (&mut self.identity_policies, i)
                    }
                };
                if *detach {
                    let removed = map.get_mut(who).is_some_and(|s| s.remove(policy));
                    if !removed {
                        return Err(format!("policy {policy:?} is not attached to {who:?}"));
                    }
                    map.retain(|_, s| !s.is_empty());
                } else {
                    map.entry(who.clone()).or_default().insert(policy.clone());
                }
            }
            Op::Restore { model } => {
                for (name, text) in &model.policies {
                    Policy::parse(text).map_err(|e| format!("policy {name:?}: {e}"))?;
                }
                *self = model.clone();
            }
        }
        Ok(())
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

    #[test]
    fn malformed_policy_is_refused_and_nothing_changes() {
        let mut m = Model::default();
        let before = m.clone();
        let r = m.apply(&cmd(PutPolicy {
            name: "p".into(),
            text: "path \"a/*\" { capabilities = [\"raed\"] }".into(),
        }));
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
            assert_eq!(m.apply(&cmd(op)).error, None);
        }
        assert_eq!(m.policies_of("alice"), ["app".to_string()].into());
        assert!(m.policies_of("bob").is_empty());
        let r = m.apply(&cmd(Attach {
            policy: "app".into(),
            target: AttachTarget::Identity("bob".into()),
            detach: true,
        }));
        assert!(r.error.unwrap().contains("not attached"));
        assert_eq!(
            m.apply(&cmd(DeletePolicy { name: "app".into() })).error,
            None
        );
        assert!(m.policies_of("alice").is_empty());
    }

    #[test]
    fn root_policy_is_immutable() {
        let mut m = Model::default();
        assert!(m
            .apply(&cmd(PutPolicy {
                name: ROOT_POLICY.into(),
                text: String::new()
            }))
            .error
            .is_some());
        assert!(m
            .apply(&cmd(DeletePolicy {
                name: ROOT_POLICY.into()
            }))
            .error
            .is_some());
    }
}
