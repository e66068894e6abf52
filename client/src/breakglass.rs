//! Break-glass from the client's side: ask for a grant, decide on one, commit a use of it, and
//! find the caller's active grant for a path.
//!
//! An approver's decision is signed over the digest of the request as this client computed it
//! from the fields it received (and shows), so a node that showed one request and stores
//! another gets a decision that applies to nothing.

use tessera_crypto::breakglass::{request_digest, RequestFields};
use tessera_proto::break_glass_client::BreakGlassClient;
use tessera_proto::*;
use tonic::transport::Channel;

use crate::connect::MAX_MESSAGE_BYTES;
use crate::{Client, Error};

/// A committed use of a grant: what a gated read or signature names, and the index the nodes
/// catch up to before they judge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantUse {
    pub grant: String,
    pub use_id: String,
    pub index: u64,
}

impl Client {
    pub fn breakglass_rpc(&self) -> BreakGlassClient<Channel> {
        BreakGlassClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Opens a request for `capability` on `path` (`read` a KV path, `sign` with `keys/NAME`,
    /// `update` or `delete` `sys/policies/NAME`); answers its id.
    pub async fn breakglass_request(
        &self,
        path: &str,
        capability: &str,
        reason: &str,
        ttl_secs: u64,
    ) -> Result<BreakGlassOpened, Error> {
        if reason.trim().is_empty() {
            return Err(Error::Invalid {
                reason: "a break-glass request needs a reason (--reason): approvers and the audit log read it".into(),
            });
        }
        let req = BreakGlassOpen {
            path: path.into(),
            capability: capability.into(),
            reason: reason.into(),
            ttl_secs,
        };
        let r = self
            .breakglass_rpc()
            .request(self.signed(SignedMethod::BreakGlassRequest, req).await?)
            .await;
        r.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    pub async fn breakglass_show(&self, id: &str, proof: bool) -> Result<BreakGlassRecord, Error> {
        let r = self
            .breakglass_rpc()
            .show(BreakGlassShowRequest {
                id: id.into(),
                proof,
            })
            .await;
        r.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    pub async fn breakglass_list(
        &self,
        pending: bool,
        mine: bool,
        to_approve: bool,
    ) -> Result<Vec<BreakGlassRecord>, Error> {
        let r = self
            .breakglass_rpc()
            .list(BreakGlassListRequest {
                pending,
                mine,
                to_approve,
            })
            .await;
        r.map(|r| r.into_inner().requests).map_err(|s| self.err(s))
    }

    /// Approves (or denies) request `record`, as this client received it: the decision is
    /// signed over the digest of exactly those fields.
    pub async fn breakglass_decide(
        &self,
        record: &BreakGlassRecord,
        approve: bool,
        comment: &str,
    ) -> Result<u64, Error> {
        let cluster_id = self.cluster_id().await?;
        let digest = request_digest(&RequestFields {
            cluster_id: &cluster_id,
            id: &record.id,
            requester: &record.requester,
            path: &record.path,
            capability: &record.capability,
            reason: &record.reason,
            ttl_secs: record.ttl_secs,
            requested_at_nanos: record.requested_at,
        });
        let req = BreakGlassDecision {
            id: record.id.clone(),
            approve,
            comment: comment.into(),
            request_digest: digest.to_vec(),
        };
        let r = self
            .breakglass_rpc()
            .decide(self.signed(SignedMethod::BreakGlassDecide, req).await?)
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn breakglass_revoke(&self, id: &str) -> Result<u64, Error> {
        let r = self
            .breakglass_rpc()
            .revoke(
                self.signed(
                    SignedMethod::BreakGlassRevoke,
                    BreakGlassId { id: id.into() },
                )
                .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    /// Commits one use of grant `id` with a fresh use id, spent on `version` (a read grant) or
    /// on the sign request whose SHA-256 is `message_digest` (a sign grant): every holder
    /// then serves that one thing under it.
    pub async fn breakglass_use(
        &self,
        id: &str,
        version: u64,
        message_digest: Vec<u8>,
    ) -> Result<GrantUse, Error> {
        let use_id: String = crate::sign::rand_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let req = BreakGlassUse {
            id: id.into(),
            use_id: use_id.clone(),
            version,
            message_digest,
        };
        let r = self
            .breakglass_rpc()
            .r#use(self.signed(SignedMethod::BreakGlassUse, req).await?)
            .await;
        let index = r.map(|r| r.into_inner().index).map_err(|s| self.err(s))?;
        Ok(GrantUse {
            grant: id.into(),
            use_id,
            index,
        })
    }

    /// The caller's active grant for `capability` on `path` with uses left (the latest one),
    /// if it has one.
    pub async fn breakglass_active_grant(
        &self,
        path: &str,
        capability: &str,
    ) -> Result<Option<String>, Error> {
        let mine = self.breakglass_list(false, true, false).await?;
        Ok(mine
            .into_iter()
            .filter(|r| {
                r.status == "active"
                    && r.path == path
                    && r.capability == capability
                    && r.uses_committed < r.uses_allowed
            })
            .max_by_key(|r| r.granted_at)
            .map(|r| r.id))
    }

    /// Reads `path` under a grant: commits a use of `grant` (or of the caller's active grant for
    /// the path when `grant` is `None`) and reads with it.
    pub async fn kv_get_with_grant(
        &self,
        path: &str,
        version: Option<u64>,
        grant: Option<&str>,
    ) -> Result<crate::KvValue, Error> {
        let grant = match grant {
            Some(g) => g.to_string(),
            None => self
                .breakglass_active_grant(path, "read")
                .await?
                .ok_or_else(|| Error::BreakGlassRequired {
                    path: path.into(),
                    capability: "read".into(),
                    reason: format!(
                        "{path:?} is behind break-glass and you hold no active grant for it; request one with `tessera breakglass request {path} --reason TEXT`"
                    ),
                })?,
        };
        // The version first: the use is committed for that version only.
        let v = self
            .kv_rpc()
            .version(KvVersionRequest {
                path: path.into(),
                version: version.unwrap_or(0),
            })
            .await
            .map_err(|s| self.err(s))?
            .into_inner();
        let under = self.breakglass_use(&grant, v.version, Vec::new()).await?;
        self.kv_get_under(path, Some(v.version), Some(&under)).await
    }

    /// Signs with gated key `name` under a grant: commits a use of `grant` (or of the caller's
    /// active grant for `keys/NAME`) and signs with it.
    pub async fn sign_with_grant(
        &self,
        name: &str,
        request: &tessera_crypto::sign_request::SignRequest,
        grant: Option<&str>,
    ) -> Result<crate::Signed, Error> {
        let path = format!("keys/{name}");
        let grant = match grant {
            Some(g) => g.to_string(),
            None => self
                .breakglass_active_grant(&path, "sign")
                .await?
                .ok_or_else(|| Error::BreakGlassRequired {
                    path: path.clone(),
                    capability: "sign".into(),
                    reason: format!(
                        "{path:?} is behind break-glass and you hold no active grant for it; request one with `tessera breakglass request {path} --capability sign --reason TEXT`"
                    ),
                })?,
        };
        // The use is committed for this request only: the signers sign exactly these bytes.
        let bytes = serde_json::to_vec(request).map_err(|e| Error::Invalid {
            reason: format!("the sign request cannot be encoded: {e}"),
        })?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
        let under = self
            .breakglass_use(&grant, 0, digest.as_ref().to_vec())
            .await?;
        self.sign_under(name, request, Some(&under)).await
    }
}
