//! The offline proof of a break-glass request: the record with every signed call it rests on,
//! checked with nothing but the cluster CA certificate (`tessera breakglass verify`).
//!
//! # Security
//!
//! What the proof shows is what the signatures show: who asked for what and why, and who
//! approved or denied it, each under a certificate the cluster CA issued, with the approvals
//! bound to the request by its digest. The replicated facts around them (when the grant became
//! active, by which node's stamp) are shown but not proven. Revocation is not checked offline:
//! a revoked approver's signature still verifies here, so the auditor compares the signers'
//! serials with the cluster's revocation list when that matters.

use serde::{Deserialize, Serialize};

use super::evidence::{verify_decision, verify_request, verify_use};
use super::Request;
use crate::error::Refusal;
use crate::state::authority::Trust;
use crate::state::Model;

/// The `format` of a proof bundle.
pub const PROOF_FORMAT: &str = "tessera-breakglass-proof-v1";

/// What `tessera breakglass show ID --proof` writes.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bundle {
    pub format: String,
    pub cluster_id: String,
    pub request: Request,
}

/// What a proof showed.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub requester: String,
    /// Each decision's approver and whether it approved.
    pub decisions: Vec<(String, bool)>,
    pub uses: usize,
}

impl Bundle {
    pub fn of(cluster_id: &str, r: &Request) -> Bundle {
        Bundle {
            format: PROOF_FORMAT.to_string(),
            cluster_id: cluster_id.to_string(),
            // What the cluster has notified is bookkeeping, not evidence.
            request: Request {
                notified: Default::default(),
                ..r.clone()
            },
        }
    }

    /// Every signature of the bundle, against the CA `trust` holds.
    pub fn verify(&self, trust: &Trust) -> Result<Verified, Refusal> {
        if self.format != PROOF_FORMAT {
            return Err(Refusal::invalid(format!(
                "not a break-glass proof: format {:?}, expected {PROOF_FORMAT:?}",
                self.format
            )));
        }
        // No revocations offline (see the module's note).
        let m = Model::default();
        let r = &self.request;
        verify_request(trust, &m, &self.cluster_id, r)?;
        let digest = r.digest(&self.cluster_id);
        for d in &r.decisions {
            verify_decision(trust, &m, &self.cluster_id, r, &digest, d)?;
        }
        for position in 0..r.uses.len() {
            verify_use(trust, &m, &self.cluster_id, r, position)?;
        }
        Ok(Verified {
            requester: r.requester.clone(),
            decisions: r
                .decisions
                .iter()
                .map(|d| (d.approver.clone(), d.approve))
                .collect(),
            uses: r.uses.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::authority::testing::TestCa;
    use crate::state::breakglass::testing::{decision, requested, run};
    use crate::state::CommandResult;

    #[test]
    fn a_proof_verifies_offline_and_a_changed_byte_does_not() {
        let ca = TestCa::new();
        let mut m = Model::default();
        let id = requested(&ca, &mut m);
        for (who, t) in [("bob", 1), ("carol", 2)] {
            let c = decision(&ca.client(who), &m, &id, true, t);
            assert_eq!(run(&mut m, &ca, &c), CommandResult::ok());
        }
        let json = serde_json::to_string(&Bundle::of("c", &m.breakglass[&id])).unwrap();
        let bundle: Bundle = serde_json::from_str(&json).unwrap();
        let v = bundle.verify(&ca.trust).unwrap();
        assert_eq!(v.requester, "alice");
        assert_eq!(
            v.decisions,
            [("bob".to_string(), true), ("carol".to_string(), true)]
        );

        // Another CA does not vouch for these signers.
        let e = bundle.verify(&TestCa::new().trust).unwrap_err().to_string();
        assert!(e.contains("request"), "{e}");
        // One changed character of the reason, of an approver, or of a signature.
        let reason = json.replacen("incident 42", "incident 43", 1);
        let approver = json.replacen("\"approver\":\"carol\"", "\"approver\":\"carl\"", 1);
        for (what, text) in [("reason", reason), ("approver", approver)] {
            assert_ne!(text, json, "{what}");
            let b: Bundle = serde_json::from_str(&text).unwrap();
            assert!(b.verify(&ca.trust).is_err(), "a changed {what} verified");
        }
        let mut b: Bundle = serde_json::from_str(&json).unwrap();
        b.request.decisions[0].call.as_mut().unwrap().signature[0] ^= 1;
        let e = b.verify(&ca.trust).unwrap_err().to_string();
        assert!(e.contains("approval by bob"), "{e}");
        // Not a proof at all.
        let mut b: Bundle = serde_json::from_str(&json).unwrap();
        b.format = "x".into();
        assert!(b.verify(&ca.trust).is_err());
    }
}
