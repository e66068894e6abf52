//! Path-based access policies in the style of Vault: a policy is a list of
//! glob rules, each granting (or denying) capabilities on matching paths.
//!
//! Evaluation is default-deny, unions the grants of every matching rule, and
//! lets an explicit `deny` override any grant, so that adding a policy can
//! never unblock a path that another policy deliberately closed.

pub mod break_glass;
mod cache;
mod glob;
mod parse;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use self::cache::PolicyCache;
pub use self::glob::glob_match;

/// An operation a rule can grant on a path. `Deny` is not a grant: a rule
/// holding it blocks every operation on the paths it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Create,
    Read,
    Update,
    Delete,
    List,
    Sign,
    Approve,
    Admin,
    Deny,
}

impl Capability {
    /// Every capability, in declaration order.
    pub const ALL: [Capability; 9] = [
        Capability::Create,
        Capability::Read,
        Capability::Update,
        Capability::Delete,
        Capability::List,
        Capability::Sign,
        Capability::Approve,
        Capability::Admin,
        Capability::Deny,
    ];

    /// The name used in policy files and in serialized form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Capability::Create => "create",
            Capability::Read => "read",
            Capability::Update => "update",
            Capability::Delete => "delete",
            Capability::List => "list",
            Capability::Sign => "sign",
            Capability::Approve => "approve",
            Capability::Admin => "admin",
            Capability::Deny => "deny",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A capability name that is not one of [`Capability::ALL`]. Names are
/// matched exactly (case-sensitively): a misspelt capability must be an error,
/// never a silently smaller or larger grant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseCapabilityError {
    /// The rejected name.
    pub name: String,
}

impl fmt::Display for ParseCapabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown capability {:?} (expected one of ", self.name)?;
        for (i, cap) in Capability::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(cap.as_str())?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for ParseCapabilityError {}

impl FromStr for Capability {
    type Err = ParseCapabilityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Capability::ALL
            .into_iter()
            .find(|cap| cap.as_str() == s)
            .ok_or_else(|| ParseCapabilityError { name: s.to_owned() })
    }
}

/// One `path "pattern" { ... }` block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathRule {
    /// Glob pattern, see [`glob_match`].
    pub pattern: String,
    /// Capabilities granted on matching paths (or `deny`).
    pub capabilities: BTreeSet<Capability>,
    /// The approvals a read (or signature) on matching paths needs, from anyone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<break_glass::BreakGlass>,
}

/// A parsed policy: an ordered list of rules. Order does not affect
/// evaluation; it is kept so that a policy round-trips readably.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub rules: Vec<PathRule>,
}

/// A syntax or validation error in a policy source, with the 1-based line and
/// column (counted in characters) where it was found, so that an operator can
/// fix a rejected policy instead of guessing what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct PolicyError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Policy {
    /// Parses a policy written in a strict subset of HCL (see the `parse`
    /// submodule for the grammar). Anything outside that subset is rejected
    /// rather than ignored: an attribute the node does not understand could be
    /// a restriction the author believes is enforced.
    pub fn parse(src: &str) -> Result<Policy, PolicyError> {
        parse::parse_policy(src)
    }

    /// The built-in policy of the root identity: every capability except
    /// `deny`, on every path.
    pub fn root() -> Policy {
        Policy {
            rules: vec![PathRule {
                break_glass: None,
                pattern: "*".to_owned(),
                capabilities: Capability::ALL
                    .into_iter()
                    .filter(|cap| *cap != Capability::Deny)
                    .collect(),
            }],
        }
    }

    /// The policy as HCL that `Policy::parse` reads back, under a `#` comment line.
    pub fn to_hcl(&self, comment: &str) -> String {
        let mut out = format!("# {comment}\n");
        for rule in &self.rules {
            let caps: Vec<String> = rule
                .capabilities
                .iter()
                .map(|c| format!("{:?}", c.as_str()))
                .collect();
            out.push_str(&format!(
                "path {:?} {{\n  capabilities = [{}]\n",
                rule.pattern,
                caps.join(", ")
            ));
            if let Some(bg) = &rule.break_glass {
                out.push_str(&format!(
                    "  break_glass {{\n    max_ttl = {:?}\n    uses    = {}\n",
                    break_glass::format_duration(bg.max_ttl_secs),
                    bg.uses
                ));
                for f in &bg.factors {
                    let who: Vec<String> = f
                        .approvers
                        .iter()
                        .map(|a| format!("{:?}", a.to_string()))
                        .collect();
                    out.push_str(&format!(
                        "    factor {:?} {{ approvers = [{}] approvals = {} }}\n",
                        f.name,
                        who.join(", "),
                        f.approvals
                    ));
                }
                out.push_str("  }\n");
            }
            out.push_str("}\n");
        }
        out
    }

    /// The capabilities this policy alone gives on `path`: the union over
    /// every matching rule. If any matching rule holds `deny`, the result is
    /// exactly `{Deny}`, because nothing else is usable there. An empty set
    /// means no rule matches (default deny).
    pub fn capabilities_for(&self, path: &str) -> BTreeSet<Capability> {
        let mut caps = BTreeSet::new();
        for rule in self.rules.iter().filter(|r| glob_match(&r.pattern, path)) {
            if rule.capabilities.contains(&Capability::Deny) {
                return BTreeSet::from([Capability::Deny]);
            }
            caps.extend(rule.capabilities.iter().copied());
        }
        caps
    }
}

/// Whether `path` has a `.` or `..` segment. Such paths are refused outright:
/// the storage layer might resolve them to a different path than the one the
/// rules were matched against (`prod/db/../admin` matches `prod/db/*`).
fn has_dot_segment(path: &str) -> bool {
    path.split('/')
        .any(|segment| segment == "." || segment == "..")
}

/// Decides whether the holder of `policies` may perform `cap` on `path`.
///
/// - Default deny: with no matching rule the answer is `false`.
/// - Grants are the union of every matching rule of every policy.
/// - Deny wins: if any matching rule, in any policy, holds `deny`, the answer
///   is `false` whatever else matches.
/// - Asking for `Capability::Deny` itself always yields `false`; it is a
///   marker, not something that can be granted.
/// - Paths with `.` or `..` segments are refused (fail closed); callers are
///   expected to pass the canonical path the operation will really touch.
/// - A `read` or `sign` on a path a `break_glass` block covers is never allowed
///   by policies alone: it takes a grant, judged apart from this function.
pub fn allowed(policies: &[&Policy], path: &str, cap: Capability) -> bool {
    allowed_inner(policies, path, cap, true)
}

/// `allowed` as if no `break_glass` block existed: whether an identity may ask for a grant.
pub fn allowed_setting_gates_aside(policies: &[&Policy], path: &str, cap: Capability) -> bool {
    allowed_inner(policies, path, cap, false)
}

fn allowed_inner(policies: &[&Policy], path: &str, cap: Capability, gates: bool) -> bool {
    if cap == Capability::Deny || has_dot_segment(path) {
        return false;
    }
    let gated = gates && matches!(cap, Capability::Read | Capability::Sign);
    let mut granted = false;
    for rule in policies.iter().flat_map(|policy| policy.rules.iter()) {
        if !glob_match(&rule.pattern, path) {
            continue;
        }
        if rule.capabilities.contains(&Capability::Deny) || (gated && rule.break_glass.is_some()) {
            return false;
        }
        granted |= rule.capabilities.contains(&cap);
    }
    granted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(src: &str) -> Policy {
        match Policy::parse(src) {
            Ok(policy) => policy,
            Err(err) => panic!("policy should parse: {err}"),
        }
    }

    #[test]
    fn capability_names_round_trip() {
        for cap in Capability::ALL {
            assert_eq!(cap.as_str().parse::<Capability>(), Ok(cap));
            assert_eq!(cap.to_string(), cap.as_str());
            let json = serde_json::to_string(&cap).unwrap();
            assert_eq!(json, format!("\"{}\"", cap.as_str()));
            assert_eq!(serde_json::from_str::<Capability>(&json).unwrap(), cap);
        }
    }

    #[test]
    fn capability_parsing_is_exact() {
        let err = "Read".parse::<Capability>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown capability \"Read\" (expected one of create, read, update, \
             delete, list, sign, approve, admin, deny)"
        );
        assert!(" read".parse::<Capability>().is_err());
        assert!("".parse::<Capability>().is_err());
    }

    #[test]
    fn default_deny() {
        let p = policy("path \"prod/db/*\" { capabilities = [\"read\"] }");
        assert!(allowed(&[&p], "prod/db/x", Capability::Read));
        assert!(!allowed(&[&p], "prod/db/x", Capability::Update));
        assert!(!allowed(&[&p], "prod/db", Capability::Read));
        assert!(!allowed(&[&p], "staging/db/x", Capability::Read));
        assert!(!allowed(&[], "prod/db/x", Capability::Read));
        let empty = Policy::default();
        assert!(!allowed(&[&empty], "anything", Capability::Read));
    }

    #[test]
    fn grants_are_united_across_rules_and_policies() {
        let a = policy(
            "path \"prod/*\" { capabilities = [\"read\"] }\n\
             path \"prod/db/*\" { capabilities = [\"list\"] }",
        );
        let b = policy("path \"prod/+/x\" { capabilities = [\"update\"] }");
        let both = [&a, &b];
        assert!(allowed(&both, "prod/db/x", Capability::Read));
        assert!(allowed(&both, "prod/db/x", Capability::List));
        assert!(allowed(&both, "prod/db/x", Capability::Update));
        assert!(!allowed(&both, "prod/db/x", Capability::Delete));
        assert!(!allowed(&both, "prod/a/b/x", Capability::Update));
        assert!(allowed(&both, "prod/a/b/x", Capability::Read));
    }

    #[test]
    fn deny_wins_across_two_policies() {
        let grant = policy("path \"prod/*\" { capabilities = [\"read\", \"update\", \"admin\"] }");
        let deny = policy("path \"prod/+/config\" { capabilities = [\"deny\"] }");
        for policies in [[&grant, &deny], [&deny, &grant]] {
            for cap in Capability::ALL {
                assert!(!allowed(&policies, "prod/db/config", cap), "{cap}");
            }
            assert!(allowed(&policies, "prod/db/other", Capability::Read));
            assert!(allowed(&policies, "prod/a/b/config", Capability::Read));
        }
        assert!(allowed(&[&grant], "prod/db/config", Capability::Read));
    }

    #[test]
    fn deny_next_to_grants_in_one_rule_still_denies() {
        let p = policy("path \"x/*\" { capabilities = [\"read\", \"deny\"] }");
        assert!(!allowed(&[&p], "x/y", Capability::Read));
        assert_eq!(
            p.capabilities_for("x/y"),
            BTreeSet::from([Capability::Deny])
        );
    }

    #[test]
    fn deny_is_never_granted() {
        let root = Policy::root();
        assert!(!allowed(&[&root], "x", Capability::Deny));
    }

    #[test]
    fn root_policy_grants_everything_but_deny_everywhere() {
        let root = Policy::root();
        for path in ["", "a", "prod/db/x", "sys/policies/root"] {
            for cap in Capability::ALL {
                assert_eq!(
                    allowed(&[&root], path, cap),
                    cap != Capability::Deny,
                    "{path} {cap}"
                );
            }
        }
        let caps = root.capabilities_for("anything");
        assert_eq!(caps.len(), 8);
        assert!(!caps.contains(&Capability::Deny));
        // An explicit deny elsewhere still overrides root.
        let deny = policy("path \"sys/*\" { capabilities = [\"deny\"] }");
        assert!(!allowed(&[&root, &deny], "sys/seal", Capability::Admin));
    }

    #[test]
    fn dot_segments_are_refused() {
        let p = policy("path \"prod/db/*\" { capabilities = [\"read\"] }");
        assert!(!allowed(&[&p], "prod/db/../admin", Capability::Read));
        assert!(!allowed(&[&p], "prod/db/./x", Capability::Read));
        assert!(!allowed(&[&p], "prod/db/..", Capability::Read));
        assert!(allowed(&[&p], "prod/db/..x", Capability::Read));
        assert!(allowed(&[&p], "prod/db/x.y", Capability::Read));
    }

    #[test]
    fn capabilities_for_unions_matching_rules() {
        let p = policy(
            "path \"a/*\" { capabilities = [\"read\"] }\n\
             path \"a/+\" { capabilities = [\"list\", \"create\"] }\n\
             path \"b/*\" { capabilities = [\"admin\"] }",
        );
        assert_eq!(
            p.capabilities_for("a/x"),
            BTreeSet::from([Capability::Create, Capability::Read, Capability::List])
        );
        assert_eq!(
            p.capabilities_for("a/x/y"),
            BTreeSet::from([Capability::Read])
        );
        assert!(p.capabilities_for("c").is_empty());
    }

    #[test]
    fn the_root_policy_is_every_capability_but_deny_and_reads_back() {
        let hcl = Policy::root().to_hcl("built in: every capability on every path");
        assert_eq!(Policy::parse(&hcl).unwrap(), Policy::root());
        for cap in Capability::ALL {
            assert_eq!(
                hcl.contains(&format!("\"{}\"", cap.as_str())),
                cap != Capability::Deny,
                "{hcl}"
            );
        }
    }

    #[test]
    fn policy_serializes_as_rules() {
        let p = policy(
            "path \"a\" {\n  capabilities = [\"read\"]\n}\n\
             path \"b\" { capabilities = [\"list\"] }",
        );
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            "{\"rules\":[{\"pattern\":\"a\",\"capabilities\":[\"read\"]},\
             {\"pattern\":\"b\",\"capabilities\":[\"list\"]}]}"
        );
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), p);
    }

    #[test]
    fn a_gated_read_or_sign_is_never_allowed_by_policies_alone() {
        let gate = policy(
            "path \"prod/db/*\" {\n  capabilities = [\"read\", \"sign\", \"list\", \"update\"]\n  \
             break_glass {\n    max_ttl = \"1h\"\n    \
             factor \"a\" { approvers = [\"group:sre\"] approvals = 2 }\n  }\n}\n",
        );
        let wide = policy("path \"*\" { capabilities = [\"read\", \"sign\", \"list\"] }");
        for policies in [vec![&gate], vec![&gate, &wide], vec![&wide, &gate]] {
            assert!(!allowed(&policies, "prod/db/x", Capability::Read));
            assert!(!allowed(&policies, "prod/db/x", Capability::Sign));
            // Listing, writes and metadata are not gated.
            assert!(allowed(&policies, "prod/db/x", Capability::List));
        }
        assert!(allowed(&[&gate], "prod/db/x", Capability::Update));
        assert!(allowed(&[&wide, &gate], "prod/other", Capability::Read));
    }
}
