//! Authorization on the serving node: an identity's policies (direct, through groups, and the
//! built-in root policy for the configured root identities) checked against a path and a
//! capability. Each node decides on its own from its own replicated copy (law 2).

use std::sync::Arc;

use crate::error::Refusal;
use crate::node::Node;
use crate::policy::{allowed, Capability, Policy};
use crate::state::ROOT_POLICY;

pub fn authorize(node: &Node, identity: &str, path: &str, cap: Capability) -> Result<(), Refusal> {
    if node.config.root_identities.iter().any(|r| r == identity) {
        return Ok(());
    }
    let st = node.state.read().expect("state lock");
    let names = st.model.policies_of(identity);
    if names.contains(ROOT_POLICY) {
        return Ok(());
    }
    let parsed: Vec<Arc<Policy>> = names
        .iter()
        .filter_map(|n| node.policies.get(n, st.model.policies.get(n)?))
        .collect();
    let refs: Vec<&Policy> = parsed.iter().map(|p| p.as_ref()).collect();
    if allowed(&refs, path, cap) {
        Ok(())
    } else {
        Err(Refusal::Denied {
            identity: identity.to_string(),
            path: path.to_string(),
            capability: cap.as_str().to_string(),
            policies: names.into_iter().collect(),
        })
    }
}
