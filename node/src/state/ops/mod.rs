//! Every replicated operation, validated and applied in one place each.
//!
//! One file per concern (`group`, `policy`, `settings`, `secret`, `key`; writing versions and
//! acknowledging them live with their types in `state::kv`), and in each file an operation's
//! `validate_*` beside its `apply_*`. This module only dispatches: `validate` checks a command
//! against the model without changing it (the serving node uses it for an early, precise
//! refusal; apply uses it again on every node), `apply` changes the model for a command that
//! `validate` accepted.
//!
//! # Security
//!
//! Applying is deterministic and trusts no submitter: every node validates every command
//! against the state it has itself applied, and a command that breaks a rule is refused
//! identically everywhere, with the model left unchanged.

pub mod breakglass;
pub mod genesis;
pub mod group;
pub mod key;
pub mod members;
pub mod policy;
pub mod revoke;
pub mod secret;
pub mod settings;

use super::keys::{check_dkg_message, round2_payload, DkgMessage};
use super::{checkpoint, kv, Command, Effects, Members, Model, Op};
use crate::error::Refusal;

/// What a command is checked and applied against besides the model.
pub struct Ctx<'a> {
    pub members: &'a Members,
    pub cluster_id: &'a str,
    /// The log index the command is applied at (0 when only validating).
    pub index: u64,
    /// The cluster CA, for the certificates a command carries.
    pub trust: &'a crate::state::authority::Trust,
    /// The entry's time (the serving node's clock when only validating).
    pub time: crate::state::Timestamp,
}

/// A change to a policy or group as the command makes it (`policy::Change`).
fn change<'a>(cx: &'a Ctx<'a>, cmd: &'a Command, grant: &'a Option<String>) -> policy::Change<'a> {
    policy::Change {
        cx,
        cmd,
        grant: grant.as_deref(),
    }
}

pub fn validate(m: &Model, cmd: &Command, cx: &Ctx) -> Result<(), Refusal> {
    match &cmd.op {
        Op::PutGroup { name, members } => group::validate_put(name, members),
        Op::DeleteGroup { name, grant } => group::validate_delete(m, &change(cx, cmd, grant), name),
        Op::PutPolicy { name, text, grant } => {
            policy::validate_put(m, &change(cx, cmd, grant), name, text)
        }
        Op::DeletePolicy { name, grant } => {
            policy::validate_delete(m, &change(cx, cmd, grant), name)
        }
        Op::Attach {
            policy,
            target,
            detach,
        } => policy::validate_attach(m, policy, target, *detach),
        Op::Restore { model } => policy::validate_restore(m, model),
        Op::SetSettings {
            threshold,
            ack_fault_tolerance,
            allow_unsafe_topology,
            breakglass_request_ttl_secs,
        } => settings::validate(
            m,
            cx.members,
            *threshold,
            *ack_fault_tolerance,
            *allow_unsafe_topology,
        )
        .and_then(|()| settings::validate_request_ttl(*breakglass_request_ttl_secs)),
        Op::KvPut(p) => kv::validate_put(
            &m.secrets,
            cx.members,
            cx.cluster_id,
            m.settings.threshold,
            p,
        ),
        Op::KvAcks {
            node,
            acks,
            signature,
        } => kv::validate_acks(
            &m.secrets,
            cx.members,
            cx.cluster_id,
            *node,
            acks,
            signature,
        ),
        Op::KvDelete { path, versions, .. } => secret::validate_delete(m, path, versions),
        Op::KvUndelete { path, versions } => secret::validate_undelete(m, path, versions),
        Op::KvDestroy { path, versions } => secret::validate_destroy(m, path, versions),
        Op::KvMetadataPut {
            path, max_versions, ..
        } => secret::validate_metadata_put(path, *max_versions),
        Op::KvMetadataDelete { path } => secret::validate_metadata_delete(m, path),
        Op::KeyCreate { name, .. } => key::validate_create(m, cx.members, name),
        Op::DkgRound1 {
            name,
            attempt,
            node,
            package,
            signature,
        } => dkg_message(m, cx, (name, *attempt, *node), "round1", package, signature),
        Op::DkgRound2 {
            name,
            attempt,
            node,
            envelopes,
            signature,
        } => {
            let payload = round2_payload(envelopes);
            dkg_message(
                m,
                cx,
                (name, *attempt, *node),
                "round2",
                &payload,
                signature,
            )
        }
        Op::DkgDone {
            name,
            attempt,
            node,
            public_key_package,
            signature,
        } => dkg_message(
            m,
            cx,
            (name, *attempt, *node),
            "done",
            public_key_package,
            signature,
        ),
        Op::SshRoleWrite { key, role } => key::validate_ssh_role(m, key, role),
        Op::KeyAbort { name, attempt, .. } => key::validate_abort(m, name, *attempt),
        Op::Revoke { target } => revoke::validate(target),
        Op::Genesis(g) => genesis::validate(m, g, cx).map(drop),
        Op::Checkpoint { index, vouch } => checkpoint::validate(
            &m.checkpoints,
            cx.members,
            cx.cluster_id,
            *index,
            cx.index,
            vouch,
        ),
        Op::SetRoots { roots } => genesis::validate_roots(roots),
        Op::MemberAdd {
            id,
            addr,
            region,
            voter,
            certificate,
        } => members::validate_add(m, cx, *id, addr, region, *voter, certificate).map(drop),
        Op::MemberRemove { id } => members::validate_remove(m, *id),
        Op::BreakGlassRequest { .. }
        | Op::BreakGlassDecide { .. }
        | Op::BreakGlassRevoke { .. }
        | Op::BreakGlassUse { .. } => breakglass_next(m, cmd, cx).map(drop),
        Op::BreakGlassNotified {
            node,
            items,
            signature,
        } => breakglass::validate_notified(cx, *node, items, signature),
        // The state machine applies a batch's commands one by one; reaching here means a
        // batch inside a batch, which no node builds.
        Op::Batch(_) => Err(Refusal::invalid("a batch of commands cannot be nested")),
        #[cfg(feature = "byzantine-test")]
        Op::TestInjectBreakGlass(_) => Ok(()),
    }
}

/// A break-glass request as the command `cmd` leaves it (`ops::breakglass`).
fn breakglass_next(
    m: &Model,
    cmd: &Command,
    cx: &Ctx,
) -> Result<crate::state::breakglass::Request, Refusal> {
    match &cmd.op {
        Op::BreakGlassRequest {
            path,
            capability,
            reason,
            ttl_secs,
            time,
        } => {
            breakglass::validate_request(m, cx, cmd, (path, *capability, reason, *ttl_secs, *time))
        }
        Op::BreakGlassDecide {
            id,
            approve,
            comment,
            digest,
            time,
        } => breakglass::validate_decide(m, cx, cmd, (id, *approve, comment, digest, *time)),
        Op::BreakGlassRevoke { id, time } => breakglass::validate_revoke(m, cx, cmd, id, *time),
        Op::BreakGlassUse {
            id,
            use_id,
            target,
            time,
        } => breakglass::validate_use(m, cmd, (id, use_id, target, *time)),
        _ => Err(Refusal::invalid("not a break-glass command")),
    }
}

/// A DKG message of `kind` from participant `node` for attempt `attempt` of key `name`: signed
/// by that participant, for the generation under way.
fn dkg_message(
    m: &Model,
    cx: &Ctx,
    (name, attempt, node): (&str, u64, crate::state::NodeId),
    kind: &'static str,
    payload: &[u8],
    signature: &[u8],
) -> Result<(), Refusal> {
    let msg = DkgMessage {
        name,
        attempt,
        node,
        kind,
        payload,
        signature,
    };
    check_dkg_message(&m.keys, cx.members, cx.cluster_id, &msg)
}

/// Applies a command that `validate` accepted; what changed beyond the model goes to `fx`.
pub fn apply(m: &mut Model, cmd: &Command, cx: &Ctx, fx: &mut Effects) {
    match &cmd.op {
        Op::PutGroup { name, members } => group::apply_put(m, name, members),
        Op::DeleteGroup { name, grant } => group::apply_delete(m, &change(cx, cmd, grant), name),
        Op::PutPolicy { name, text, grant } => {
            policy::apply_put(m, &change(cx, cmd, grant), name, text)
        }
        Op::DeletePolicy { name, grant } => policy::apply_delete(m, &change(cx, cmd, grant), name),
        Op::Attach {
            policy,
            target,
            detach,
        } => policy::apply_attach(m, policy, target, *detach),
        Op::Restore { model } => policy::apply_restore(m, model),
        Op::SetSettings {
            threshold,
            ack_fault_tolerance,
            allow_unsafe_topology,
            breakglass_request_ttl_secs,
        } => {
            settings::apply(m, *threshold, *ack_fault_tolerance, *allow_unsafe_topology);
            if let Some(s) = breakglass_request_ttl_secs {
                m.settings.breakglass_request_ttl_secs = Some(*s);
            }
        }
        Op::KvPut(p) => {
            for v in kv::apply_put(&mut m.secrets, &cmd.by, cx.index, p) {
                fx.erased.push((p.path.clone(), v));
            }
            fx.secrets.push(p.path.clone());
            fx.created = Some((p.path.clone(), p.version));
        }
        Op::KvAcks {
            node,
            acks,
            signature,
        } => {
            fx.secrets = kv::apply_acks(&mut m.secrets, *node, acks, signature);
            fx.secrets.dedup();
        }
        Op::KvDelete {
            path,
            versions,
            time,
        } => secret::apply_delete(m, path, versions, *time, fx),
        Op::KvUndelete { path, versions } => secret::apply_undelete(m, path, versions, fx),
        Op::KvDestroy { path, versions } => secret::apply_destroy(m, path, versions, fx),
        Op::KvMetadataPut {
            path,
            max_versions,
            cas_required,
            custom_metadata,
            time,
        } => {
            let put = secret::MetadataPut {
                path,
                max_versions: *max_versions,
                cas_required: *cas_required,
                custom_metadata: custom_metadata.as_ref(),
                time: *time,
            };
            secret::apply_metadata_put(m, put, fx)
        }
        Op::KvMetadataDelete { path } => secret::apply_metadata_delete(m, path, fx),
        Op::KeyCreate {
            name,
            purpose,
            time,
            deadline,
        } => {
            let create = key::Create {
                name,
                purpose: *purpose,
                time: *time,
                deadline: *deadline,
                by: &cmd.by,
            };
            key::apply_create(m, cx.members, create, fx)
        }
        Op::DkgRound1 {
            name,
            node,
            package,
            ..
        } => key::apply_round1(m, name, *node, package, fx),
        Op::DkgRound2 {
            name,
            node,
            envelopes,
            ..
        } => key::apply_round2(m, name, *node, envelopes, fx),
        Op::DkgDone {
            name,
            node,
            public_key_package,
            ..
        } => key::apply_done(m, name, *node, public_key_package, fx),
        Op::SshRoleWrite { key, role } => key::apply_ssh_role(m, key, role),
        Op::KeyAbort { name, reason, .. } => key::apply_abort(m, name, reason, fx),
        Op::Revoke { target } => revoke::apply(m, target),
        Op::Genesis(g) => genesis::apply(m, g, cx, fx),
        Op::SetRoots { roots } => m.roots = roots.clone(),
        Op::Checkpoint { index, vouch } => {
            checkpoint::apply(&mut m.checkpoints, *index, vouch.clone())
        }
        Op::MemberAdd {
            id,
            addr,
            region,
            voter,
            certificate,
        } => members::apply_add(m, cx, *id, addr, region, *voter, certificate, fx),
        Op::MemberRemove { id } => members::apply_remove(m, *id, fx),
        Op::BreakGlassRequest { .. }
        | Op::BreakGlassDecide { .. }
        | Op::BreakGlassRevoke { .. }
        | Op::BreakGlassUse { .. } => {
            let next = breakglass_next(m, cmd, cx);
            breakglass::apply(m, next, fx)
        }
        Op::BreakGlassNotified { items, .. } => breakglass::apply_notified(m, items),
        Op::Batch(_) => {} // refused by `validate`
        #[cfg(feature = "byzantine-test")]
        Op::TestInjectBreakGlass(r) => {
            m.breakglass.insert(r.id.clone(), (**r).clone());
        }
    }
}

#[cfg(test)]
mod tests {
    //! Each operation's rules, through the dispatcher as the state machine meets them.

    use std::collections::BTreeMap;

    use super::*;
    use crate::state::keys::{KeyPurpose, SshRole};
    use crate::state::kv::{SecretEntry, VersionEntry};
    use crate::state::{NodeInfo, Timestamp};

    fn members(regions: &[&str]) -> Members {
        let mut m = Members::default();
        for (i, r) in regions.iter().enumerate() {
            let info = NodeInfo {
                addr: format!("127.0.0.1:{}", 7001 + i),
                region: r.to_string(),
                ..NodeInfo::default()
            };
            m.all.insert(i as u64 + 1, info.clone());
            m.voters.insert(i as u64 + 1, info);
        }
        m
    }

    /// Validates `op` and, if accepted, applies it; returns the refusal or the effects.
    fn run(m: &mut Model, mem: &Members, op: Op) -> Result<Effects, Refusal> {
        // The operations' own rules; who may ask is `state::authority`'s, tested there.
        let cmd = Command::by_node("admin".into(), op);
        let ca = crate::state::authority::testing::TestCa::new();
        let cx = Ctx {
            members: mem,
            cluster_id: "c",
            index: 7,
            trust: &ca.trust,
            time: crate::state::Timestamp::default(),
        };
        validate(m, &cmd, &cx)?;
        let mut fx = Effects::default();
        apply(m, &cmd, &cx, &mut fx);
        Ok(fx)
    }

    /// A secret at `path` with versions 1..=n.
    fn with_versions(m: &mut Model, path: &str, n: u64) {
        let versions = (1..=n).map(|v| (v, VersionEntry::default())).collect();
        m.secrets.insert(
            path.into(),
            SecretEntry {
                current_version: n,
                versions,
                ..SecretEntry::default()
            },
        );
    }

    #[test]
    fn settings_keep_the_topology_law_unless_told_otherwise() {
        let mem = members(&["eu", "eu", "us", "us", "ap"]);
        let mut m = Model::default();
        let set = |t, unsafe_ok| Op::SetSettings {
            threshold: Some(t),
            ack_fault_tolerance: None,
            allow_unsafe_topology: unsafe_ok,
            breakglass_request_ttl_secs: None,
        };
        let e = run(&mut m, &mem, set(2, None)).unwrap_err();
        assert!(matches!(e, Refusal::Rejected { .. }), "{e}");
        assert_eq!(m.settings.threshold, None, "a refusal changes nothing");
        run(&mut m, &mem, set(3, None)).unwrap();
        assert_eq!(m.settings.threshold, Some(3));
        run(&mut m, &mem, set(2, Some(true))).unwrap();
        assert_eq!(m.settings.threshold, Some(2));
        let e = run(
            &mut m,
            &mem,
            Op::SetSettings {
                threshold: Some(3),
                ack_fault_tolerance: Some(3),
                allow_unsafe_topology: Some(false),
                breakglass_request_ttl_secs: None,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("exceeds the 5 share holders"), "{e}");

        // How long a break-glass request waits: within 1 minute to 7 days.
        let ttl = |s| Op::SetSettings {
            threshold: None,
            ack_fault_tolerance: None,
            allow_unsafe_topology: None,
            breakglass_request_ttl_secs: Some(s),
        };
        for bad in [59, 7 * 24 * 3600 + 1] {
            let e = run(&mut m, &mem, ttl(bad)).unwrap_err();
            assert!(e.to_string().contains("between 1m and 168h"), "{e}");
        }
        assert_eq!(m.settings.request_ttl_secs(), 24 * 3600);
        run(&mut m, &mem, ttl(4 * 3600)).unwrap();
        assert_eq!(m.settings.request_ttl_secs(), 4 * 3600);
        assert_eq!(m.settings.threshold, Some(2), "other settings untouched");
    }

    #[test]
    fn only_a_members_own_signature_marks_break_glass_events_notified() {
        use crate::state::breakglass::testing::requested;
        use tessera_crypto::ack::AckKey;
        let ca = crate::state::authority::testing::TestCa::new();
        let mut m = Model::default();
        let id = requested(&ca, &mut m);
        let key = AckKey::generate();
        let mut mem = members(&["eu", "us", "ap"]);
        for (n, info) in mem.all.iter_mut() {
            info.ack_key = hex::encode(if *n == 2 {
                key.public()
            } else {
                AckKey::generate().public()
            });
        }
        let items = vec![(id.clone(), "requested".to_string())];
        let signed = |node, items: &[(String, String)]| Op::BreakGlassNotified {
            node,
            items: items.to_vec(),
            signature: key
                .sign(&breakglass::notified_message("c", node, items))
                .to_vec(),
        };
        // Another member's key, a non-member, and an event a record cannot have: refused.
        for (op, why) in [
            (signed(1, &items), "notification record by node 1"),
            (signed(9, &items), "not a member"),
            (
                signed(2, &[(id.clone(), "hello".to_string())]),
                "not a break-glass event",
            ),
            (signed(2, &[]), "1 to 1000 events"),
        ] {
            let e = run(&mut m, &mem, op).unwrap_err();
            assert!(e.to_string().contains(why), "{e}");
        }
        assert!(m.breakglass[&id].notified.is_empty());
        run(&mut m, &mem, signed(2, &items)).unwrap();
        assert!(m.breakglass[&id].notified.contains("requested"));
        // A request that is gone is skipped, not an error.
        run(
            &mut m,
            &mem,
            signed(2, &[("gone".to_string(), "requested".to_string())]),
        )
        .unwrap();
    }

    #[test]
    fn destroyed_versions_stay_destroyed_and_every_holder_erases_them() {
        let mem = members(&["eu", "us", "ap"]);
        let mut m = Model::default();
        with_versions(&mut m, "a", 3);
        let fx = run(
            &mut m,
            &mem,
            Op::KvDestroy {
                path: "a".into(),
                versions: vec![2],
            },
        )
        .unwrap();
        assert_eq!(fx.erased, vec![("a".to_string(), 2)]);
        assert!(m.secrets["a"].versions[&2].destroyed);
        let e = run(
            &mut m,
            &mem,
            Op::KvUndelete {
                path: "a".into(),
                versions: vec![2],
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("destroyed and cannot be undeleted"),
            "{e}"
        );
        let e = run(
            &mut m,
            &mem,
            Op::KvDelete {
                path: "a".into(),
                versions: vec![9],
                time: Timestamp::from_unix_nanos(1),
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("has no version 9"), "{e}");
    }

    #[test]
    fn lowering_max_versions_prunes_the_oldest_and_erases_their_shares() {
        let mem = members(&["eu", "us", "ap"]);
        let mut m = Model::default();
        with_versions(&mut m, "a", 4);
        let put = |max| Op::KvMetadataPut {
            path: "a".into(),
            max_versions: Some(max),
            cas_required: None,
            custom_metadata: Some(BTreeMap::from([("team".to_string(), "db".to_string())])),
            time: Timestamp::from_unix_nanos(1),
        };
        assert!(run(&mut m, &mem, put(1001)).is_err());
        let fx = run(&mut m, &mem, put(2)).unwrap();
        assert_eq!(fx.erased, vec![("a".to_string(), 1), ("a".to_string(), 2)]);
        let e = &m.secrets["a"];
        assert_eq!(e.versions.keys().copied().collect::<Vec<_>>(), [3, 4]);
        assert_eq!(e.custom_metadata["team"], "db");
    }

    #[test]
    fn keys_are_made_once_at_a_time_and_roles_fit_their_purpose() {
        let mem = members(&["eu", "us", "ap"]);
        let mut m = Model::default();
        let create = || Op::KeyCreate {
            name: "ca".into(),
            purpose: KeyPurpose::Raw,
            time: Timestamp::from_unix_nanos(1),
            deadline: 100,
        };
        let e = run(&mut m, &mem, create()).unwrap_err();
        assert!(
            matches!(e, Refusal::Rejected { .. }),
            "no threshold yet: {e}"
        );
        m.settings.threshold = Some(2);
        let fx = run(&mut m, &mem, create()).unwrap();
        assert_eq!(fx.dkg.as_deref(), Some("ca"));
        assert_eq!(m.keys["ca"].participants, vec![1, 2, 3]);
        assert!(run(&mut m, &mem, create())
            .unwrap_err()
            .to_string()
            .contains("being generated"));
        let role = SshRole {
            allowed_principals: vec!["ops".into()],
            allowed_extensions: vec![],
            max_ttl: 3600,
        };
        let e = run(
            &mut m,
            &mem,
            Op::SshRoleWrite {
                key: "ca".into(),
                role,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("is a raw key"), "{e}");
        let abort = |attempt| Op::KeyAbort {
            name: "ca".into(),
            attempt,
            reason: "timed out".into(),
        };
        assert!(
            run(&mut m, &mem, abort(2)).is_err(),
            "only the generation under way"
        );
        run(&mut m, &mem, abort(1)).unwrap();
        assert_eq!(
            m.keys["ca"].status,
            crate::state::keys::KeyStatus::Failed("timed out".into())
        );
    }

    #[test]
    fn attachments_need_the_policy_and_the_group_to_exist() {
        let mem = members(&["eu", "us", "ap"]);
        let mut m = Model::default();
        let attach = |policy: &str, group: &str, detach| Op::Attach {
            policy: policy.into(),
            target: crate::state::AttachTarget::Group(group.into()),
            detach,
        };
        assert!(run(&mut m, &mem, attach("p", "g", false)).is_err());
        run(
            &mut m,
            &mem,
            Op::PutPolicy {
                name: "p".into(),
                text: "path \"a/*\" { capabilities = [\"read\"] }".into(),
                grant: None,
            },
        )
        .unwrap();
        let e = run(&mut m, &mem, attach("p", "g", false)).unwrap_err();
        assert!(e.to_string().contains("group \"g\" does not exist"), "{e}");
        run(
            &mut m,
            &mem,
            Op::PutGroup {
                name: "g".into(),
                members: ["app".to_string()].into(),
            },
        )
        .unwrap();
        assert!(
            run(&mut m, &mem, attach("p", "g", true)).is_err(),
            "not attached yet"
        );
        run(&mut m, &mem, attach("p", "g", false)).unwrap();
        assert!(m.policies_of("app").contains("p"));
        run(
            &mut m,
            &mem,
            Op::DeleteGroup {
                name: "g".into(),
                grant: None,
            },
        )
        .unwrap();
        assert!(m.policies_of("app").is_empty());
    }
}
