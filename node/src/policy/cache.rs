//! Parsed policies kept between requests. Every request is authorized on the node that serves
//! it (law 2), so parsing each attached policy's HCL on every request would make policy
//! evaluation the cost of a read; this keeps the parse, keyed by the policy's exact text, so a
//! policy that changes through Raft is parsed again on first use and never served stale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Policy;

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
