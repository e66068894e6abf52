//! Break-glass requests as the replicated state holds them, and the rules that move one from
//! pending to granted, closed or spent. Pure: every node applies the same transitions at the
//! same index, with the entry's time (never its own clock) for every replicated time.
//!
//! A request names one path and one capability (`read` on a KV path, `sign` on `keys/NAME`).
//! The gates that cover the path are every `break_glass` block, in any policy of the cluster,
//! whose pattern matches it: all of them apply at once (every factor of every gate; the
//! shortest `max_ttl`; the fewest `uses`).
//!
//! # Security
//!
//! - The requester never counts as an approver, and is refused as one outright.
//! - An approval counts for the factors its approver was eligible for where it applied (group
//!   membership judged at that index), and each approver counts once (`BreakGlass::met`).
//! - One eligible approver's denial closes the request for good (a veto).
//! - A grant lasts `min(ttl, max_ttl)` from the index where its last needed approval applied;
//!   a request pending longer than the request lifetime expires; both by replicated time.
//! - A use is committed before any holder releases under it, and no more than `uses` are
//!   ever committed: the budget is exact across holders and restarts.
//!
//! Holders and signers do not trust the `Granted` state below on its own: they verify each
//! signature the request and its approvals carry before they release.

pub mod evidence;
pub mod proof;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::authority::SignedCall;
use super::Timestamp;
use crate::error::Refusal;
use crate::policy::break_glass::{Approval, BreakGlass};
use crate::policy::{Capability, PolicyCache};

/// How long a request waits for approvals before it expires, by default.
pub const DEFAULT_REQUEST_TTL_SECS: u64 = 24 * 3600;

/// The longest reason kept.
pub const MAX_REASON_CHARS: usize = 2000;

/// One break-glass request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    pub requester: String,
    pub path: String,
    pub capability: Capability,
    pub reason: String,
    /// What the requester asked for (seconds); the grant lasts at most the gates' `max_ttl`.
    pub ttl_secs: u64,
    pub requested_at: Timestamp,
    /// The request expires unless granted before this.
    pub pending_until: Timestamp,
    pub decisions: Vec<Decision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub granted: Option<Grant>,
    /// The requester's signed call (evidence each holder checks again, and the offline proof).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<Box<SignedCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed: Option<Closed>,
    pub uses: Vec<Use>,
    /// The events of this record the cluster has notified (`notify::events` keys): the
    /// leader delivers the others, and a new leader picks up where the old one stopped.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub notified: BTreeSet<String>,
}

/// An approver's approval or denial.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub approver: String,
    pub approve: bool,
    pub comment: String,
    pub at: Timestamp,
    /// The approver's groups where the decision applied (membership is judged there).
    pub groups: BTreeSet<String>,
    /// The approver's signed call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<Box<SignedCall>>,
}

/// When the grant became active and until when it lasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub at: Timestamp,
    pub until: Timestamp,
    /// Reads (or signatures) it allows.
    pub uses: u32,
}

/// Why a request closed before it expired.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Closed {
    Denied { by: String, at: Timestamp },
    Revoked { by: String, at: Timestamp },
}

/// What one use is spent on, fixed when it is committed: one version of the secret (a read
/// grant), or one sign request, by the SHA-256 of its bytes (a sign grant).
///
/// # Security
///
/// Each holder serves a use once, but different holders could otherwise serve one use for
/// different things: with `t` of `2t` holders, a client could read two versions, or sign two
/// messages, on one use by asking disjoint holder sets. Binding the use to its target makes
/// every holder's share for it a share of the same thing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UseTarget {
    Version(u64),
    /// Hex SHA-256 of the sign request's JSON bytes.
    Message(String),
}

impl UseTarget {
    /// The target a use command's fields name: a version, or a 32-byte digest, not both.
    pub fn from_wire(version: u64, digest: &[u8]) -> Result<UseTarget, Refusal> {
        match (version, digest.len()) {
            (v, 0) if v > 0 => Ok(UseTarget::Version(v)),
            (0, 32) => Ok(UseTarget::Message(hex::encode(digest))),
            _ => Err(Refusal::invalid(
                "a use names either the version it reads or the SHA-256 (32 bytes) of the request it signs",
            )),
        }
    }

    /// The target a use command names, for a grant of `capability`.
    pub fn of(capability: Capability, version: u64, digest: &[u8]) -> Result<UseTarget, Refusal> {
        match capability {
            Capability::Read if version > 0 && digest.is_empty() => Ok(UseTarget::Version(version)),
            Capability::Sign if version == 0 && digest.len() == 32 => {
                Ok(UseTarget::Message(hex::encode(digest)))
            }
            Capability::Read => Err(Refusal::invalid(
                "a use of a read grant names the version it reads (and no message)",
            )),
            _ => Err(Refusal::invalid(
                "a use of a sign grant names the SHA-256 of the sign request (and no version)",
            )),
        }
    }

    /// The wire fields of this target: (version, message digest).
    pub fn wire(&self) -> (u64, Vec<u8>) {
        match self {
            UseTarget::Version(v) => (*v, Vec::new()),
            UseTarget::Message(h) => (0, hex::decode(h).unwrap_or_default()),
        }
    }
}

impl std::fmt::Display for UseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UseTarget::Version(v) => write!(f, "version {v}"),
            UseTarget::Message(h) => write!(f, "sign request {h}"),
        }
    }
}

/// One committed use of a grant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Use {
    pub id: String,
    pub at: Timestamp,
    pub target: UseTarget,
    /// The requester's signed call committing it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call: Option<Box<SignedCall>>,
}

/// Where a request stands at a given time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Active {
        until: Timestamp,
        uses_left: u32,
    },
    Denied {
        by: String,
    },
    Revoked {
        by: String,
    },
    /// Pending too long, or granted and past its end.
    Expired,
    /// Granted, and every use committed.
    Spent,
}

impl Status {
    pub fn name(&self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active { .. } => "active",
            Status::Denied { .. } => "denied",
            Status::Revoked { .. } => "revoked",
            Status::Expired => "expired",
            Status::Spent => "spent",
        }
    }
}

/// Whether `key` can name an event of a record (`Request::notified`; the keys
/// `notify::events` gives): what `Op::BreakGlassNotified` may carry.
pub fn is_event_key(key: &str) -> bool {
    match key {
        "requested" | "activated" | "revoked" | "expired" => true,
        _ => {
            if let Some(i) = key.strip_prefix("decision.") {
                !i.is_empty() && i.len() <= 4 && i.bytes().all(|b| b.is_ascii_digit())
            } else if let Some(u) = key.strip_prefix("use.") {
                u.len() == 32 && u.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            } else {
                false
            }
        }
    }
}

/// What the gates covering one path ask for, together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gates(pub Vec<BreakGlass>);

impl Gates {
    pub fn max_ttl_secs(&self) -> u64 {
        self.0.iter().map(|g| g.max_ttl_secs).min().unwrap_or(0)
    }

    pub fn uses(&self) -> u32 {
        self.0.iter().map(|g| g.uses).min().unwrap_or(0)
    }

    /// Whether the approvals among `decisions` meet every factor of every gate.
    pub fn met(&self, requester: &str, decisions: &[Decision]) -> Result<(), Refusal> {
        let approvals: Vec<Approval<'_>> = decisions
            .iter()
            .filter(|d| d.approve)
            .map(|d| Approval {
                approver: &d.approver,
                groups: &d.groups,
            })
            .collect();
        for g in &self.0 {
            g.met(requester, &approvals)
                .map_err(|e| Refusal::rejected(format!("not approved yet: {e}")))?;
        }
        Ok(())
    }

    /// Whether `who`, in `groups`, may approve or deny for any factor of any gate.
    pub fn eligible(&self, who: &str, groups: &BTreeSet<String>) -> bool {
        self.0
            .iter()
            .flat_map(|g| g.factors.iter())
            .any(|f| f.eligible(who, groups))
    }
}

/// Where a grant to change or delete policy NAME points: `sys/policies/NAME`.
pub const POLICY_PATH: &str = "sys/policies/";
/// Where a grant to delete an approver group NAME points: `sys/groups/NAME`.
pub const GROUP_PATH: &str = "sys/groups/";

/// Every `break_glass` block, in any policy of the cluster, whose path pattern matches `path`:
/// the gates a read of (or a signature with) `path` must pass, whoever asks. For
/// `sys/policies/NAME`, the gates inside policy NAME: changing a gate takes the approval of
/// its own factors; for `sys/groups/NAME`, every gate that names group NAME as approvers.
pub fn gates_for(policies: &BTreeMap<String, String>, cache: &PolicyCache, path: &str) -> Gates {
    if let Some(name) = path.strip_prefix(POLICY_PATH) {
        Gates(cache.gates_in(policies, name))
    } else if let Some(group) = path.strip_prefix(GROUP_PATH) {
        Gates(cache.gates_naming_group(policies, group))
    } else {
        Gates(cache.gates(policies, path))
    }
}

fn add_secs(t: Timestamp, secs: u64) -> Timestamp {
    Timestamp::from_unix_nanos(
        t.unix_nanos()
            .saturating_add(secs.saturating_mul(1_000_000_000)),
    )
}

impl Request {
    /// A new request, checked against the gates that cover its path.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        id: String,
        requester: &str,
        path: &str,
        capability: Capability,
        reason: &str,
        ttl_secs: u64,
        at: Timestamp,
        request_ttl_secs: u64,
        gates: &Gates,
    ) -> Result<Request, Refusal> {
        if !matches!(
            capability,
            Capability::Read | Capability::Sign | Capability::Update | Capability::Delete
        ) {
            return Err(Refusal::invalid(format!(
                "break-glass grants read or sign (or update or delete on a gating policy), not {capability}"
            )));
        }
        if gates.0.is_empty() {
            return Err(Refusal::invalid(format!(
                "{path:?} is not covered by any break_glass block: no grant is needed (or given) there"
            )));
        }
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(Refusal::invalid(
                "a break-glass request needs a reason (--reason): approvers and the audit log read it",
            ));
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(Refusal::invalid(format!(
                "the reason is longer than {MAX_REASON_CHARS} characters"
            )));
        }
        let max = gates.max_ttl_secs();
        if ttl_secs == 0 || ttl_secs > max {
            return Err(Refusal::invalid(format!(
                "ttl {ttl_secs}s: a grant on {path:?} lasts more than nothing and at most {}",
                crate::policy::break_glass::format_duration(max)
            )));
        }
        Ok(Request {
            id,
            requester: requester.to_string(),
            path: path.to_string(),
            capability,
            reason: reason.to_string(),
            ttl_secs,
            requested_at: at,
            pending_until: add_secs(at, request_ttl_secs),
            decisions: Vec::new(),
            granted: None,
            call: None,
            closed: None,
            uses: Vec::new(),
            notified: BTreeSet::new(),
        })
    }

    /// What an approver approves: SHA-256 over the request's every field that says what it
    /// asks (cluster, id, requester, path, capability, reason, ttl, time), so an approval
    /// cannot be moved to another request or survive a change to this one.
    pub fn digest(&self, cluster_id: &str) -> [u8; 32] {
        tessera_crypto::breakglass::request_digest(&tessera_crypto::breakglass::RequestFields {
            cluster_id,
            id: &self.id,
            requester: &self.requester,
            path: &self.path,
            capability: self.capability.as_str(),
            reason: &self.reason,
            ttl_secs: self.ttl_secs,
            requested_at_nanos: self.requested_at.unix_nanos(),
        })
    }

    /// Where the request stands at `now`.
    pub fn status(&self, now: Timestamp) -> Status {
        match &self.closed {
            Some(Closed::Denied { by, .. }) => return Status::Denied { by: by.clone() },
            Some(Closed::Revoked { by, .. }) => return Status::Revoked { by: by.clone() },
            None => {}
        }
        match &self.granted {
            None if now >= self.pending_until => Status::Expired,
            None => Status::Pending,
            Some(g) if now >= g.until => Status::Expired,
            Some(g) => {
                let used = self.uses.len() as u32;
                if used >= g.uses {
                    Status::Spent
                } else {
                    Status::Active {
                        until: g.until,
                        uses_left: g.uses - used,
                    }
                }
            }
        }
    }

    /// An approver's decision, applied at `at` (the approver's groups as of that index). An
    /// approval that completes every factor makes the grant active from `at`.
    pub fn decide(
        &mut self,
        approver: &str,
        groups: &BTreeSet<String>,
        approve: bool,
        comment: &str,
        at: Timestamp,
        gates: &Gates,
    ) -> Result<(), Refusal> {
        let status = self.status(at);
        if status != Status::Pending {
            return Err(Refusal::rejected(format!(
                "break-glass request {} is {}, not pending: it takes no more decisions",
                self.id,
                status.name()
            )));
        }
        if approver == self.requester {
            return Err(Refusal::rejected(
                "the requester can never approve or deny their own break-glass request",
            ));
        }
        if !gates.eligible(approver, groups) {
            return Err(Refusal::Denied {
                identity: approver.to_string(),
                path: self.path.clone(),
                capability: "approve".into(),
                policies: Vec::new(),
            });
        }
        if self.decisions.iter().any(|d| d.approver == approver) {
            return Err(Refusal::rejected(format!(
                "{approver:?} already decided on break-glass request {}",
                self.id
            )));
        }
        self.decisions.push(Decision {
            approver: approver.to_string(),
            approve,
            comment: comment.to_string(),
            at,
            groups: groups.clone(),
            call: None,
        });
        if !approve {
            self.closed = Some(Closed::Denied {
                by: approver.to_string(),
                at,
            });
        } else if gates.met(&self.requester, &self.decisions).is_ok() {
            let secs = self.ttl_secs.min(gates.max_ttl_secs());
            self.granted = Some(Grant {
                at,
                until: add_secs(at, secs),
                uses: gates.uses(),
            });
        }
        Ok(())
    }

    /// The requester (or an admin, as the caller decides) ends the request or its grant.
    pub fn revoke(&mut self, by: &str, at: Timestamp) -> Result<(), Refusal> {
        match self.status(at) {
            Status::Pending | Status::Active { .. } => {
                self.closed = Some(Closed::Revoked {
                    by: by.to_string(),
                    at,
                });
                Ok(())
            }
            other => Err(Refusal::rejected(format!(
                "break-glass request {} is {} already",
                self.id,
                other.name()
            ))),
        }
    }

    /// Commits one use of the grant by `caller`, at `at`.
    pub fn commit_use(
        &mut self,
        caller: &str,
        use_id: &str,
        target: UseTarget,
        at: Timestamp,
    ) -> Result<(), Refusal> {
        if caller != self.requester {
            return Err(Refusal::Denied {
                identity: caller.to_string(),
                path: self.path.clone(),
                capability: "use this grant".into(),
                policies: Vec::new(),
            });
        }
        if self.uses.iter().any(|u| u.id == use_id) {
            return Err(Refusal::rejected(format!(
                "use {use_id} of break-glass grant {} is committed already",
                self.id
            )));
        }
        match self.status(at) {
            Status::Active { .. } => {
                self.uses.push(Use {
                    id: use_id.to_string(),
                    at,
                    target,
                    call: None,
                });
                Ok(())
            }
            other => Err(Refusal::rejected(format!(
                "break-glass grant {} is {}: no use is left",
                self.id,
                other.name()
            ))),
        }
    }
}

/// What the break-glass tests share: a gate, replicated times, and applying signed commands.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::state::authority::testing::{apply_at, TestCa, TestClient};
    use crate::state::{Command, CommandResult, Model, Op};

    /// Two factors: two SRE leads and the CISO; two uses of at most an hour.
    pub const GATE: &str = r#"path "prod/db/*" {
  capabilities = ["read"]
  break_glass {
    max_ttl = "1h"
    uses    = 2
    factor "sre"      { approvers = ["group:sre-leads"] approvals = 2 }
    factor "security" { approvers = ["identity:ciso"] approvals = 1 }
  }
}
"#;

    const SECOND: u64 = 1_000_000_000;

    /// `secs` seconds into the tests' day.
    pub fn at(secs: u64) -> Timestamp {
        Timestamp::from_unix_nanos(1_800_000_000 * SECOND + secs * SECOND)
    }

    /// The gate in `m`, put straight into the model, with alice allowed to read under it and
    /// alice, bob and carol leading SRE.
    pub fn with_gate(m: &mut Model) {
        m.policies.insert("gate".into(), GATE.into());
        m.identity_policies
            .insert("alice".into(), ["gate".to_string()].into());
        m.groups.insert(
            "sre-leads".into(),
            ["bob".to_string(), "carol".to_string(), "alice".to_string()].into(),
        );
    }

    /// Applies `cmd` as every node would, at index 1 of cluster "c".
    pub fn run(m: &mut Model, ca: &TestCa, cmd: &Command) -> CommandResult {
        apply_at(m, &ca.trust, cmd, Timestamp::default()).0
    }

    /// `c`'s decision on request `id` as the cluster holds it, at `t`.
    pub fn decision(c: &TestClient, m: &Model, id: &str, approve: bool, t: u64) -> Command {
        c.sign(Op::BreakGlassDecide {
            id: id.into(),
            approve,
            comment: String::new(),
            digest: m.breakglass[id].digest("c").to_vec(),
            time: at(t),
        })
    }

    /// alice's request to read prod/db/main for 600 s at time 0, under `with_gate`; its id.
    pub fn requested(ca: &TestCa, m: &mut Model) -> String {
        with_gate(m);
        let ask = ca.client("alice").sign(Op::BreakGlassRequest {
            path: "prod/db/main".into(),
            capability: Capability::Read,
            reason: "incident 42".into(),
            ttl_secs: 600,
            time: at(0),
        });
        let id = hex::encode(&ask.signed.as_ref().expect("signed").id);
        assert_eq!(run(m, ca, &ask), CommandResult::ok());
        id
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{at, GATE};
    use super::*;
    use crate::policy::Policy;

    fn gates() -> Gates {
        let p = Policy::parse(GATE).unwrap();
        Gates(vec![p.rules[0].break_glass.clone().unwrap()])
    }

    fn groups(gs: &[&str]) -> BTreeSet<String> {
        gs.iter().map(|g| g.to_string()).collect()
    }

    fn open(ttl: u64) -> Result<Request, Refusal> {
        Request::open(
            "r1".into(),
            "alice",
            "prod/db/main",
            Capability::Read,
            "incident 42: the primary is down",
            ttl,
            at(0),
            DEFAULT_REQUEST_TTL_SECS,
            &gates(),
        )
    }

    #[test]
    fn a_request_is_granted_when_every_factor_is_met_and_lasts_its_ttl() {
        let g = gates();
        let mut r = open(1800).unwrap();
        r.decide("bob", &groups(&["sre-leads"]), true, "", at(10), &g)
            .unwrap();
        r.decide("carol", &groups(&["sre-leads"]), true, "ok", at(20), &g)
            .unwrap();
        // The sre factor alone is not enough.
        assert_eq!(r.status(at(30)), Status::Pending);
        r.decide("ciso", &groups(&[]), true, "", at(40), &g)
            .unwrap();
        assert_eq!(
            r.status(at(41)),
            Status::Active {
                until: at(40 + 1800),
                uses_left: 2
            }
        );
        assert_eq!(r.status(at(40 + 1800)), Status::Expired);
        // Two uses, then spent; the same use id never counts twice.
        r.commit_use("alice", "u1", UseTarget::Version(1), at(50))
            .unwrap();
        assert!(r
            .commit_use("alice", "u1", UseTarget::Version(1), at(51))
            .is_err());
        assert!(r
            .commit_use("mallory", "u2", UseTarget::Version(1), at(51))
            .is_err());
        r.commit_use("alice", "u2", UseTarget::Version(1), at(52))
            .unwrap();
        assert_eq!(r.status(at(53)), Status::Spent);
        assert!(r
            .commit_use("alice", "u3", UseTarget::Version(1), at(54))
            .is_err());
        // No more decisions once granted.
        assert!(r
            .decide("dave", &groups(&["security"]), false, "", at(60), &g)
            .is_err());
    }

    #[test]
    fn self_approval_outsiders_and_repeats_are_refused_and_a_deny_vetoes() {
        let g = gates();
        let mut r = open(600).unwrap();
        let e = r
            .decide(
                "alice",
                &groups(&["sre-leads", "security"]),
                true,
                "",
                at(1),
                &g,
            )
            .unwrap_err();
        assert!(e.to_string().contains("their own"), "{e}");
        assert!(r
            .decide("dev", &groups(&["dev"]), true, "", at(2), &g)
            .is_err());
        r.decide("bob", &groups(&["sre-leads"]), true, "", at(3), &g)
            .unwrap();
        assert!(r
            .decide("bob", &groups(&["sre-leads"]), true, "", at(4), &g)
            .is_err());
        assert_eq!(r.decisions.len(), 1);
        r.decide("ciso", &groups(&[]), false, "no", at(5), &g)
            .unwrap();
        assert_eq!(r.status(at(6)), Status::Denied { by: "ciso".into() });
        assert!(r
            .decide("carol", &groups(&["sre-leads"]), true, "", at(7), &g)
            .is_err());
        assert!(r
            .commit_use("alice", "u1", UseTarget::Version(1), at(8))
            .is_err());
    }

    #[test]
    fn every_gate_in_any_policy_that_covers_the_path_applies() {
        let one = "path \"prod/*\" {\n  capabilities = [\"read\"]\n  break_glass {\n    max_ttl = \"2h\"\n    uses = 3\n    factor \"a\" { approvers = [\"group:a\"] approvals = 1 }\n  }\n}\n";
        let two = "path \"prod/db/*\" {\n  capabilities = [\"list\"]\n  break_glass {\n    max_ttl = \"1h\"\n    factor \"b\" { approvers = [\"group:b\"] approvals = 1 }\n  }\n}\npath \"*\" { capabilities = [\"read\"] }\n";
        let policies: BTreeMap<String, String> =
            [("one".into(), one.into()), ("two".into(), two.into())]
                .into_iter()
                .collect();
        let cache = PolicyCache::default();
        let g = gates_for(&policies, &cache, "prod/db/main");
        assert_eq!(g.0.len(), 2);
        assert_eq!((g.max_ttl_secs(), g.uses()), (3600, 1));
        // Both gates' factors: one approver of each group.
        let mut r = Request::open(
            "r".into(),
            "x",
            "prod/db/main",
            Capability::Read,
            "why",
            600,
            at(0),
            60,
            &g,
        )
        .unwrap();
        r.decide("p", &groups(&["a"]), true, "", at(1), &g).unwrap();
        assert_eq!(r.status(at(2)), Status::Pending);
        r.decide("q", &groups(&["b"]), true, "", at(3), &g).unwrap();
        assert!(matches!(
            r.status(at(4)),
            Status::Active { uses_left: 1, .. }
        ));
        assert_eq!(gates_for(&policies, &cache, "prod/web").0.len(), 1);
        assert!(gates_for(&policies, &cache, "staging/db/main").0.is_empty());
    }

    #[test]
    fn requests_expire_and_can_be_revoked_and_bad_ones_are_refused() {
        let g = gates();
        let r = open(600).unwrap();
        assert_eq!(r.status(at(DEFAULT_REQUEST_TTL_SECS - 1)), Status::Pending);
        assert_eq!(r.status(at(DEFAULT_REQUEST_TTL_SECS)), Status::Expired);
        let mut late = r.clone();
        assert!(late
            .decide(
                "bob",
                &groups(&["sre-leads"]),
                true,
                "",
                at(DEFAULT_REQUEST_TTL_SECS),
                &g
            )
            .is_err());
        let mut r2 = r.clone();
        r2.revoke("alice", at(5)).unwrap();
        assert_eq!(r2.status(at(6)), Status::Revoked { by: "alice".into() });
        assert!(r2.revoke("alice", at(7)).is_err());
        // A ttl over the gate's max_ttl, no reason, an ungated path, a capability not gated.
        assert!(open(3601).unwrap_err().to_string().contains("at most 1h"));
        assert!(open(0).is_err());
        let bad = |reason: &str, cap: Capability, gates: &Gates| {
            Request::open(
                "r".into(),
                "alice",
                "prod/db/main",
                cap,
                reason,
                60,
                at(0),
                DEFAULT_REQUEST_TTL_SECS,
                gates,
            )
            .unwrap_err()
            .to_string()
        };
        assert!(bad("  ", Capability::Read, &g).contains("needs a reason"));
        assert!(bad("x", Capability::List, &g).contains("read or sign"));
        assert!(bad("x", Capability::Read, &Gates(vec![])).contains("not covered"));
    }
}
