//! A release, or a signature share, under a break-glass grant: the caller names the grant and
//! a use it committed; this node checks both itself and records the use as served before
//! anything leaves.
//!
//! # Security
//!
//! Law 2 under a gate. Without a grant, a gated read or signature is refused to everyone
//! (`authority::authorize_with`, root included). With one, this node:
//! 1. checks the caller's own policies still give it the capability (gates set aside);
//! 2. verifies, from the signed calls the replicated record keeps, the request, every
//!    decision and the use, against the cluster CA and its revocations at this index, and
//!    judges the gates on the policies at this index (`breakglass::evidence`): a record
//!    written into the state by a compromised node, with no valid signatures behind it,
//!    releases nothing;
//! 3. judges the grant's end by its own clock (a release is its own decision);
//! 4. records the use as served, durably, refusing a second release for it.
//!
//! The caller waits for this node to have applied the index where the use was committed
//! (`min_index`), so the use, and every decision before it, are in the state judged here.

use crate::error::Refusal;
use crate::policy::Capability;
use crate::state::authority::Gates;
use crate::state::breakglass::evidence::{check_release, Checked, Release};
use crate::state::breakglass::UseTarget;
use crate::state::Timestamp;

use super::Api;

/// A grant and use named by a caller.
#[derive(Clone, Copy, Debug)]
pub(super) struct UnderGrant<'a> {
    pub grant: &'a str,
    pub use_id: &'a str,
}

impl<'a> UnderGrant<'a> {
    /// The grant a request names, if it names one.
    pub fn named(grant: &'a str, use_id: &'a str) -> Result<Option<Self>, Refusal> {
        match (grant.is_empty(), use_id.is_empty()) {
            (true, true) => Ok(None),
            (false, false) => Ok(Some(UnderGrant { grant, use_id })),
            _ => Err(Refusal::invalid(
                "a release under a break-glass grant names both the grant and a committed use",
            )),
        }
    }
}

impl Checked {
    /// The audit line's detail for a release under this grant.
    pub fn audit_detail(&self) -> String {
        format!(
            "break-glass grant {} use {}: requested by {} ({:?}); approved by {}",
            self.grant,
            self.use_id,
            self.requester,
            self.reason,
            self.approvers.join(", ")
        )
    }
}

impl Api {
    /// Law 2 for a read or a signature: gated paths need a grant (`under`), which moves the
    /// gate's check to `check_grant`; the caller's own policies are checked either way.
    pub(super) async fn authorize_gated(
        &self,
        identity: &str,
        path: &str,
        cap: Capability,
        under: Option<UnderGrant<'_>>,
    ) -> Result<(), Refusal> {
        let gates = match under {
            None => Gates::Enforced,
            Some(_) => Gates::SetAside,
        };
        self.authorize_with(identity, path, cap, gates).await
    }

    /// Checks `under` for `cap` on `path` and `target` (the version released, or the sign
    /// request's digest) by this node's own evidence check, then records the use as served (`what` says what was served, for the record). Call it last, right before
    /// the share is made: whatever refuses after it has still spent the use here.
    pub(super) fn check_grant(
        &self,
        identity: &str,
        path: &str,
        cap: Capability,
        under: UnderGrant<'_>,
        target: &UseTarget,
        what: &str,
    ) -> Result<Checked, Refusal> {
        let checked = {
            let st = self.node.state.read().expect("state lock");
            let request = st.model.breakglass.get(under.grant).ok_or_else(|| {
                Refusal::not_found(format!(
                    "no break-glass request {:?} on node {}",
                    under.grant, self.node.id
                ))
            })?;
            check_release(
                &self.node.trust,
                &st.model,
                &self.node.config.cluster_id,
                request,
                &Release {
                    caller: identity,
                    path,
                    capability: cap,
                    use_id: under.use_id,
                    target,
                    now: Timestamp::now(),
                },
            )?
        };
        self.node.vault.serve_use(under.grant, under.use_id, what)?;
        self.event("released");
        Ok(checked)
    }
}
