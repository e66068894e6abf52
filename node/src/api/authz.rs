//! Authorization on the serving node: an identity's policies (direct, through groups, and the
//! built-in root policy for the configured root identities) checked against a path and a
//! capability. Each node decides on its own from its own replicated copy (law 2), with the same
//! function every node applies signed commands with (`state::authority::authorize`).

use crate::error::Refusal;
use crate::node::Node;
use crate::policy::Capability;
use crate::state::authority::Gates;

pub fn authorize(
    node: &Node,
    identity: &str,
    path: &str,
    cap: Capability,
    gates: Gates,
) -> Result<(), Refusal> {
    let st = node.state.read().expect("state lock");
    crate::state::authority::authorize_with(&st.model, &node.trust, identity, path, cap, gates)
}
