//! Break-glass commands: `BreakGlassRequest`, `BreakGlassDecide`, `BreakGlassRevoke` and
//! `BreakGlassUse`, each checked and applied here with the rules of `state::breakglass`.
//!
//! Each `validate_*` returns the request as it would stand after the command, and the matching
//! apply stores exactly that: the rules run once per node, on the model and time of the entry.
//! The signed call of each command is kept in the record as evidence (holders verify it again
//! before they release; an auditor verifies it offline).

use crate::error::Refusal;
use crate::policy::Capability;
use crate::state::breakglass::{
    gates_for, Request, UseTarget, GROUP_PATH, MAX_REASON_CHARS, POLICY_PATH,
};
use crate::state::kv::RotateRequired;
use crate::state::{Command, Effects, Model, NodeId, Timestamp};

use super::Ctx;

/// A request's id: its signed call's id, in hex (unique: a call id is applied once).
fn request_id(cmd: &Command) -> Result<String, Refusal> {
    cmd.signed
        .as_ref()
        .map(|c| hex::encode(&c.id))
        .ok_or_else(|| {
            Refusal::unauthenticated("a break-glass command must be signed by its client")
        })
}

fn existing<'a>(m: &'a Model, id: &str) -> Result<&'a Request, Refusal> {
    m.breakglass
        .get(id)
        .ok_or_else(|| Refusal::not_found(format!("no break-glass request {id:?}")))
}

/// `path` as a break-glass request may name it: a KV path for `read`, `keys/NAME` of an
/// existing key for `sign`.
fn check_target(m: &Model, path: &str, capability: Capability) -> Result<(), Refusal> {
    match capability {
        Capability::Read => {
            crate::state::kv::validate_path(path)?;
            if path.starts_with("keys/") || path.starts_with("sys/") {
                return Err(Refusal::invalid(format!(
                    "{path:?} is not a secret path; a grant to sign with a key names keys/NAME with --capability sign"
                )));
            }
            Ok(())
        }
        Capability::Sign => match path.strip_prefix("keys/") {
            Some(name) if m.keys.contains_key(name) => Ok(()),
            Some(name) => Err(Refusal::not_found(format!("no signing key {name:?}"))),
            None => Err(Refusal::invalid(format!(
                "a grant to sign names keys/NAME, not {path:?}"
            ))),
        },
        // Changing or deleting a policy that holds a gate, deleting an approver group
        // (`ops::policy`).
        Capability::Update | Capability::Delete => {
            if let Some(name) = path.strip_prefix(POLICY_PATH) {
                return match m.policies.contains_key(name) {
                    true => Ok(()),
                    false => Err(Refusal::not_found(format!("no policy {name:?}"))),
                };
            }
            match path.strip_prefix(GROUP_PATH) {
                Some(name) if capability == Capability::Delete => match m.groups.contains_key(name) {
                    true => Ok(()),
                    false => Err(Refusal::not_found(format!("no group {name:?}"))),
                },
                _ => Err(Refusal::invalid(format!(
                    "a grant to {capability} names a gating policy (sys/policies/NAME) or, to delete, an approver group (sys/groups/NAME), not {path:?}"
                ))),
            }
        }
        other => Err(Refusal::invalid(format!(
            "break-glass grants read or sign (or update or delete on a gating policy), not {other}"
        ))),
    }
}

pub fn validate_request(
    m: &Model,
    cx: &Ctx,
    cmd: &Command,
    (path, capability, reason, ttl_secs, time): (&str, Capability, &str, u64, Timestamp),
) -> Result<Request, Refusal> {
    let id = request_id(cmd)?;
    check_target(m, path, capability)?;
    let gates = gates_for(&m.policies, &cx.trust.policies, path);
    let mut r = Request::open(
        id,
        &cmd.by,
        path,
        capability,
        reason,
        ttl_secs,
        time,
        m.settings.request_ttl_secs(),
        &gates,
    )?;
    r.call = cmd.signed.clone();
    Ok(r)
}

pub fn validate_decide(
    m: &Model,
    cx: &Ctx,
    cmd: &Command,
    (id, approve, comment, digest, time): (&str, bool, &str, &[u8], Timestamp),
) -> Result<Request, Refusal> {
    let r = existing(m, id)?;
    if comment.chars().count() > MAX_REASON_CHARS {
        return Err(Refusal::invalid(format!(
            "the comment is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    if digest != r.digest(cx.cluster_id) {
        return Err(Refusal::rejected(format!(
            "the decision names another version of break-glass request {id} than the cluster holds; show it again and decide on what it says"
        )));
    }
    let gates = gates_for(&m.policies, &cx.trust.policies, &r.path);
    let groups = m.groups_of(&cmd.by).into_iter().collect();
    let mut r = r.clone();
    r.decide(&cmd.by, &groups, approve, comment, time, &gates)?;
    if let Some(d) = r.decisions.last_mut() {
        d.call = cmd.signed.clone();
    }
    Ok(r)
}

pub fn validate_revoke(
    m: &Model,
    cx: &Ctx,
    cmd: &Command,
    id: &str,
    time: Timestamp,
) -> Result<Request, Refusal> {
    let r = existing(m, id)?;
    if cmd.by != r.requester {
        crate::state::authority::authorize(m, cx.trust, &cmd.by, &r.path, Capability::Admin)?;
    }
    let mut r = r.clone();
    r.revoke(&cmd.by, time)?;
    Ok(r)
}

pub fn validate_use(
    m: &Model,
    cmd: &Command,
    (id, use_id, target, time): (&str, &str, &UseTarget, Timestamp),
) -> Result<Request, Refusal> {
    if use_id.len() != 32
        || !use_id
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(Refusal::invalid(
            "a use id is 16 random bytes in lowercase hex",
        ));
    }
    let mut r = existing(m, id)?.clone();
    // The target's shape must fit the grant (a read names a version, a sign grant a digest).
    let (version, digest) = target.wire();
    UseTarget::of(r.capability, version, &digest)?;
    r.commit_use(&cmd.by, use_id, target.clone(), time)?;
    if let Some(u) = r.uses.last_mut() {
        u.call = cmd.signed.clone();
    }
    Ok(r)
}

/// The most events one `BreakGlassNotified` may carry.
pub const MAX_NOTIFIED: usize = 1000;

/// What node `node` signs when it says it delivered `items` (request id, event key).
pub fn notified_message(cluster_id: &str, node: NodeId, items: &[(String, String)]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = vec![b"tessera/breakglass-notified/v1", cluster_id.as_bytes()];
    for (id, key) in items {
        parts.push(id.as_bytes());
        parts.push(key.as_bytes());
    }
    tessera_crypto::ack::statement_digest(&parts, &[node, items.len() as u64])
}

/// A member's signed word that it delivered these events. It decides only which events the
/// next leader sends again, so a lying member can at worst suppress a notification (the
/// events stay in the record, the audit log and the metrics), never change a request.
pub fn validate_notified(
    cx: &Ctx,
    node: NodeId,
    items: &[(String, String)],
    signature: &[u8],
) -> Result<(), Refusal> {
    if items.is_empty() || items.len() > MAX_NOTIFIED {
        return Err(Refusal::invalid(format!(
            "a notification record names 1 to {MAX_NOTIFIED} events"
        )));
    }
    if let Some((id, key)) = items
        .iter()
        .find(|(id, key)| id.len() > 128 || !crate::state::breakglass::is_event_key(key))
    {
        return Err(Refusal::invalid(format!(
            "{id}.{key} is not a break-glass event"
        )));
    }
    let public = cx
        .members
        .all
        .get(&node)
        .and_then(|n| n.ack_key_bytes())
        .ok_or_else(|| {
            Refusal::invalid(format!(
                "notification record from node {node}, which is not a member with a key"
            ))
        })?;
    tessera_crypto::ack::verify_ack(
        &public,
        &notified_message(cx.cluster_id, node, items),
        signature,
    )
    .map_err(|e| Refusal::invalid(format!("notification record by node {node}: {e}")))
}

/// Marks the events delivered (a request gone meanwhile is skipped).
pub fn apply_notified(m: &mut Model, items: &[(String, String)]) {
    for (id, key) in items {
        if let Some(r) = m.breakglass.get_mut(id) {
            r.notified.insert(key.clone());
        }
    }
}

/// Stores the request as its command left it. The first use of a read grant marks the
/// secret's current version `rotate_required`: it was seen in an emergency.
pub fn apply(m: &mut Model, r: Result<Request, Refusal>, fx: &mut Effects) {
    let Ok(r) = r else { return };
    let first_use = m
        .breakglass
        .get(&r.id)
        .is_some_and(|before| before.uses.is_empty())
        && r.uses.len() == 1;
    if first_use && r.capability == Capability::Read {
        if let Some(e) = m.secrets.get_mut(&r.path) {
            let current = e.current_version;
            if let Some(v) = e.versions.get_mut(&current) {
                if v.rotate_required.is_none() {
                    v.rotate_required = Some(RotateRequired {
                        grant: r.id.clone(),
                        by: r.requester.clone(),
                        at: r.uses[0].at,
                    });
                    fx.secrets.push(r.path.clone());
                }
            }
        }
    }
    m.breakglass.insert(r.id.clone(), r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::authority::testing::{TestCa, TestClient};
    use crate::state::breakglass::testing::{at, decision, run, with_gate};
    use crate::state::{CommandResult, Op};

    fn model() -> Model {
        let mut m = Model::default();
        with_gate(&mut m);
        m
    }

    fn refusal(r: &CommandResult) -> String {
        r.error.as_ref().expect("refused").to_string()
    }

    fn use_of(c: &TestClient, id: &str, n: u8, t: u64) -> Command {
        c.sign(Op::BreakGlassUse {
            id: id.into(),
            use_id: hex::encode([n; 16]),
            target: UseTarget::Version(1),
            time: at(t),
        })
    }

    #[test]
    fn a_request_is_granted_by_signed_decisions_and_spent_by_signed_uses() {
        let ca = TestCa::new();
        let (alice, bob, carol, ciso, dave) = (
            ca.client("alice"),
            ca.client("bob"),
            ca.client("carol"),
            ca.client("ciso"),
            ca.client("dave"),
        );
        let mut m = model();
        let ask = |ttl| Op::BreakGlassRequest {
            path: "prod/db/main".into(),
            capability: Capability::Read,
            reason: "incident 42".into(),
            ttl_secs: ttl,
            time: at(0),
        };
        // Over max_ttl, and from someone the policies would not let read: refused.
        assert!(refusal(&run(&mut m, &ca, &alice.sign(ask(7200)))).contains("at most 1h"));
        assert!(refusal(&run(&mut m, &ca, &dave.sign(ask(600)))).contains("permission denied"));
        assert!(m.breakglass.is_empty());
        let cmd = alice.sign(ask(600));
        let id = hex::encode(&cmd.signed.as_ref().unwrap().id);
        assert_eq!(run(&mut m, &ca, &cmd), CommandResult::ok());
        assert_eq!(m.breakglass[&id].requester, "alice");
        assert!(
            m.breakglass[&id].call.is_some(),
            "the signed request is kept as evidence"
        );

        // The requester cannot approve, even in the group; a stale digest is refused; a use
        // before the grant is refused.
        assert!(refusal(&{
            let c = decision(&alice, &m, &id, true, 1);
            run(&mut m, &ca, &c)
        })
        .contains("their own"));
        let mut stale = decision(&bob, &m, &id, true, 1);
        if let Op::BreakGlassDecide { digest, .. } = &mut stale.op {
            digest[0] ^= 1;
        }
        let stale = bob.sign(stale.op);
        assert!(refusal(&run(&mut m, &ca, &stale)).contains("another version"));
        assert!(refusal(&run(&mut m, &ca, &use_of(&alice, &id, 1, 2))).contains("pending"));

        for (c, t) in [(&bob, 3), (&carol, 4)] {
            assert_eq!(
                {
                    let c = decision(c, &m, &id, true, t);
                    run(&mut m, &ca, &c)
                },
                CommandResult::ok()
            );
        }
        assert!(refusal(&{
            let c = decision(&bob, &m, &id, true, 5);
            run(&mut m, &ca, &c)
        })
        .contains("already decided"));
        assert_eq!(m.breakglass[&id].status(at(5)).name(), "pending");
        assert_eq!(
            {
                let c = decision(&ciso, &m, &id, true, 6);
                run(&mut m, &ca, &c)
            },
            CommandResult::ok()
        );
        assert_eq!(m.breakglass[&id].status(at(7)).name(), "active");
        assert!(m.breakglass[&id].decisions.iter().all(|d| d.call.is_some()));

        // Two uses by alice only, each id once.
        assert!(refusal(&run(&mut m, &ca, &use_of(&dave, &id, 1, 8))).contains("permission denied"));
        assert_eq!(
            run(&mut m, &ca, &use_of(&alice, &id, 1, 8)),
            CommandResult::ok()
        );
        assert!(
            refusal(&run(&mut m, &ca, &use_of(&alice, &id, 1, 9))).contains("committed already")
        );
        assert_eq!(
            run(&mut m, &ca, &use_of(&alice, &id, 2, 9)),
            CommandResult::ok()
        );
        assert!(refusal(&run(&mut m, &ca, &use_of(&alice, &id, 3, 10))).contains("spent"));
    }

    #[test]
    fn a_deny_vetoes_and_revoking_takes_the_requester_or_an_admin() {
        let ca = TestCa::new();
        let (alice, bob, ciso, dave) = (
            ca.client("alice"),
            ca.client("bob"),
            ca.client("ciso"),
            ca.client("dave"),
        );
        let mut m = model();
        let open = |m: &mut Model, t| {
            let cmd = alice.sign(Op::BreakGlassRequest {
                path: "prod/db/main".into(),
                capability: Capability::Read,
                reason: "incident".into(),
                ttl_secs: 60,
                time: at(t),
            });
            assert_eq!(run(m, &ca, &cmd), CommandResult::ok());
            hex::encode(&cmd.signed.as_ref().unwrap().id)
        };
        let one = open(&mut m, 0);
        assert_eq!(
            {
                let c = decision(&ciso, &m, &one, false, 1);
                run(&mut m, &ca, &c)
            },
            CommandResult::ok()
        );
        assert_eq!(m.breakglass[&one].status(at(2)).name(), "denied");
        assert!(refusal(&{
            let c = decision(&bob, &m, &one, true, 2);
            run(&mut m, &ca, &c)
        })
        .contains("denied"));

        let two = open(&mut m, 10);
        let revoke = |c: &TestClient, id: &str| {
            c.sign(Op::BreakGlassRevoke {
                id: id.into(),
                time: at(11),
            })
        };
        assert!(refusal(&run(&mut m, &ca, &revoke(&dave, &two))).contains("permission denied"));
        assert_eq!(run(&mut m, &ca, &revoke(&alice, &two)), CommandResult::ok());
        assert_eq!(m.breakglass[&two].status(at(12)).name(), "revoked");
        // An unknown id, and an unsigned command (what a compromised leader would append).
        assert!(
            refusal(&run(&mut m, &ca, &revoke(&alice, "00"))).contains("no break-glass request")
        );
        let forged = Command::by_node(
            "alice".into(),
            Op::BreakGlassUse {
                id: two.clone(),
                use_id: hex::encode([1; 16]),
                target: UseTarget::Version(1),
                time: at(13),
            },
        );
        assert!(refusal(&run(&mut m, &ca, &forged)).contains("no client signature"));
    }

    #[test]
    fn a_request_waits_as_long_as_the_request_ttl_setting_says() {
        let ca = TestCa::new();
        let mut m = Model::default();
        m.settings.breakglass_request_ttl_secs = Some(3600);
        let id = crate::state::breakglass::testing::requested(&ca, &mut m);
        let r = &m.breakglass[&id];
        assert_eq!(r.pending_until, at(3600));
        assert_eq!(r.status(at(3599)).name(), "pending");
        assert_eq!(r.status(at(3600)).name(), "expired");
    }

    #[test]
    fn a_path_no_gate_covers_takes_no_request() {
        let ca = TestCa::new();
        let alice = ca.client("alice");
        let mut m = model();
        m.identity_policies.insert(
            "alice".into(),
            ["gate".to_string(), "wide".to_string()].into(),
        );
        m.policies.insert(
            "wide".into(),
            r#"path "*" { capabilities = ["read"] }"#.into(),
        );
        let r = run(
            &mut m,
            &ca,
            &alice.sign(Op::BreakGlassRequest {
                path: "staging/x".into(),
                capability: Capability::Read,
                reason: "why".into(),
                ttl_secs: 60,
                time: at(0),
            }),
        );
        assert!(refusal(&r).contains("not covered by any break_glass block"));
        assert!(m.breakglass.is_empty());
    }
}
