//! What a holder or signer checks itself before it releases a share, or a signature share,
//! under a break-glass grant: every signature the grant rests on, against the cluster CA, now.
//!
//! # Security
//!
//! Law 2: each holder decides alone. The `granted` state of a request says what this node's
//! own state machine concluded when it applied the decisions, but a compromised node could
//! have written a record straight into a store, so nothing here trusts it: the request, each
//! approval counted and the use are verified again from the signed calls the record keeps
//! (signer, certificate not revoked now, signature, and that the signed bytes say what the
//! record says), and the gates are judged on the policies at this index. The grant's end is
//! judged by this node's own clock: a release is this node's own decision.

use prost::Message;
use tessera_proto as pb;
use tessera_proto::SignedMethod;

use super::{gates_for, Decision, Request, UseTarget};
use crate::error::Refusal;
use crate::policy::Capability;
use crate::state::authority::{verify_evidence, SignedCall, Trust};
use crate::state::{Model, Timestamp};

/// The release being asked for.
#[derive(Clone, Copy, Debug)]
pub struct Release<'a> {
    /// The caller, from its mutual-TLS certificate.
    pub caller: &'a str,
    pub path: &'a str,
    pub capability: Capability,
    pub use_id: &'a str,
    /// What is being released: the version read, or the sign request's digest.
    pub target: &'a UseTarget,
    /// This node's clock.
    pub now: Timestamp,
}

/// What a release under a grant rests on, for the audit line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub grant: String,
    pub use_id: String,
    pub reason: String,
    pub requester: String,
    pub approvers: Vec<String>,
}

fn forged(what: String, why: Refusal) -> Refusal {
    Refusal::unauthenticated(format!("break-glass evidence does not hold: {what}: {why}"))
}

fn decode<T: Message + Default>(call: &SignedCall) -> Result<T, Refusal> {
    T::decode(call.body.as_slice())
        .map_err(|e| Refusal::unauthenticated(format!("unreadable signed body: {e}")))
}

/// Whether `r` lets `want` be released now, by this node's own checks.
pub fn check_release(
    trust: &Trust,
    m: &Model,
    cluster_id: &str,
    r: &Request,
    want: &Release<'_>,
) -> Result<Checked, Refusal> {
    let (grant, gates) = check_grant(trust, m, cluster_id, r, want)?;
    // The use: committed, within the budget, signed by the requester for this grant.
    let budget = grant.uses.min(gates.uses()) as usize;
    let position = r
        .uses
        .iter()
        .position(|u| u.id == want.use_id)
        .ok_or_else(|| {
            Refusal::rejected(format!(
                "use {} of break-glass grant {} is not committed; commit it first",
                want.use_id, r.id
            ))
        })?;
    if position >= budget {
        return Err(Refusal::rejected(format!(
            "break-glass grant {} allows {budget} uses; use {} is beyond them",
            r.id, want.use_id
        )));
    }
    if &r.uses[position].target != want.target {
        return Err(Refusal::rejected(format!(
            "use {} of break-glass grant {} was committed for {}, not {}",
            want.use_id, r.id, r.uses[position].target, want.target
        )));
    }
    verify_use(trust, m, cluster_id, r, position)?;

    Ok(Checked {
        grant: r.id.clone(),
        use_id: want.use_id.to_string(),
        reason: r.reason.clone(),
        requester: r.requester.clone(),
        approvers: r.decisions.iter().map(|d| d.approver.clone()).collect(),
    })
}

/// Whether `r` is, by its own signatures, a grant of `want.capability` on `want.path` to
/// `want.caller` that is approved by every factor and has not ended at `want.now`: the grant
/// and the gates it was judged by. The use is the caller's to check.
pub fn check_grant(
    trust: &Trust,
    m: &Model,
    cluster_id: &str,
    r: &Request,
    want: &Release<'_>,
) -> Result<(super::Grant, super::Gates), Refusal> {
    if want.caller != r.requester {
        return Err(Refusal::Denied {
            identity: want.caller.to_string(),
            path: want.path.to_string(),
            capability: format!(
                "{} under break-glass grant {}, which is",
                want.capability, r.id
            ),
            policies: vec![format!("requested by {}", r.requester)],
        });
    }
    if want.path != r.path || want.capability != r.capability {
        return Err(Refusal::rejected(format!(
            "break-glass grant {} is for {} on {:?}, not {} on {:?}",
            r.id, r.capability, r.path, want.capability, want.path
        )));
    }
    if r.closed.is_some() {
        return Err(Refusal::rejected(format!(
            "break-glass grant {} is {}",
            r.id,
            r.status(want.now).name()
        )));
    }
    let Some(grant) = r.granted else {
        return Err(Refusal::rejected(format!(
            "break-glass request {} is not approved",
            r.id
        )));
    };
    if want.now >= grant.until {
        return Err(Refusal::rejected(format!(
            "break-glass grant {} ended at {} by this node's clock",
            r.id, grant.until
        )));
    }

    verify_request(trust, m, cluster_id, r)?;
    // Every decision, as its approver signed it: a forged one refuses the release (it names
    // who it claims), rather than being skipped quietly.
    let digest = r.digest(cluster_id);
    for d in &r.decisions {
        verify_decision(trust, m, cluster_id, r, &digest, d)?;
        if !d.approve {
            return Err(Refusal::rejected(format!(
                "break-glass request {} was denied by {}",
                r.id, d.approver
            )));
        }
    }
    let gates = gates_for(&m.policies, &trust.policies, &r.path);
    if gates.0.is_empty() {
        return Err(Refusal::rejected(format!(
            "no break_glass block covers {:?} any more; read it without a grant",
            r.path
        )));
    }
    // Every decision left is a verified approval (a denial refused above).
    gates.met(&r.requester, &r.decisions)?;
    Ok((grant, gates))
}

/// The request, as its requester signed it.
pub fn verify_request(
    trust: &Trust,
    m: &Model,
    cluster_id: &str,
    r: &Request,
) -> Result<(), Refusal> {
    let check = || -> Result<(), Refusal> {
        let call = r
            .call
            .as_deref()
            .ok_or_else(|| Refusal::unauthenticated("no signed call"))?;
        let who = verify_evidence(trust, m, cluster_id, call, SignedMethod::BreakGlassRequest)?;
        let body: pb::BreakGlassOpen = decode(call)?;
        let same = who == r.requester
            && hex::encode(&call.id) == r.id
            && body.path == r.path
            && body.capability == r.capability.as_str()
            && body.reason.trim() == r.reason
            && body.ttl_secs == r.ttl_secs;
        if same {
            Ok(())
        } else {
            Err(Refusal::unauthenticated(
                "the record is not what its requester signed",
            ))
        }
    };
    check().map_err(|e| forged(format!("request {} by {}", r.id, r.requester), e))
}

/// One decision, as its approver signed it, over `digest` (the request's).
pub fn verify_decision(
    trust: &Trust,
    m: &Model,
    cluster_id: &str,
    r: &Request,
    digest: &[u8; 32],
    d: &Decision,
) -> Result<(), Refusal> {
    let check = || -> Result<(), Refusal> {
        let call = d
            .call
            .as_deref()
            .ok_or_else(|| Refusal::unauthenticated("no signed call"))?;
        let who = verify_evidence(trust, m, cluster_id, call, SignedMethod::BreakGlassDecide)?;
        let body: pb::BreakGlassDecision = decode(call)?;
        if who == d.approver
            && body.id == r.id
            && body.approve == d.approve
            && body.comment == d.comment
            && body.request_digest == digest
        {
            Ok(())
        } else {
            Err(Refusal::unauthenticated(
                "the record is not what its approver signed",
            ))
        }
    };
    let kind = if d.approve { "approval" } else { "denial" };
    check().map_err(|e| forged(format!("{kind} by {}", d.approver), e))
}

/// The use at `position`, as the requester signed it for this grant.
pub fn verify_use(
    trust: &Trust,
    m: &Model,
    cluster_id: &str,
    r: &Request,
    position: usize,
) -> Result<(), Refusal> {
    let u = &r.uses[position];
    let check = || -> Result<(), Refusal> {
        let call = u
            .call
            .as_deref()
            .ok_or_else(|| Refusal::unauthenticated("no signed call"))?;
        let who = verify_evidence(trust, m, cluster_id, call, SignedMethod::BreakGlassUse)?;
        let body: pb::BreakGlassUse = decode(call)?;
        let target = UseTarget::from_wire(body.version, &body.message_digest)?;
        if who == r.requester && body.id == r.id && body.use_id == u.id && target == u.target {
            Ok(())
        } else {
            Err(Refusal::unauthenticated(
                "the record is not what the requester signed",
            ))
        }
    };
    check().map_err(|e| forged(format!("use {}", u.id), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::authority::testing::{TestCa, TestClient};
    use crate::state::breakglass::testing::{at, decision, requested, run};
    use crate::state::{CommandResult, Op};

    fn approve(c: &TestClient, m: &Model, id: &str, t: u64) -> crate::state::Command {
        decision(c, m, id, true, t)
    }

    /// A granted request by alice with one committed use; returns its id.
    fn granted(ca: &TestCa, m: &mut Model) -> String {
        let id = requested(ca, m);
        for (who, t) in [("bob", 1), ("carol", 2), ("ciso", 3)] {
            let c = approve(&ca.client(who), m, &id, t);
            assert_eq!(run(m, ca, &c), CommandResult::ok());
        }
        let u = ca.client("alice").sign(Op::BreakGlassUse {
            id: id.clone(),
            use_id: hex::encode([1; 16]),
            target: crate::state::breakglass::UseTarget::Version(1),
            time: at(4),
        });
        assert_eq!(run(m, ca, &u), CommandResult::ok());
        id
    }

    fn want<'a>(caller: &'a str, use_id: &'a str, now: u64) -> Release<'a> {
        Release {
            caller,
            path: "prod/db/main",
            capability: Capability::Read,
            use_id,
            target: &UseTarget::Version(1),
            now: at(now),
        }
    }

    #[test]
    fn a_holder_releases_only_on_evidence_it_verified_itself() {
        let ca = TestCa::new();
        let mut m = Model::default();
        let id = granted(&ca, &mut m);
        let u1 = hex::encode([1; 16]);
        let check =
            |m: &Model, w: Release<'_>| check_release(&ca.trust, m, "c", &m.breakglass[&id], &w);
        let ok = check(&m, want("alice", &u1, 10)).unwrap();
        assert_eq!(ok.approvers, ["bob", "carol", "ciso"]);
        assert_eq!(
            (ok.reason.as_str(), ok.requester.as_str()),
            ("incident 42", "alice")
        );

        let refused = |m: &Model, w: Release<'_>| check(m, w).unwrap_err().to_string();
        assert!(refused(&m, want("mallory", &u1, 10)).contains("permission denied"));
        assert!(refused(&m, want("alice", &hex::encode([2; 16]), 10)).contains("not committed"));
        // The use was committed for version 1: no holder releases version 2 under it.
        let v2 = UseTarget::Version(2);
        let other = Release {
            target: &v2,
            ..want("alice", &u1, 10)
        };
        assert!(refused(&m, other).contains("committed for version 1"));
        // This node's own clock past the grant's end.
        assert!(refused(&m, want("alice", &u1, 3 + 600)).contains("ended"));
        // Another cluster's digest: the decisions do not name this request.
        let e = check_release(
            &ca.trust,
            &m,
            "other",
            &m.breakglass[&id],
            &want("alice", &u1, 10),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("evidence does not hold"), "{e}");

        // A revoked approver's approval no longer counts as evidence.
        let mut revoked = m.clone();
        revoked.revocations.identities.insert("carol".into());
        assert!(refused(&revoked, want("alice", &u1, 10)).contains("approval by carol"));
    }

    #[test]
    fn a_record_written_around_apply_is_refused_and_named() {
        // What a compromised node could put straight into a holder's state: each is refused,
        // naming the piece that is forged.
        let ca = TestCa::new();
        let other_ca = TestCa::new();
        let mut m = Model::default();
        let id = granted(&ca, &mut m);
        let u1 = hex::encode([1; 16]);
        let refused = |m: &Model| {
            check_release(
                &ca.trust,
                m,
                "c",
                &m.breakglass[&id],
                &want("alice", &u1, 10),
            )
            .unwrap_err()
            .to_string()
        };
        let swap_call = |who: &TestClient, m: &Model| {
            let mut m = m.clone();
            let c = approve(who, &m, &id, 1);
            let r = m.breakglass.get_mut(&id).unwrap();
            r.decisions[0].call = c.signed;
            m
        };
        // bob's approval, signed by dave instead.
        let e = refused(&swap_call(&ca.client("dave"), &m));
        assert!(e.contains("approval by bob"), "{e}");
        // bob's approval, signed by a "bob" of another CA.
        let e = refused(&swap_call(&other_ca.client("bob"), &m));
        assert!(
            e.contains("approval by bob") && e.contains("cluster CA"),
            "{e}"
        );
        // A signature with one bit changed.
        let mut flipped = m.clone();
        flipped.breakglass.get_mut(&id).unwrap().decisions[1]
            .call
            .as_mut()
            .unwrap()
            .signature[5] ^= 1;
        assert!(refused(&flipped).contains("approval by carol"));
        // An approval without its signed call, or a made-up approver.
        let mut bare = m.clone();
        bare.breakglass.get_mut(&id).unwrap().decisions[2].call = None;
        assert!(refused(&bare).contains("approval by ciso"));
        let mut renamed = m.clone();
        renamed.breakglass.get_mut(&id).unwrap().decisions[2].approver = "root".into();
        assert!(refused(&renamed).contains("approval by root"));
        // A granted flag with the approvals missing.
        let mut short = m.clone();
        short.breakglass.get_mut(&id).unwrap().decisions.truncate(2);
        assert!(refused(&short).contains("security"));
        // The request's reason or ttl changed after it was signed; a use nobody signed.
        let mut edited = m.clone();
        edited.breakglass.get_mut(&id).unwrap().reason = "routine".into();
        assert!(refused(&edited).contains("request"));
        let mut unsigned_use = m.clone();
        unsigned_use.breakglass.get_mut(&id).unwrap().uses[0].call = None;
        assert!(refused(&unsigned_use).contains("use"));
        // And the honest record still releases.
        assert!(check_release(
            &ca.trust,
            &m,
            "c",
            &m.breakglass[&id],
            &want("alice", &u1, 10)
        )
        .is_ok());
    }
}
