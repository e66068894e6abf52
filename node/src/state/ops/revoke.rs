//! `Revoke`: a certificate, every certificate of an identity, or every certificate of a node is
//! refused by every node from the index at which this applies.

use crate::error::Refusal;
use crate::state::revocations::RevokeTarget;
use crate::state::{validate_name, Model};

pub fn validate(target: &RevokeTarget) -> Result<(), Refusal> {
    match target {
        RevokeTarget::Identity(name) => validate_name("identity", name),
        RevokeTarget::Serial(s) => {
            let hex = !s.is_empty() && s.len() <= 80 && s.bytes().all(|b| b.is_ascii_hexdigit());
            if hex && s.to_lowercase() == *s {
                Ok(())
            } else {
                Err(Refusal::invalid(format!(
                    "serial {s:?}: expected the certificate's serial number in lowercase hex"
                )))
            }
        }
        RevokeTarget::Node(0) => Err(Refusal::invalid("node ids start at 1")),
        RevokeTarget::Node(_) => Ok(()),
    }
}

pub fn apply(m: &mut Model, target: &RevokeTarget) {
    let r = &mut m.revocations;
    match target {
        RevokeTarget::Identity(name) => {
            r.identities.insert(name.clone());
        }
        RevokeTarget::Serial(s) => {
            r.serials.insert(s.clone());
        }
        RevokeTarget::Node(n) => {
            r.nodes.insert(*n);
        }
    }
}
