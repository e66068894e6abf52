//! The `Kv` service: writes of dealt versions, metadata, listing, soft delete and destroy, and
//! `ReleaseShares`, through which a holder hands its shares (sealed to the reader's one-time
//! key) to an authorized reader.
//!
//! Every handler authorizes on this node from its own replicated copy (law 2); the audit line is
//! written by `Api::run` (or, for the several items of a release, by `release_shares`, one
//! line each) before any answer, and so before any share, leaves the node (law 4).

mod share_release;
mod write;

use std::collections::BTreeSet;
use std::time::Instant;

use tessera_crypto::release;
use tessera_crypto::seal::SealingPublicKey;
use tessera_proto::kv_server::Kv;
use tessera_proto::*;
use tonic::{Request, Response, Status};

use super::convert::metadata_reply;
use super::Api;
use crate::audit::Operation;
use crate::error::{wire, Refusal};
use crate::policy::Capability;
use crate::raft::leader::LeaderOp;
use crate::state::authority::Gates;
use crate::state::intent::{self, Filled};
use crate::state::kv::{self as model_kv, SecretEntry};
use crate::state::{Op, Timestamp};

/// Most items one `ReleaseShares` call may carry.
const MAX_RELEASE_ITEMS: usize = 256;

pub(super) fn bad(msg: impl Into<String>) -> Refusal {
    Refusal::invalid(msg)
}

pub(super) fn path_arg(path: &str) -> Result<(), Refusal> {
    model_kv::validate_path(path)
}

impl Api {
    /// Runs `f` on the secret at `path` under the state lock. Entries hold up to
    /// `max_versions` ciphertexts of up to 1 MiB each, so handlers take only what they need
    /// rather than cloning the entry.
    pub(super) fn with_secret<R>(
        &self,
        path: &str,
        f: impl FnOnce(&SecretEntry) -> R,
    ) -> Option<R> {
        self.node
            .state
            .read()
            .expect("state lock")
            .model
            .secrets
            .get(path)
            .map(f)
    }

    fn secret_exists(&self, path: &str) -> bool {
        self.with_secret(path, |_| ()).is_some()
    }

    async fn versions_op(
        &self,
        req: Request<KvVersionsRequest>,
        operation: Operation,
        cap: Capability,
        make: fn(String, Vec<u64>) -> Op,
    ) -> Result<Response<WriteReply>, Status> {
        let path = req.get_ref().path.clone();
        self.run(req, operation, path, |id, r| async move {
            path_arg(&r.path)?;
            self.authorize(&id, &r.path, cap).await?;
            // No versions in a delete means the current one, decided on apply.
            self.submit(id, make(r.path, r.versions)).await
        })
        .await
    }
}

#[tonic::async_trait]
impl Kv for Api {
    async fn put(&self, req: Request<KvPutRequest>) -> Result<Response<KvPutReply>, Status> {
        let path = req.get_ref().path.clone();
        self.run(req, Operation::KvPut, path.clone(), |id, r| async move {
            path_arg(&r.path)?;
            let cap = if self.secret_exists(&r.path) {
                Capability::Update
            } else {
                Capability::Create
            };
            self.authorize(&id, &r.path, cap).await?;
            let path = r.path.clone();
            let filled = Filled {
                time: Timestamp::now(),
                ..Filled::default()
            };
            let op = intent::kv_put(r, filled)?;
            let version = match &op {
                Op::KvPut(p) => p.version,
                _ => unreachable!("kv_put makes a KvPut"),
            };
            let mut cmd = id.command(op);
            // Checked here for a clear, early error; the state machine checks again when it
            // applies the write, against the state every node agrees on. A refusal may come
            // from a copy that lags (the client dealt for a version this node has not seen
            // yet), so it is decided again after catching up.
            if self.validate(&cmd).is_err() {
                self.node.reads.linearizable().await?;
                self.validate(&cmd)?;
            }
            let started = Instant::now();
            // The holders check their shares before anything is stored, and their receipts ride
            // in the write: it needs no second Raft round for acknowledgements.
            if let Op::KvPut(p) = &mut cmd.op {
                p.receipts = self.gather_receipts(p).await?;
            }
            if crate::byzantine::withhold_signed(&cmd) {
                return Err(Refusal::unavailable(
                    "TEST BUILD: this node held the request back",
                ));
            }
            self.node.leader.submit(LeaderOp::Command(cmd)).await?;
            let acks = self.wait_for_acks(&path, version).await?;
            self.node
                .metrics
                .ack_wait
                .observe(started.elapsed().as_secs_f64());
            Ok(KvPutReply { version, acks })
        })
        .await
    }

    async fn metadata(
        &self,
        req: Request<PathRequest>,
    ) -> Result<Response<KvMetadataReply>, Status> {
        let path = req.get_ref().path.clone();
        self.run(
            req,
            Operation::KvMetadata,
            path.clone(),
            |id, r| async move {
                path_arg(&r.path)?;
                // Metadata is not gated by break-glass: it holds no share.
                self.authorize_with(&id, &r.path, Capability::Read, Gates::SetAside)
                    .await?;
                self.node.reads.linearizable().await?;
                self.with_secret(&r.path, |e| metadata_reply(&r.path, e))
                    .ok_or_else(|| Refusal::not_found(format!("no secret at {:?}", r.path)))
            },
        )
        .await
    }

    async fn version(
        &self,
        req: Request<KvVersionRequest>,
    ) -> Result<Response<KvVersionReply>, Status> {
        let path = req.get_ref().path.clone();
        self.run(
            req,
            Operation::KvVersion,
            path.clone(),
            |id, r| async move {
                path_arg(&r.path)?;
                // Public metadata (commitments, holders, the ciphertext under a key no node
                // holds): not gated by break-glass, whose gate is each holder's release.
                self.authorize_with(&id, &r.path, Capability::Read, Gates::SetAside)
                    .await?;
                // A version, once written, never changes its value: without a quorum this node may
                // still serve what it has applied (flagged as stale), so reads survive as long as
                // t holders do. Each holder still checks everything itself before releasing.
                let stale = match self.node.reads.linearizable().await {
                    Ok(()) => false,
                    Err(e) => {
                        tracing::warn!("serving version metadata from local state: {e}");
                        true
                    }
                };
                let (n, v) = self.readable(&r.path, r.version)?;
                Ok(self.version_reply(r.path, n, v, true, stale))
            },
        )
        .await
    }

    /// Releases to one reader, item by item. Each item is authorized, checked and audited on
    /// its own, exactly as a lone release would be (laws 2 and 4): one audit line per item,
    /// all made durable before the reply leaves. What the items share is the caller's
    /// identity, one audit sync and one HPKE context to the reader's one-time key.
    async fn release_shares(
        &self,
        req: Request<ReleaseSharesRequest>,
    ) -> Result<Response<ReleaseSharesReply>, Status> {
        let started = Instant::now();
        let (caller, identity) = self.caller(&req);
        let r = req.into_inner();
        let setup = identity.and_then(|id| {
            if r.items.is_empty() || r.items.len() > MAX_RELEASE_ITEMS {
                return Err(bad(format!(
                    "items: {} given; a release takes 1 to {MAX_RELEASE_ITEMS}",
                    r.items.len()
                )));
            }
            let reader = SealingPublicKey::from_slice(&r.reader_key)
                .map_err(|e| bad(format!("reader_key: {e}")))?;
            let reply = release::Reply {
                cluster_id: &self.node.config.cluster_id,
                node_id: self.node.id,
            };
            let sealer = release::Sealer::new(&reader, &reply)
                .map_err(|e| bad(format!("reader_key: {e}")))?;
            Ok((id, sealer))
        });
        let (identity, sealer) = match setup {
            Ok(s) => s,
            Err(e) => {
                // Nothing is released: one line for the whole call.
                let record =
                    caller.record(Operation::KvReleaseShares, String::new(), Some(&e), None);
                let audited = self.node.audit.append(record).await;
                self.observe(Operation::KvReleaseShares, Some(&e), &audited, started);
                audited?;
                return Err(e.into());
            }
        };
        // A one-round read trusts the leader's answer for "which version is the latest", and
        // only while its lease holds (then it has applied everything committed).
        let confirmed =
            r.items.iter().any(|i| i.with_metadata) && self.node.reads.leader_lease_barrier().await;
        // Items are worked on together, so that one that waits (to catch up to its
        // `min_index`, or to confirm a denial with the leader) does not hold up the others.
        let results =
            futures::future::join_all(r.items.iter().enumerate().map(|(position, item)| {
                self.release_item(&identity, &sealer, position as u32, item, confirmed)
            }))
            .await;
        let mut items = Vec::with_capacity(r.items.len());
        let mut records = Vec::with_capacity(r.items.len());
        let mut errors = Vec::with_capacity(r.items.len());
        for (item, res) in r.items.iter().zip(results) {
            let (res, detail) = match res {
                Ok((released, detail)) => (Ok(released), detail),
                Err(e) => (Err(e), None),
            };
            // Under a grant (asked for or refused), the line names it.
            let detail = detail.or_else(|| {
                (!item.grant.is_empty())
                    .then(|| format!("break-glass grant {} use {}", item.grant, item.use_id))
            });
            records.push(caller.record(
                Operation::KvReleaseShare,
                item.path.clone(),
                res.as_ref().err(),
                detail,
            ));
            items.push(match res {
                Ok(released) => {
                    errors.push(None);
                    released
                }
                Err(e) => {
                    let refused = ReleasedShare {
                        version: item.version,
                        refusal: Some(wire::to_proto(&e)),
                        ..Default::default()
                    };
                    errors.push(Some(e));
                    refused
                }
            });
        }
        let audited = self.node.audit.append_all(records).await;
        for e in &errors {
            self.observe(Operation::KvReleaseShare, e.as_ref(), &audited, started);
            let outcome = match (&audited, e) {
                (Err(_), _) => "refused",
                (Ok(()), None) => "released",
                (Ok(()), Some(e)) if e.is_denial() => "denied",
                (Ok(()), Some(_)) => "refused",
            };
            self.node
                .metrics
                .share_releases
                .with_label_values(&[outcome])
                .inc();
        }
        // Law 4: no audit, no share.
        audited?;
        Ok(Response::new(ReleaseSharesReply {
            node_id: self.node.id,
            enc: sealer.enc().to_vec(),
            items,
        }))
    }

    async fn list(&self, req: Request<KvListRequest>) -> Result<Response<ListReply>, Status> {
        let rotate_required = req.get_ref().rotate_required;
        let mut prefix = req.get_ref().path.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        self.run(req, Operation::KvList, prefix.clone(), |id, _| async move {
            self.authorize(&id, &prefix, Capability::List).await?;
            self.node.reads.linearizable().await?;
            let st = self.node.state.read().expect("state lock");
            let names: BTreeSet<String> = st
                .model
                .secrets
                .range(prefix.clone()..)
                .take_while(|(p, _)| p.starts_with(&prefix))
                .filter(|(_, e)| {
                    !rotate_required
                        || e.versions
                            .get(&e.current_version)
                            .is_some_and(|v| v.rotate_required.is_some())
                })
                .map(|(p, _)| {
                    let rest = &p[prefix.len()..];
                    match rest.find('/') {
                        Some(i) if !rotate_required => rest[..=i].to_string(),
                        _ => rest.to_string(),
                    }
                })
                .collect();
            Ok(ListReply {
                names: names.into_iter().collect(),
            })
        })
        .await
    }

    async fn delete(
        &self,
        req: Request<KvVersionsRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.versions_op(
            req,
            Operation::KvDelete,
            Capability::Delete,
            |path, versions| Op::KvDelete {
                path,
                versions,
                time: Timestamp::now(),
            },
        )
        .await
    }

    async fn undelete(
        &self,
        req: Request<KvVersionsRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.versions_op(
            req,
            Operation::KvUndelete,
            Capability::Update,
            |path, versions| Op::KvUndelete { path, versions },
        )
        .await
    }

    async fn destroy(
        &self,
        req: Request<KvVersionsRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.versions_op(
            req,
            Operation::KvDestroy,
            Capability::Delete,
            |path, versions| Op::KvDestroy { path, versions },
        )
        .await
    }

    async fn metadata_put(
        &self,
        req: Request<KvMetadataPutRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = req.get_ref().path.clone();
        self.run(req, Operation::KvMetadataPut, path, |id, r| async move {
            path_arg(&r.path)?;
            let cap = if self.secret_exists(&r.path) {
                Capability::Update
            } else {
                Capability::Create
            };
            self.authorize(&id, &r.path, cap).await?;
            self.submit(id, intent::metadata_put(r, Timestamp::now()))
                .await
        })
        .await
    }

    async fn metadata_delete(
        &self,
        req: Request<PathRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = req.get_ref().path.clone();
        self.run(req, Operation::KvMetadataDelete, path, |id, r| async move {
            path_arg(&r.path)?;
            self.authorize(&id, &r.path, Capability::Delete).await?;
            self.submit(id, Op::KvMetadataDelete { path: r.path }).await
        })
        .await
    }

    async fn report_bad_share(
        &self,
        req: Request<BadShareReport>,
    ) -> Result<Response<Empty>, Status> {
        let path = req.get_ref().path.clone();
        let node = req.get_ref().node_id;
        let detail = format!(
            "node {node} released a share of version {} that does not verify",
            req.get_ref().version
        );
        self.run_detailed(req, Operation::KvBadShareReport, path, Some(detail), |id, r| async move {
            self.authorize_with(&id, &r.path, Capability::Read, Gates::SetAside).await?;
            tracing::warn!(node = r.node_id, path = %r.path, version = r.version, reason = %r.reason, reporter = %id, "a reader reports a share that does not verify");
            self.node
                .metrics
                .bad_shares
                .with_label_values(&[&node.to_string()])
                .inc();
            Ok(Empty {})
        })
        .await
    }
}
