//! One item of a `ReleaseShares` call: whether this node may release it (law 2, at an applied
//! index no older than the version), which version it is, and the share sealed for this item
//! under the reader's one-time key.

use std::time::Duration;

use tessera_crypto::release;
use tessera_proto::{ReleaseItem, ReleasedShare};

use super::{bad, path_arg};
use crate::api::grant::UnderGrant;
use crate::api::Api;
use crate::error::Refusal;
use crate::policy::Capability;
use crate::state::breakglass::UseTarget;
use crate::state::kv::VersionEntry;

impl Api {
    /// Looks up a readable version, with an error that says why when it is not.
    pub(super) fn readable(
        &self,
        path: &str,
        version: u64,
    ) -> Result<(u64, VersionEntry), Refusal> {
        // Clone only the one version asked for.
        let (n, v) = self
            .with_secret(path, |e| {
                let n = if version == 0 {
                    e.current_version
                } else {
                    version
                };
                (n, e.versions.get(&n).cloned())
            })
            .ok_or_else(|| Refusal::not_found(format!("no secret at {path:?}")))?;
        let v = v.ok_or_else(|| {
            Refusal::not_found(format!(
                "{path:?} has no version {n} (never written, or pruned beyond max_versions)"
            ))
        })?;
        if v.destroyed {
            return Err(Refusal::not_found(format!(
                "version {n} of {path:?} is destroyed"
            )));
        }
        if let Some(t) = &v.deletion_time {
            return Err(Refusal::not_found(format!(
                "version {n} of {path:?} was deleted at {t}; `tessera kv undelete {path} --versions {n}` restores it"
            )));
        }
        if let Some(why) = v.lost() {
            return Err(Refusal::rejected(format!(
                "version {n} of {path:?} is invalid and never served: {why}"
            )));
        }
        Ok((n, v))
    }

    /// One item of a release: law 2 on this node, then its share sealed for this item. Under a
    /// break-glass grant, also what the audit line says about the grant.
    pub(super) async fn release_item(
        &self,
        identity: &str,
        sealer: &release::Sealer,
        position: u32,
        r: &ReleaseItem,
        confirmed: bool,
    ) -> Result<(ReleasedShare, Option<String>), Refusal> {
        path_arg(&r.path)?;
        let under = UnderGrant::named(&r.grant, &r.use_id)?;
        if r.version == 0 && !r.with_metadata {
            return Err(bad(
                "name the version to release (the reader learns it from the metadata)",
            ));
        }
        // Law 2: this node checks identity and policy itself, at an applied index no older than
        // the version. A caller without `read` is refused at once; otherwise the node catches
        // up to the index the reader names and decides again there, so that a policy change or
        // a revocation committed before that index is in the state it authorizes on. A path
        // behind a `break_glass` gate is refused here unless the reader names a grant, which
        // is checked below on this node's own evidence (`api::grant`).
        self.authorize_gated(identity, &r.path, Capability::Read, under)
            .await?;
        // Never on state that may be stale: a holder cut off from the leader stops releasing
        // (`Reads::fresh`), so a revocation reaches every holder's decisions within a bound.
        self.node.reads.fresh().await?;
        if r.min_index > self.node.reads.applied_watch().borrow().to_owned() {
            self.node
                .reads
                .wait_applied(r.min_index, Duration::from_secs(5))
                .await?;
            self.authorize_gated(identity, &r.path, Capability::Read, under)
                .await?;
        }
        let (n, v) = self.readable(&r.path, r.version)?;
        if v.share_index(self.node.id).is_none() {
            return Err(Refusal::NotAHolder {
                node: self.node.id,
                reason: format!(
                    "node {} holds no share of version {n} of {:?}",
                    self.node.id, r.path
                ),
            });
        }
        let granted = match under {
            Some(under) => Some(
                self.check_grant(
                    identity,
                    &r.path,
                    Capability::Read,
                    under,
                    &UseTarget::Version(n),
                    &format!("{:?} version {n}", r.path),
                )?
                .audit_detail(),
            ),
            None => None,
        };
        let share = self.node.vault.share_for_release(&r.path, n)?;
        let item = release::Item {
            position,
            path: &r.path,
            version: n,
        };
        let sealed_share = sealer
            .seal(&item, &share.to_bytes())
            .map_err(|e| Refusal::internal(e.to_string()))?;
        let metadata = r
            .with_metadata
            .then(|| self.version_reply(r.path.clone(), n, v, r.with_ciphertext, !confirmed));
        let released = ReleasedShare {
            version: n,
            share_index: u32::from(share.index),
            sealed_share,
            metadata,
            refusal: None,
        };
        Ok((released, granted))
    }
}
