//! Parsed policies kept between requests. Every request is authorized on the node that serves
//! it (law 2), so parsing each attached policy's HCL on every request would make policy
//! evaluation the cost of a read; this keeps the parse, keyed by the policy's exact text, so a
//! policy that changes through Raft is parsed again on first use and never served stale.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::break_glass::BreakGlass;
use super::{glob_match, Policy};

#[derive(Default)]
pub struct PolicyCache {
    parsed: Mutex<HashMap<String, (String, Arc<Policy>)>>,
}

impl PolicyCache {
    /// The policy `name` whose current text is `text`; `None` if the text does not parse
    /// (it was checked when written, so this does not happen in practice).
    pub fn get(&self, name: &str, text: &str) -> Option<Arc<Policy>> {
        let mut parsed = self.parsed.lock().expect("policy cache lock");
        if let Some((cached_text, policy)) = parsed.get(name) {
            if cached_text == text {
                return Some(policy.clone());
            }
        }
        let policy = Arc::new(Policy::parse(text).ok()?);
        parsed.insert(name.to_string(), (text.to_string(), policy.clone()));
        Some(policy)
    }

    /// Every `break_glass` block, in any of `policies` (name → text, the cluster's whole set),
    /// whose pattern matches `path`. A gate binds whoever asks, so it is looked for in every
    /// policy, not only in the caller's.
    pub fn gates(&self, policies: &BTreeMap<String, String>, path: &str) -> Vec<BreakGlass> {
        let mut gates = Vec::new();
        for (name, text) in policies {
            let Some(policy) = self.get(name, text) else {
                continue;
            };
            for rule in &policy.rules {
                if let Some(bg) = &rule.break_glass {
                    if glob_match(&rule.pattern, path) {
                        gates.push(bg.clone());
                    }
                }
            }
        }
        gates
    }

    /// Every `break_glass` block inside policy `name` (none if there is no such policy).
    pub fn gates_in(&self, policies: &BTreeMap<String, String>, name: &str) -> Vec<BreakGlass> {
        let Some(policy) = policies.get(name).and_then(|text| self.get(name, text)) else {
            return Vec::new();
        };
        policy
            .rules
            .iter()
            .filter_map(|r| r.break_glass.clone())
            .collect()
    }

    /// Every `break_glass` block, in any policy, with a factor that names group `group` as
    /// approvers.
    pub fn gates_naming_group(
        &self,
        policies: &BTreeMap<String, String>,
        group: &str,
    ) -> Vec<BreakGlass> {
        let mut gates = Vec::new();
        for (name, text) in policies {
            let Some(policy) = self.get(name, text) else {
                continue;
            };
            for bg in policy.rules.iter().filter_map(|r| r.break_glass.as_ref()) {
                let names = bg.factors.iter().flat_map(|f| f.approvers.iter()).any(
                    |a| matches!(a, crate::policy::break_glass::Approver::Group(g) if g == group),
                );
                if names {
                    gates.push(bg.clone());
                }
            }
        }
        gates
    }

    /// Whether any `break_glass` block of `policies` covers `path`.
    pub fn gated(&self, policies: &BTreeMap<String, String>, path: &str) -> bool {
        policies.iter().any(|(name, text)| {
            self.get(name, text).is_some_and(|p| {
                p.rules
                    .iter()
                    .any(|r| r.break_glass.is_some() && glob_match(&r.pattern, path))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{allowed, Capability};

    #[test]
    fn a_changed_policy_text_is_parsed_again() {
        let cache = PolicyCache::default();
        let v1 = r#"path "prod/*" { capabilities = ["read"] }"#;
        let v2 = r#"path "prod/*" { capabilities = ["deny"] }"#;
        let p = cache.get("app", v1).unwrap();
        assert!(allowed(&[&p], "prod/x", Capability::Read));
        let p = cache.get("app", v2).unwrap();
        assert!(!allowed(&[&p], "prod/x", Capability::Read));
        assert!(cache.get("broken", "path {").is_none());
    }
}
