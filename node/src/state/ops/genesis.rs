//! The genesis document (`Genesis`): the cluster's starting state, applied once.

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
