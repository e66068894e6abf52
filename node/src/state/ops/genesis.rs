//! The genesis document (`Genesis`): the cluster's starting state, applied once; and the
//! root identities it names, which later only a signed `SetRoots` changes.

use super::Ctx;
use crate::error::Refusal;
use crate::state::genesis::{Genesis, Start};
use crate::state::{Effects, Model};

pub fn validate(m: &Model, g: &Genesis, cx: &Ctx) -> Result<Start, Refusal> {
    if let Some(d) = &m.genesis {
        return Err(Refusal::rejected(format!(
            "this cluster already started from genesis {d}"
        )));
    }
    let start = g.verify(cx.trust, cx.cluster_id)?;
    validate_roots(&start.doc.roots)?;
    // The starting threshold obeys the topology law like any later setting.
    super::settings::validate(
        &Model::default(),
        &start.members,
        Some(start.doc.threshold),
        start.doc.ack_fault_tolerance,
        Some(start.doc.allow_unsafe_topology),
    )?;
    Ok(start)
}

pub fn apply(m: &mut Model, g: &Genesis, cx: &Ctx, fx: &mut Effects) {
    // `validate` accepted it just before, on this same model.
    let Ok(start) = validate(m, g, cx) else {
        return;
    };
    m.members = start.members;
    m.roots = start.doc.roots;
    m.settings.threshold = Some(start.doc.threshold);
    m.settings.ack_fault_tolerance = start.doc.ack_fault_tolerance;
    m.settings.allow_unsafe_topology = start.doc.allow_unsafe_topology;
    m.genesis = Some(g.digest());
    fx.members = true;
}

/// Root identities: at least one (a cluster nobody can administer cannot be repaired), each a
/// client identity name (never a node's).
pub fn validate_roots(roots: &std::collections::BTreeSet<String>) -> Result<(), Refusal> {
    if roots.is_empty() {
        return Err(Refusal::invalid(
            "name at least one root identity: a cluster without one cannot be administered",
        ));
    }
    for r in roots {
        crate::state::validate_name("identity", r)?;
        if crate::state::members::parse_node_dns_name(r).is_some() {
            return Err(Refusal::invalid(format!(
                "{r:?} is a node's name; a node never acts as a user"
            )));
        }
    }
    Ok(())
}
