//! Policies and who they are attached to: `PutPolicy`, `DeletePolicy`, `Attach` and `Restore`
//! (an operator's snapshot of groups, policies and attachments), each validated and applied
//! here. A policy's text is parsed again on apply, so a malformed policy never enters the
//! model, whoever submitted it.

use sha2::{Digest, Sha256};

use super::Ctx;
use crate::error::Refusal;
use crate::policy::break_glass::Approver;
use crate::policy::{Capability, Policy};
use crate::state::breakglass::evidence::{check_grant, Release};
use crate::state::breakglass::{Use, UseTarget, GROUP_PATH, POLICY_PATH};
use crate::state::{validate_name, AttachTarget, Command, Model, ROOT_POLICY};

/// A change that may touch a gate: the command that makes it, where it applies, and the
/// break-glass grant it names (if any).
pub struct Change<'a> {
    pub cx: &'a Ctx<'a>,
    pub cmd: &'a Command,
    pub grant: Option<&'a str>,
}

pub fn validate_put(m: &Model, ch: &Change, name: &str, text: &str) -> Result<(), Refusal> {
    validate_name("policy", name)?;
    if name == ROOT_POLICY {
        return Err(Refusal::invalid(
            "the root policy is built in and cannot be changed",
        ));
    }
    parse_text(name, text)?;
    if m.policies.get(name).is_some_and(|old| old != text) {
        gate_locked(m, ch, name, Capability::Update)?;
    }
    Ok(())
}

/// Whether `text` holds a `break_glass` block.
fn gates(text: &str) -> bool {
    Policy::parse(text).is_ok_and(|p| p.rules.iter().any(|r| r.break_glass.is_some()))
}

/// Refuses a change (`capability` update or delete) to policy `name` when it holds a gate,
/// unless `cmd` is made under `grant`: an active grant of that capability on
/// `sys/policies/NAME` to the command's signer, approved by the factors of the gates inside
/// the policy, with a use left.
///
/// # Security
///
/// A gate an admin could edit or delete away would bind nobody: the admin (or whoever holds
/// the admin's key) would remove it, read, and put it back. So the change itself is a use of
/// a grant under the gate's own factors. Every node judges it on apply, at the entry's time,
/// from the signatures the grant's record keeps (`evidence::check_grant`), not from its
/// `granted` state. Attaching and detaching do not move a gate: a gate binds every identity
/// whatever it is attached to. A restore cannot take a grant and may not change a gate.
fn gate_locked(m: &Model, ch: &Change, name: &str, capability: Capability) -> Result<(), Refusal> {
    if !m.policies.get(name).is_some_and(|text| gates(text)) {
        return Ok(());
    }
    let what = format!("policy {name:?} holds a break_glass gate");
    under_grant(m, ch, &format!("{POLICY_PATH}{name}"), capability, &what)
}

/// Refuses deleting group `group` when a gate names it as approvers (the factor would be left
/// unmeetable, or meetable by whoever next creates a group of that name), unless `cmd` is made
/// under `grant`: an active grant to delete `sys/groups/NAME`, approved by the factors of every
/// gate that names the group.
pub fn guard_approver_group(m: &Model, ch: &Change, group: &str) -> Result<(), Refusal> {
    let Some(policy) = naming(m, group) else {
        return Ok(());
    };
    let what = format!("group {group:?} approves break-glass requests in policy {policy:?}");
    under_grant(
        m,
        ch,
        &format!("{GROUP_PATH}{group}"),
        Capability::Delete,
        &what,
    )
}

/// The first policy with a gate that names `group` as approvers.
fn naming(m: &Model, group: &str) -> Option<String> {
    m.policies.iter().find_map(|(name, text)| {
        let p = Policy::parse(text).ok()?;
        p.rules
            .iter()
            .filter_map(|r| r.break_glass.as_ref())
            .flat_map(|bg| bg.factors.iter())
            .flat_map(|f| f.approvers.iter())
            .any(|a| matches!(a, Approver::Group(g) if g == group))
            .then(|| name.clone())
    })
}

/// Whether `cmd` (what `what` says is gated) is made under `grant`, a grant of `capability` on
/// `path` to its signer that holds by its own signatures now and has a use left.
fn under_grant(
    m: &Model,
    ch: &Change,
    path: &str,
    capability: Capability,
    what: &str,
) -> Result<(), Refusal> {
    let Some(id) = ch.grant else {
        return Err(Refusal::rejected(format!(
            "{what}: to {capability} it, ask for a grant under the gate's own factors (tessera breakglass request {path} --capability {capability} --reason ...) and name it with --grant"
        )));
    };
    let r = m
        .breakglass
        .get(id)
        .ok_or_else(|| Refusal::not_found(format!("no break-glass request {id:?}")))?;
    let (g, gates) = check_grant(
        ch.cx.trust,
        m,
        ch.cx.cluster_id,
        r,
        &Release {
            caller: &ch.cmd.by,
            path,
            capability,
            use_id: "",
            target: &UseTarget::Version(0),
            now: ch.cx.time,
        },
    )?;
    let budget = g.uses.min(gates.uses()) as usize;
    if r.uses.len() >= budget {
        return Err(Refusal::rejected(format!(
            "break-glass grant {id} allows {budget} uses and every one is spent"
        )));
    }
    Ok(())
}

/// Records a gated change as a use of its grant (what it was spent on: the SHA-256 of the new
/// text, or of the deletion).
pub fn spend(m: &mut Model, ch: &Change, what: &[u8]) {
    let (Some(id), Some(call)) = (ch.grant, &ch.cmd.signed) else {
        return;
    };
    if let Some(r) = m.breakglass.get_mut(id) {
        r.uses.push(Use {
            id: hex::encode(&call.id),
            at: ch.cx.time,
            target: UseTarget::Message(hex::encode(Sha256::digest(what))),
            call: Some(call.clone()),
        });
    }
}

/// Whether deleting `group` spends a grant (a gate names it).
pub fn names_group(m: &Model, group: &str) -> bool {
    naming(m, group).is_some()
}

/// A policy's text as the cluster accepts it: parsed, with every mistake shown at its place.
pub fn parse_text(name: &str, text: &str) -> Result<Policy, Refusal> {
    Policy::parse(text).map_err(|e| Refusal::invalid(format!("policy {name:?}: {e}")))
}

pub fn apply_put(m: &mut Model, ch: &Change, name: &str, text: &str) {
    if m.policies.get(name).is_some_and(|old| old != text) && gates(&m.policies[name]) {
        spend(m, ch, text.as_bytes());
    }
    m.policies.insert(name.to_string(), text.to_string());
}

pub fn validate_delete(m: &Model, ch: &Change, name: &str) -> Result<(), Refusal> {
    if name == ROOT_POLICY {
        return Err(Refusal::invalid(
            "the root policy is built in and cannot be deleted",
        ));
    }
    if !m.policies.contains_key(name) {
        return Err(Refusal::invalid(format!("policy {name:?} does not exist")));
    }
    gate_locked(m, ch, name, Capability::Delete)
}

/// The policy goes, and with it every attachment of it.
pub fn apply_delete(m: &mut Model, ch: &Change, name: &str) {
    if m.policies.get(name).is_some_and(|text| gates(text)) {
        spend(m, ch, format!("delete policy {name}").as_bytes());
    }
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
    // A restore may not take a gate away either (see `gate_locked`); it takes no grant.
    for (name, text) in &m.policies {
        if model.policies.get(name) != Some(text) && gates(text) {
            return Err(Refusal::rejected(format!(
                "the snapshot changes policy {name:?}, which holds a break_glass gate; change it with `tessera policy write {name} FILE --grant ID` first"
            )));
        }
    }
    for group in m.groups.keys() {
        if !model.groups.contains_key(group) {
            if let Some(policy) = naming(m, group) {
                return Err(Refusal::rejected(format!(
                    "the snapshot removes group {group:?}, which approves break-glass requests in policy {policy:?}; delete it with `tessera group delete {group} --grant ID` first"
                )));
            }
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
    use crate::state::authority::testing::TestCa;
    use crate::state::breakglass::testing::{at, decision, run};
    use crate::state::{CommandResult, Op};

    const GATE: &str = "path \"prod/*\" {\n  capabilities = [\"read\"]\n  break_glass {\n    max_ttl = \"1h\"\n    factor \"a\" { approvers = [\"group:sre\", \"identity:ciso\"] approvals = 1 }\n  }\n}\n";
    const PLAIN: &str = "path \"prod/*\" { capabilities = [\"read\"] }";

    fn refusal(r: &CommandResult) -> String {
        r.error.as_ref().expect("refused").to_string()
    }

    /// admin's request for `capability` on `path`, approved by ciso; its id.
    fn granted(ca: &TestCa, m: &mut Model, path: &str, capability: Capability) -> String {
        let ask = ca.client("admin").sign(Op::BreakGlassRequest {
            path: path.into(),
            capability,
            reason: "a change of approvers".into(),
            ttl_secs: 600,
            time: at(0),
        });
        assert_eq!(run(m, ca, &ask), CommandResult::ok());
        let id = hex::encode(&ask.signed.as_ref().unwrap().id);
        let approve = decision(&ca.client("ciso"), m, &id, true, 1);
        assert_eq!(run(m, ca, &approve), CommandResult::ok());
        id
    }

    #[test]
    fn a_gate_is_changed_only_under_a_grant_of_its_own_factors_spent_by_the_change() {
        let ca = TestCa::new();
        let (admin, other, ciso) = (ca.client("admin"), ca.client("other"), ca.client("ciso"));
        let mut m = Model {
            roots: ["admin".to_string(), "other".to_string()].into(),
            ..Model::default()
        };
        let put = |text: &str, grant: Option<&str>| Op::PutPolicy {
            name: "p".into(),
            text: text.into(),
            grant: grant.map(str::to_string),
        };
        // Adding a gate needs nothing; the same text again changes nothing.
        assert_eq!(
            run(&mut m, &ca, &admin.sign(put(PLAIN, None))),
            CommandResult::ok()
        );
        assert_eq!(
            run(&mut m, &ca, &admin.sign(put(GATE, None))),
            CommandResult::ok()
        );
        assert_eq!(
            run(&mut m, &ca, &admin.sign(put(GATE, None))),
            CommandResult::ok()
        );
        // Root, without a grant: refused, and told how.
        let err = refusal(&run(&mut m, &ca, &admin.sign(put(PLAIN, None))));
        assert!(
            err.contains("holds a break_glass gate")
                && err.contains("breakglass request sys/policies/p --capability update"),
            "{err}"
        );
        let del = admin.sign(Op::DeletePolicy {
            name: "p".into(),
            grant: None,
        });
        assert!(refusal(&run(&mut m, &ca, &del)).contains("--capability delete"));

        let ask = admin.sign(Op::BreakGlassRequest {
            path: "sys/policies/p".into(),
            capability: Capability::Update,
            reason: "retire the prod gate".into(),
            ttl_secs: 600,
            time: at(0),
        });
        assert_eq!(run(&mut m, &ca, &ask), CommandResult::ok());
        let id = hex::encode(&ask.signed.as_ref().unwrap().id);
        // Pending: not yet.
        let err = refusal(&run(&mut m, &ca, &admin.sign(put(PLAIN, Some(&id)))));
        assert!(err.contains("not approved"), "{err}");
        let approve = decision(&ciso, &m, &id, true, 1);
        assert_eq!(run(&mut m, &ca, &approve), CommandResult::ok());
        // Another root cannot spend admin's grant; the grant cannot delete (it is for update).
        let err = refusal(&run(&mut m, &ca, &other.sign(put(PLAIN, Some(&id)))));
        assert!(err.contains("permission denied"), "{err}");
        let del = admin.sign(Op::DeletePolicy {
            name: "p".into(),
            grant: Some(id.clone()),
        });
        assert!(refusal(&run(&mut m, &ca, &del)).contains("is for update"));
        assert_eq!(m.policies["p"], GATE);

        // The requester, under the approved grant: the change is made and spends the use.
        let change = admin.sign(put(PLAIN, Some(&id)));
        assert_eq!(run(&mut m, &ca, &change), CommandResult::ok());
        assert_eq!(m.policies["p"], PLAIN);
        let uses = &m.breakglass[&id].uses;
        assert_eq!(uses.len(), 1);
        assert_eq!(
            uses[0].target,
            UseTarget::Message(hex::encode(Sha256::digest(PLAIN.as_bytes())))
        );
        // The gate is back; the spent grant cannot take it away again.
        assert_eq!(
            run(&mut m, &ca, &admin.sign(put(GATE, None))),
            CommandResult::ok()
        );
        let err = refusal(&run(&mut m, &ca, &admin.sign(put(PLAIN, Some(&id)))));
        assert!(err.contains("spent"), "{err}");
    }

    #[test]
    fn an_approver_group_is_deleted_only_under_a_grant_of_the_gates_that_name_it() {
        let ca = TestCa::new();
        let admin = ca.client("admin");
        let mut m = Model {
            roots: ["admin".to_string()].into(),
            ..Model::default()
        };
        m.policies.insert("p".into(), GATE.into());
        m.groups.insert("sre".into(), ["bob".to_string()].into());
        let delete = |grant: Option<&str>| {
            admin.sign(Op::DeleteGroup {
                name: "sre".into(),
                grant: grant.map(str::to_string),
            })
        };
        let err = refusal(&run(&mut m, &ca, &delete(None)));
        assert!(
            err.contains("approves break-glass requests in policy \"p\"")
                && err.contains("breakglass request sys/groups/sre --capability delete"),
            "{err}"
        );
        let id = granted(&ca, &mut m, "sys/groups/sre", Capability::Delete);
        assert_eq!(run(&mut m, &ca, &delete(Some(&id))), CommandResult::ok());
        assert!(!m.groups.contains_key("sre"));
        assert_eq!(m.breakglass[&id].uses.len(), 1);
    }

    #[test]
    fn an_approver_group_cannot_be_deleted_nor_a_gate_restored_away() {
        let mut m = Model::default();
        m.policies.insert("p".into(), GATE.into());
        m.groups.insert("sre".into(), Default::default());
        m.groups.insert("other".into(), Default::default());
        assert!(names_group(&m, "sre"));
        assert!(!names_group(&m, "other"));
        let mut without = m.clone();
        without.policies.remove("p");
        assert!(validate_restore(&m, &without).is_err());
        let mut without_sre = m.clone();
        without_sre.groups.remove("sre");
        assert!(validate_restore(&m, &without_sre).is_err());
        assert!(validate_restore(&m, &m.clone()).is_ok());
    }
}
