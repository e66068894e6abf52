//! Cluster settings (`SetSettings`): the threshold `t`, the acknowledgements beyond it `f`,
//! and whether an unsafe topology is allowed. The topology law is checked here, on apply,
//! against the membership every node agrees on.

use crate::error::Refusal;
use crate::state::{topology, Members, Model};

pub fn validate(
    m: &Model,
    members: &Members,
    threshold: Option<u32>,
    ack_fault_tolerance: Option<u32>,
    allow_unsafe_topology: Option<bool>,
) -> Result<(), Refusal> {
    let unsafe_ok = allow_unsafe_topology.unwrap_or(m.settings.allow_unsafe_topology);
    let t = threshold.or(m.settings.threshold);
    let n = members.voters.len();
    if let Some(t) = t {
        if !unsafe_ok {
            topology::check(&members.region_counts(), t as usize)?;
        } else if t < 2 || t as usize > n.max(2) {
            return Err(Refusal::invalid(format!(
                "threshold {t} is impossible with {n} share holders (need 2 <= t <= {n})"
            )));
        }
        if let Some(f) = ack_fault_tolerance {
            if (t + f) as usize > n {
                return Err(Refusal::invalid(format!(
                    "t + f = {} exceeds the {n} share holders",
                    t + f
                )));
            }
        }
    }
    Ok(())
}

/// The shortest and longest `breakglass.request_ttl`: long enough for approvers to be reached,
/// short enough that a forgotten request does not wait for a week.
pub const MIN_REQUEST_TTL_SECS: u64 = 60;
pub const MAX_REQUEST_TTL_SECS: u64 = 7 * 24 * 3600;

pub fn validate_request_ttl(secs: Option<u64>) -> Result<(), Refusal> {
    match secs {
        Some(s) if !(MIN_REQUEST_TTL_SECS..=MAX_REQUEST_TTL_SECS).contains(&s) => {
            Err(Refusal::invalid(format!(
                "breakglass.request_ttl {s}s: a request waits between 1m and 168h for approvals"
            )))
        }
        _ => Ok(()),
    }
}

/// `None` leaves a setting as it is.
pub fn apply(
    m: &mut Model,
    threshold: Option<u32>,
    ack_fault_tolerance: Option<u32>,
    allow_unsafe_topology: Option<bool>,
) {
    if let Some(t) = threshold {
        m.settings.threshold = Some(t);
    }
    if let Some(f) = ack_fault_tolerance {
        m.settings.ack_fault_tolerance = Some(f);
    }
    if let Some(u) = allow_unsafe_topology {
        m.settings.allow_unsafe_topology = u;
    }
}
