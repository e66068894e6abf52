//! The `break_glass` block of a path rule: who must approve before anyone, root included, may
//! read a secret (or sign with a key) on the rule's paths, for how long and how many times.
//!
//! ```hcl
//! path "prod/db/*" {
//!   capabilities = ["read"]
//!   break_glass {
//!     max_ttl = "1h"
//!     uses    = 3
//!     factor "sre"      { approvers = ["group:sre-leads"] approvals = 2 }
//!     factor "security" { approvers = ["group:security", "identity:ciso"] approvals = 1 }
//!   }
//! }
//! ```
//!
//! # Security
//!
//! Every factor must be met: a factor is a separate group of people, and two approvals from one
//! group never stand in for one from another. The limits are checked when the policy is parsed
//! (so a policy the cluster holds is always a well-formed gate): at least one factor, each with
//! at least one approver and at least one approval, a grant of at most
//! [`MAX_GRANT_SECS`], at least one use.

use serde::{Deserialize, Serialize};

/// The longest grant a policy may allow: one day. An emergency that needs longer is a new
/// request, approved again.
pub const MAX_GRANT_SECS: u64 = 24 * 3600;

/// How many uses a grant allows when the block does not say.
pub const DEFAULT_USES: u32 = 1;

/// One `break_glass { ... }` block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlass {
    /// The longest a grant lasts (seconds), whatever the request asks for.
    pub max_ttl_secs: u64,
    /// Reads (or signatures) one grant allows.
    pub uses: u32,
    /// Every one must be met.
    pub factors: Vec<Factor>,
}

/// One `factor "NAME" { approvers = [...] approvals = N }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Factor {
    pub name: String,
    /// Who may approve for this factor.
    pub approvers: Vec<Approver>,
    /// How many distinct approvers must approve.
    pub approvals: u32,
}

/// An entry of `approvers`: `group:NAME` or `identity:NAME`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Approver {
    Group(String),
    Identity(String),
}

impl Approver {
    /// Reads `group:NAME` or `identity:NAME`; anything else is an error message.
    pub fn parse(s: &str) -> Result<Approver, String> {
        let (kind, name) = s.split_once(':').ok_or_else(|| {
            format!("approver {s:?} names neither a group nor an identity (expected \"group:NAME\" or \"identity:NAME\")")
        })?;
        if name.is_empty() {
            return Err(format!("approver {s:?} has an empty name"));
        }
        match kind {
            "group" => Ok(Approver::Group(name.to_owned())),
            "identity" => Ok(Approver::Identity(name.to_owned())),
            other => Err(format!(
                "approver kind {other:?} is unknown (expected \"group:NAME\" or \"identity:NAME\")"
            )),
        }
    }
}

impl std::fmt::Display for Approver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Approver::Group(g) => write!(f, "group:{g}"),
            Approver::Identity(i) => write!(f, "identity:{i}"),
        }
    }
}

/// One approval as the gate judges it: who approved, and the groups they were in where their
/// approval was applied (membership is judged there, not later).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval<'a> {
    pub approver: &'a str,
    pub groups: &'a std::collections::BTreeSet<String>,
}

/// Why a grant is not (yet) met: the first factor short of approvals.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("factor {factor:?} has {have} of the {need} approvals it needs")]
pub struct Unmet {
    pub factor: String,
    pub have: u32,
    pub need: u32,
}

impl Factor {
    /// Whether `who`, in `groups`, may approve for this factor.
    pub fn eligible(&self, who: &str, groups: &std::collections::BTreeSet<String>) -> bool {
        self.approvers.iter().any(|a| match a {
            Approver::Identity(i) => i == who,
            Approver::Group(g) => groups.contains(g),
        })
    }
}

impl BreakGlass {
    /// Whether `approvals` meet every factor of this gate for a request by `requester`.
    ///
    /// # Security
    ///
    /// - The requester's own approval never counts, whatever groups they are in (no one
    ///   approves their own emergency).
    /// - An approver counts once: for one factor, even if they are eligible for several, so a
    ///   gate of two factors always takes at least two people. Whether the approvals can be
    ///   assigned so is a bipartite matching (approvers to factor slots), solved exactly.
    /// - The same approver twice in `approvals` counts once.
    pub fn met(&self, requester: &str, approvals: &[Approval<'_>]) -> Result<(), Unmet> {
        let mut approvers: Vec<&Approval<'_>> = Vec::new();
        for a in approvals {
            if a.approver != requester && !approvers.iter().any(|b| b.approver == a.approver) {
                approvers.push(a);
            }
        }
        // One slot per approval a factor needs; an approver may fill a slot of a factor they
        // are eligible for.
        let slots: Vec<usize> = self
            .factors
            .iter()
            .enumerate()
            .flat_map(|(f, factor)| std::iter::repeat_n(f, factor.approvals as usize))
            .collect();
        let edges: Vec<Vec<usize>> = approvers
            .iter()
            .map(|a| {
                (0..slots.len())
                    .filter(|&s| self.factors[slots[s]].eligible(a.approver, a.groups))
                    .collect()
            })
            .collect();
        let filled = matching(&edges, slots.len());
        for (f, factor) in self.factors.iter().enumerate() {
            let have = (0..slots.len())
                .filter(|&s| slots[s] == f && filled[s].is_some())
                .count() as u32;
            if have < factor.approvals {
                return Err(Unmet {
                    factor: factor.name.clone(),
                    have,
                    need: factor.approvals,
                });
            }
        }
        Ok(())
    }
}

/// A maximum matching of left nodes (approvers, with the right nodes each may take) to
/// `right` right nodes (slots), by augmenting paths; returns each right node's left node.
fn matching(edges: &[Vec<usize>], right: usize) -> Vec<Option<usize>> {
    fn augment(
        l: usize,
        edges: &[Vec<usize>],
        seen: &mut [bool],
        owner: &mut [Option<usize>],
    ) -> bool {
        for &r in &edges[l] {
            if seen[r] {
                continue;
            }
            seen[r] = true;
            if owner[r].is_none_or(|other| augment(other, edges, seen, owner)) {
                owner[r] = Some(l);
                return true;
            }
        }
        false
    }
    let mut owner = vec![None; right];
    for l in 0..edges.len() {
        let mut seen = vec![false; right];
        augment(l, edges, &mut seen, &mut owner);
    }
    owner
}

/// Reads a duration such as `"90s"`, `"30m"`, `"1h"` or `"1h30m"` (units `s`, `m`, `h`, each at
/// most once, largest first) into seconds. A bare number is refused: a unit left out is a
/// guess about what the author meant.
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let bad = || format!("duration {s:?} is not like \"90s\", \"30m\", \"1h\" or \"1h30m\"");
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut last_unit = u64::MAX;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        if digits.is_empty() || unit >= last_unit {
            return Err(bad());
        }
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
        last_unit = unit;
    }
    if !digits.is_empty() {
        return Err(bad());
    }
    Ok(total)
}

/// Renders seconds as `parse_duration` reads them back.
pub fn format_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_units_only() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("1h"), Ok(3600));
        assert_eq!(parse_duration("1h30m"), Ok(5400));
        assert_eq!(parse_duration("2h0m5s"), Ok(7205));
        for bad in [
            "",
            "1",
            "h",
            "1d",
            "30m1h",
            "1h1h",
            "1.5h",
            "-1h",
            "1h ",
            "99999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        for secs in [0, 1, 59, 60, 3600, 5400, 86400, 86399] {
            assert_eq!(parse_duration(&format_duration(secs)), Ok(secs));
        }
    }

    #[test]
    fn approvers_name_a_group_or_an_identity() {
        assert_eq!(
            Approver::parse("group:sre"),
            Ok(Approver::Group("sre".into()))
        );
        assert_eq!(
            Approver::parse("identity:ciso"),
            Ok(Approver::Identity("ciso".into()))
        );
        for bad in ["sre", "group:", "user:ciso", ":x"] {
            assert!(Approver::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(Approver::Group("a:b".into()).to_string(), "group:a:b");
    }

    fn gate(factors: &[(&str, &[&str], u32)]) -> BreakGlass {
        BreakGlass {
            max_ttl_secs: 3600,
            uses: 1,
            factors: factors
                .iter()
                .map(|(name, who, n)| Factor {
                    name: name.to_string(),
                    approvers: who.iter().map(|w| Approver::parse(w).unwrap()).collect(),
                    approvals: *n,
                })
                .collect(),
        }
    }

    fn check(g: &BreakGlass, requester: &str, who: &[(&str, &[&str])]) -> Result<(), Unmet> {
        let groups: Vec<std::collections::BTreeSet<String>> = who
            .iter()
            .map(|(_, gs)| gs.iter().map(|g| g.to_string()).collect())
            .collect();
        let approvals: Vec<Approval<'_>> = who
            .iter()
            .zip(&groups)
            .map(|((a, _), groups)| Approval {
                approver: a,
                groups,
            })
            .collect();
        g.met(requester, &approvals)
    }

    #[test]
    fn every_factor_must_be_met_by_distinct_people_other_than_the_requester() {
        let g = gate(&[
            ("sre", &["group:sre-leads"], 2),
            ("security", &["group:security", "identity:ciso"], 1),
        ]);
        let unmet = |f: &str, have, need| {
            Err(Unmet {
                factor: f.into(),
                have,
                need,
            })
        };
        // The sre approvals alone do not open it.
        assert_eq!(
            check(&g, "eve", &[("a", &["sre-leads"]), ("b", &["sre-leads"])]),
            unmet("security", 0, 1)
        );
        assert_eq!(
            check(
                &g,
                "eve",
                &[("a", &["sre-leads"]), ("b", &["sre-leads"]), ("ciso", &[])]
            ),
            Ok(())
        );
        // The requester's own approval never counts, even from inside the group.
        assert_eq!(
            check(
                &g,
                "a",
                &[("a", &["sre-leads"]), ("b", &["sre-leads"]), ("ciso", &[])]
            ),
            unmet("sre", 1, 2)
        );
        // Approving twice counts once; outsiders do not count.
        assert_eq!(
            check(
                &g,
                "eve",
                &[
                    ("a", &["sre-leads"]),
                    ("a", &["sre-leads"]),
                    ("x", &["dev"]),
                    ("ciso", &[])
                ]
            ),
            unmet("sre", 1, 2)
        );
        // One person in both groups fills one slot, not two.
        assert_eq!(
            check(
                &g,
                "eve",
                &[("a", &["sre-leads", "security"]), ("b", &["sre-leads"])]
            ),
            unmet("security", 0, 1)
        );
        // ... but is placed where they are needed: a in both, b and c in sre-leads.
        assert_eq!(
            check(
                &g,
                "eve",
                &[
                    ("a", &["sre-leads", "security"]),
                    ("b", &["sre-leads"]),
                    ("c", &["sre-leads"])
                ]
            ),
            Ok(())
        );
        assert_eq!(check(&g, "eve", &[]), unmet("sre", 0, 2));
    }
}
