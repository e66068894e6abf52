//! The secrets API: topology, writes of dealt versions, metadata, and `ReleaseShares`, through
//! which a holder hands its shares (sealed to the reader's one-time key) to an authorized reader.
//!
//! Every handler authorizes on this node from its own replicated copy (law 2); the audit line is
//! written by `Api::run` (or, for the several items of a release, by `do_release_shares`, one
//! line each) before any answer, and so before any share, leaves the node (law 4).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use tessera_crypto::release;
use tessera_crypto::seal::{Envelope as SealedEnvelope, SealingPublicKey};
use tessera_crypto::value::ValueCiphertext;
use tessera_crypto::vss::Commitments;
use tessera_proto::*;
use tonic::{Request, Response, Status};

use super::{Api, Caller};
use crate::node::LeaderOp;
use crate::policy::Capability;
use crate::state::kv::{self as model_kv, KvPut as KvPutCmd, SecretEntry, VersionEntry};
use crate::state::{topology, Command, Members, Op};

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// How long a write waits for the other holders' receipts before it is submitted without the
/// missing ones (those holders then acknowledge through Raft once they apply it).
const RECEIPT_WAIT: Duration = Duration::from_millis(500);
/// How much longer the other holders get once enough receipts are in.
const RECEIPT_GRACE: Duration = Duration::from_millis(100);
/// Most items one `ReleaseShares` call may carry.
const MAX_RELEASE_ITEMS: usize = 256;

fn bad(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

fn path_arg(path: &str) -> Result<(), Status> {
    model_kv::validate_path(path).map_err(bad)
}

impl Api {
    fn members_now(&self) -> Members {
        let st = self.node.state.read().expect("state lock");
        Members::from_membership(&st.membership)
    }

    pub(super) fn holders(&self, ids: &[u64]) -> Vec<Holder> {
        let members = self.members_now();
        ids.iter()
            .filter_map(|id| {
                let n = members.all.get(id)?;
                Some(Holder {
                    id: *id,
                    address: n.addr.clone(),
                    region: n.region.clone(),
                    sealing_key: hex::decode(&n.sealing_key).unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Runs `f` on the secret at `path` under the state lock. Entries hold up to
    /// `max_versions` ciphertexts of up to 1 MiB each, so handlers take only what they need
    /// rather than cloning the entry.
    fn with_secret<R>(&self, path: &str, f: impl FnOnce(&SecretEntry) -> R) -> Option<R> {
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

    pub(super) async fn do_topology(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<TopologyReply>, Status> {
        // Public data (who holds shares, their addresses, regions and public keys): any client
        // with a certificate from the cluster CA may see it, and it is audited like everything.
        self.run(
            req,
            "topology",
            "sys/topology".into(),
            |_id, _| async move {
                self.node.linearizable().await?;
                let members = self.members_now();
                let settings = self.model().settings;
                let counts = members.region_counts();
                let t = settings.threshold.unwrap_or(0);
                let a = topology::assess(&counts, t as usize);
                let ids: Vec<u64> = members.voters.keys().copied().collect();
                Ok(TopologyReply {
                    cluster_id: self.node.config.cluster_id.clone(),
                    threshold: t,
                    acks_required: settings.acks_required(ids.len()) as u32,
                    holders: self.holders(&ids),
                    region: self.node.config.region.clone(),
                    allow_unsafe_topology: settings.allow_unsafe_topology,
                    survives_region_loss: a.survives_region_loss,
                    no_region_alone: a.no_region_alone,
                    holders_per_region: counts.into_iter().map(|(r, c)| (r, c as u32)).collect(),
                    leader: self
                        .node
                        .raft
                        .metrics()
                        .borrow()
                        .current_leader
                        .unwrap_or(0),
                })
            },
        )
        .await
    }

    pub(super) async fn do_kv_put(
        &self,
        req: Request<KvPutRequest>,
    ) -> Result<Response<KvPutReply>, Status> {
        let path = req.get_ref().path.clone();
        self.run(req, "kv.put", path.clone(), |id, r| async move {
            path_arg(&r.path)?;
            let cap = if self.secret_exists(&r.path) {
                Capability::Update
            } else {
                Capability::Create
            };
            self.authorize(&id, &r.path, cap).await?;
            let nonce: [u8; 12] = r
                .nonce
                .as_slice()
                .try_into()
                .map_err(|_| bad(format!("nonce is {} bytes, expected 12", r.nonce.len())))?;
            let mut commitments = Vec::with_capacity(r.commitments.len());
            for (i, c) in r.commitments.iter().enumerate() {
                commitments.push(<[u8; 32]>::try_from(c.as_slice()).map_err(|_| {
                    bad(format!(
                        "commitments: point {i} is {} bytes, expected 32",
                        c.len()
                    ))
                })?);
            }
            let mut envelopes = Vec::with_capacity(r.envelopes.len());
            for (i, e) in r.envelopes.iter().enumerate() {
                let enc: [u8; 32] = e.enc.as_slice().try_into().map_err(|_| {
                    bad(format!(
                        "envelope {i}: encapsulated key is {} bytes, expected 32",
                        e.enc.len()
                    ))
                })?;
                envelopes.push(SealedEnvelope {
                    enc,
                    ciphertext: e.ciphertext.clone(),
                });
            }
            let put = KvPutCmd {
                path: r.path.clone(),
                version: r.version,
                cas: r.cas,
                time: now(),
                ciphertext: ValueCiphertext {
                    nonce,
                    ciphertext: r.ciphertext,
                },
                commitments: Commitments(commitments),
                threshold: r.threshold,
                holders: r.holders,
                envelopes,
                receipts: Vec::new(),
            };
            let version = put.version;
            let mut cmd = Command {
                by: id,
                op: Op::KvPut(Box::new(put)),
            };
            // Checked here for a clear, early error; the state machine checks again when it
            // applies the write, against the state every node agrees on. A refusal may come
            // from a copy that lags (the client dealt for a version this node has not seen
            // yet), so it is decided again after catching up.
            if self.validate(&cmd).is_err() {
                self.node.linearizable().await?;
                self.validate(&cmd)?;
            }
            let started = Instant::now();
            // The holders check their shares before anything is stored, and their receipts ride
            // in the write: it needs no second Raft round for acknowledgements.
            if let Op::KvPut(p) = &mut cmd.op {
                p.receipts = self.gather_receipts(p).await?;
            }
            let path = r.path.clone();
            self.node.on_leader(LeaderOp::Command(cmd)).await?;
            let acks = self.wait_for_acks(&path, version).await?;
            self.node
                .metrics
                .ack_wait
                .observe(started.elapsed().as_secs_f64());
            Ok(KvPutReply { version, acks })
        })
        .await
    }

    /// Receipts for a write about to be submitted: this node's own and those of the other
    /// holders, asked at once. A holder that finds its share bad refuses the write here, before
    /// anything is stored. One that cannot be reached in time is left out: it acknowledges
    /// through Raft when it applies the write, as a holder that was down does.
    async fn gather_receipts(&self, p: &KvPutCmd) -> Result<Vec<(u64, Vec<u8>)>, Status> {
        let need = {
            let st = self.node.state.read().expect("state lock");
            st.model.settings.acks_required(p.holders.len())
        };
        let members = self.members_now();
        let cluster_id = self.node.config.cluster_id.as_str();
        let commitments: Vec<Vec<u8>> = p.commitments.0.iter().map(|c| c.to_vec()).collect();
        let mut asks = tokio::task::JoinSet::new();
        for (h, env) in p.holders.iter().zip(&p.envelopes) {
            if *h == self.node.id {
                continue;
            }
            let (Some(info), id) = (members.all.get(h), *h) else {
                continue;
            };
            let Ok(queue) = self.node.peers.receipts(id, &info.addr) else {
                continue;
            };
            let req = ReceiptRequest {
                path: p.path.clone(),
                version: p.version,
                commitments: commitments.clone(),
                holders: p.holders.clone(),
                envelope: Some(Envelope {
                    enc: env.enc.to_vec(),
                    ciphertext: env.ciphertext.clone(),
                }),
            };
            asks.spawn(async move {
                let answer = queue.send(req).await.unwrap_or_else(|_| {
                    Err(Status::unavailable(
                        "the receipt queue for this holder closed",
                    ))
                });
                (id, answer)
            });
        }
        // This node's own share is checked now; its receipt is signed once the others are
        // in, together with those of other writes gathered meanwhile (`OwnTicket`).
        let own = match p.holders.iter().position(|h| *h == self.node.id) {
            Some(pos) => {
                let statement = self
                    .node
                    .vault
                    .check_for_receipt(
                        &p.path,
                        p.version,
                        &p.commitments,
                        &p.holders,
                        &p.envelopes[pos],
                    )
                    .map_err(|e| {
                        bad(format!(
                            "envelope for node {} (this node): {e}",
                            self.node.id
                        ))
                    })?;
                Some(self.node.vault.file_own_receipt(statement))
            }
            None => None,
        };
        let mut receipts = Vec::with_capacity(p.holders.len());
        let deadline = tokio::time::Instant::now() + RECEIPT_WAIT;
        // Once enough receipts are in, the others get a little longer: a holder's refusal then
        // still stops a bad write before anything is stored, and a late receipt saves that
        // holder an acknowledgement round through Raft.
        let mut until = deadline;
        loop {
            if receipts.len() + usize::from(own.is_some()) >= need && until == deadline {
                until = deadline.min(tokio::time::Instant::now() + RECEIPT_GRACE);
            }
            match tokio::time::timeout_at(until, asks.join_next()).await {
                Ok(Some(Ok((id, Ok(receipt))))) => {
                    // Checked here as every node checks it on apply: a receipt that does not
                    // verify (a faulty or hostile holder) is left out instead of having the
                    // whole write refused on apply, and apply finds the others verified.
                    // Receipts a holder signed together cost one verification for all.
                    match model_kv::check_receipt(&members, cluster_id, p, id, &receipt) {
                        Ok(()) => receipts.push((id, receipt)),
                        Err(e) => {
                            tracing::warn!(node = id, error = %e, "left out a receipt that does not verify")
                        }
                    }
                }
                Ok(Some(Ok((id, Err(s))))) if s.code() == tonic::Code::InvalidArgument => {
                    return Err(bad(format!(
                        "node {id} refused its share of this write: {}; nothing was stored",
                        s.message()
                    )));
                }
                Ok(Some(Ok((id, Err(s))))) => {
                    tracing::debug!(node = id, error = %s.message(), "no receipt from holder");
                }
                Ok(Some(Err(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
        if let Some(own) = own {
            receipts.insert(0, (self.node.id, own.receipt()));
        }
        Ok(receipts)
    }

    /// Waits until `t + f` holders acknowledged the version, or a holder complained.
    async fn wait_for_acks(&self, path: &str, version: u64) -> Result<u32, Status> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut rx = self.node.applied.clone();
        loop {
            {
                let st = self.node.state.read().expect("state lock");
                if let Some(v) = st
                    .model
                    .secrets
                    .get(path)
                    .and_then(|e| e.versions.get(&version))
                {
                    if let Some((node, why)) = v.complaints.iter().next() {
                        return Err(Status::failed_precondition(format!(
                            "version {version} of {path:?} is invalid: node {node} reports that its share {why}"
                        )));
                    }
                    let need = st.model.settings.acks_required(v.holders.len());
                    if v.acks.len() >= need {
                        return Ok(v.acks.len() as u32);
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                let have = self
                    .with_secret(path, |e| e.versions.get(&version).map(|v| v.acks.len()))
                    .flatten()
                    .unwrap_or(0);
                return Err(Status::unavailable(format!(
                    "version {version} of {path:?} is written but only {have} holders acknowledged within 15 s; it becomes readable when enough holders catch up"
                )));
            }
        }
    }

    pub(super) async fn do_kv_metadata(
        &self,
        req: Request<PathRequest>,
    ) -> Result<Response<KvMetadataReply>, Status> {
        let path = req.get_ref().path.clone();
        self.run(req, "kv.metadata", path.clone(), |id, r| async move {
            path_arg(&r.path)?;
            self.authorize(&id, &r.path, Capability::Read).await?;
            self.node.linearizable().await?;
            self.with_secret(&r.path, |e| KvMetadataReply {
                path: r.path.clone(),
                current_version: e.current_version,
                created_time: e.created_time.clone(),
                updated_time: e.updated_time.clone(),
                max_versions: e.max_versions(),
                cas_required: e.cas_required,
                custom_metadata: e.custom_metadata.clone().into_iter().collect(),
                versions: e
                    .versions
                    .iter()
                    .map(|(n, v)| VersionInfo {
                        version: *n,
                        created_time: v.created_time.clone(),
                        created_by: v.created_by.clone(),
                        deletion_time: v.deletion_time.clone().unwrap_or_default(),
                        destroyed: v.destroyed,
                        acks: v.acks.keys().copied().collect(),
                        holders: v.holders.clone(),
                        threshold: v.threshold,
                        valid: v.is_valid(),
                        complaints: v.complaints.keys().copied().collect(),
                        pending: v.envelopes.keys().copied().collect(),
                    })
                    .collect(),
            })
            .ok_or_else(|| Status::not_found(format!("no secret at {:?}", r.path)))
        })
        .await
    }

    /// Looks up a readable version, with an error that says why when it is not.
    fn readable(&self, path: &str, version: u64) -> Result<(u64, VersionEntry), Status> {
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
            .ok_or_else(|| Status::not_found(format!("no secret at {path:?}")))?;
        let v = v.ok_or_else(|| {
            Status::not_found(format!(
                "{path:?} has no version {n} (never written, or pruned beyond max_versions)"
            ))
        })?;
        if v.destroyed {
            return Err(Status::not_found(format!(
                "version {n} of {path:?} is destroyed"
            )));
        }
        if let Some(t) = &v.deletion_time {
            return Err(Status::not_found(format!(
                "version {n} of {path:?} was deleted at {t}; `tessera kv undelete {path} --versions {n}` restores it"
            )));
        }
        if let Some((node, why)) = v.complaints.iter().next() {
            return Err(Status::failed_precondition(format!(
                "version {n} of {path:?} is invalid and never served: node {node} reported that its share {why}"
            )));
        }
        Ok((n, v))
    }

    pub(super) async fn do_kv_version(
        &self,
        req: Request<KvVersionRequest>,
    ) -> Result<Response<KvVersionReply>, Status> {
        let path = req.get_ref().path.clone();
        self.run(req, "kv.version", path.clone(), |id, r| async move {
            path_arg(&r.path)?;
            self.authorize(&id, &r.path, Capability::Read).await?;
            // A version, once written, never changes its value: without a quorum this node may
            // still serve what it has applied (flagged as stale), so reads survive as long as
            // t holders do. Each holder still checks everything itself before releasing.
            let stale = match self.node.linearizable().await {
                Ok(()) => false,
                Err(e) => {
                    tracing::warn!("serving version metadata from local state: {}", e.message());
                    true
                }
            };
            let (n, v) = self.readable(&r.path, r.version)?;
            Ok(self.version_reply(r.path, n, v, true, stale))
        })
        .await
    }

    /// The public metadata of one version (the ciphertext only when asked: one holder sends it).
    fn version_reply(
        &self,
        path: String,
        n: u64,
        v: VersionEntry,
        with_ciphertext: bool,
        stale: bool,
    ) -> KvVersionReply {
        let ct = v
            .ciphertext
            .filter(|_| with_ciphertext)
            .unwrap_or(ValueCiphertext {
                nonce: [0; 12],
                ciphertext: Vec::new(),
            });
        KvVersionReply {
            path,
            version: n,
            nonce: ct.nonce.to_vec(),
            ciphertext: ct.ciphertext,
            commitments: v.commitments.0.iter().map(|c| c.to_vec()).collect(),
            threshold: v.threshold,
            holders: self.holders(&v.holders),
            index: v.index,
            cluster_id: self.node.config.cluster_id.clone(),
            region: self.node.config.region.clone(),
            stale,
        }
    }

    /// Releases to one reader, item by item. Each item is authorized, checked and audited on
    /// its own, exactly as a lone release would be (laws 2 and 4): one audit line per item,
    /// all made durable before the reply leaves. What the items share is the caller's
    /// identity, one audit sync and one HPKE context to the reader's one-time key.
    pub(super) async fn do_release_shares(
        &self,
        req: Request<ReleaseSharesRequest>,
    ) -> Result<Response<ReleaseSharesReply>, Status> {
        let started = Instant::now();
        let (caller, identity) = Caller::of(&req);
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
                let record = caller.record("kv.release_shares", String::new(), Some(&e), None);
                let audited = self.node.audit(record).await;
                self.observe("kv.release_shares", Some(&e), &audited, started);
                audited?;
                return Err(e);
            }
        };
        // A one-round read trusts the leader's answer for "which version is the latest", and
        // only while its lease holds (then it has applied everything committed).
        let confirmed =
            r.items.iter().any(|i| i.with_metadata) && self.node.leader_lease_barrier().await;
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
            records.push(caller.record(
                "kv.release_share",
                item.path.clone(),
                res.as_ref().err(),
                None,
            ));
            items.push(match res {
                Ok(released) => {
                    errors.push(None);
                    released
                }
                Err(s) => {
                    let refused = ReleasedShare {
                        version: item.version,
                        error_code: s.code() as u32,
                        error: s.message().to_string(),
                        ..Default::default()
                    };
                    errors.push(Some(s));
                    refused
                }
            });
        }
        let audited = self.node.audit_all(records).await;
        for e in &errors {
            self.observe("kv.release_share", e.as_ref(), &audited, started);
            let outcome = match (&audited, e) {
                (Err(_), _) => "refused",
                (Ok(()), None) => "released",
                (Ok(()), Some(s)) if s.code() == tonic::Code::PermissionDenied => "denied",
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

    /// One item of a release: law 2 on this node, then its share sealed for this item.
    async fn release_item(
        &self,
        identity: &str,
        sealer: &release::Sealer,
        position: u32,
        r: &ReleaseItem,
        confirmed: bool,
    ) -> Result<ReleasedShare, Status> {
        path_arg(&r.path)?;
        // Law 2: this node checks identity and policy itself...
        self.authorize(identity, &r.path, Capability::Read).await?;
        if r.version == 0 && !r.with_metadata {
            return Err(bad(
                "name the version to release (the reader learns it from the metadata)",
            ));
        }
        // ...at an applied index no older than the version.
        self.node
            .wait_applied(r.min_index, Duration::from_secs(5))
            .await?;
        let (n, v) = self.readable(&r.path, r.version)?;
        if v.share_index(self.node.id).is_none() {
            return Err(Status::failed_precondition(format!(
                "node {} holds no share of version {n} of {:?}",
                self.node.id, r.path
            )));
        }
        let share = self
            .node
            .vault
            .share_for_release(&r.path, n)
            .map_err(Status::unavailable)?;
        let item = release::Item {
            position,
            path: &r.path,
            version: n,
        };
        let sealed_share = sealer
            .seal(&item, &share.to_bytes())
            .map_err(|e| Status::internal(e.to_string()))?;
        let metadata = r
            .with_metadata
            .then(|| self.version_reply(r.path.clone(), n, v, r.with_ciphertext, !confirmed));
        Ok(ReleasedShare {
            version: n,
            share_index: u32::from(share.index),
            sealed_share,
            metadata,
            error_code: 0,
            error: String::new(),
        })
    }

    pub(super) async fn do_kv_list(
        &self,
        req: Request<PathRequest>,
    ) -> Result<Response<ListReply>, Status> {
        let mut prefix = req.get_ref().path.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        self.run(req, "kv.list", prefix.clone(), |id, _| async move {
            self.authorize(&id, &prefix, Capability::List).await?;
            self.node.linearizable().await?;
            let st = self.node.state.read().expect("state lock");
            let names: BTreeSet<String> = st
                .model
                .secrets
                .range(prefix.clone()..)
                .take_while(|(p, _)| p.starts_with(&prefix))
                .map(|(p, _)| {
                    let rest = &p[prefix.len()..];
                    match rest.find('/') {
                        Some(i) => rest[..=i].to_string(),
                        None => rest.to_string(),
                    }
                })
                .collect();
            Ok(ListReply {
                names: names.into_iter().collect(),
            })
        })
        .await
    }

    async fn versions_op(
        &self,
        req: Request<KvVersionsRequest>,
        operation: &'static str,
        cap: Capability,
        make: fn(String, Vec<u64>) -> Op,
    ) -> Result<Response<WriteReply>, Status> {
        let path = req.get_ref().path.clone();
        self.run(req, operation, path, |id, r| async move {
            path_arg(&r.path)?;
            self.authorize(&id, &r.path, cap).await?;
            let mut versions = r.versions;
            if versions.is_empty() && operation == "kv.delete" {
                if let Some(current) = self.with_secret(&r.path, |e| e.current_version) {
                    versions.push(current);
                }
            }
            self.submit(id, make(r.path, versions)).await
        })
        .await
    }

    pub(super) async fn do_kv_delete(
        &self,
        req: Request<KvVersionsRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.versions_op(req, "kv.delete", Capability::Delete, |path, versions| {
            Op::KvDelete {
                path,
                versions,
                time: now(),
            }
        })
        .await
    }

    pub(super) async fn do_kv_undelete(
        &self,
        req: Request<KvVersionsRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.versions_op(req, "kv.undelete", Capability::Update, |path, versions| {
            Op::KvUndelete { path, versions }
        })
        .await
    }

    pub(super) async fn do_kv_destroy(
        &self,
        req: Request<KvVersionsRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.versions_op(req, "kv.destroy", Capability::Delete, |path, versions| {
            Op::KvDestroy { path, versions }
        })
        .await
    }

    pub(super) async fn do_kv_metadata_put(
        &self,
        req: Request<KvMetadataPutRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = req.get_ref().path.clone();
        self.run(req, "kv.metadata_put", path, |id, r| async move {
            path_arg(&r.path)?;
            let cap = if self.secret_exists(&r.path) {
                Capability::Update
            } else {
                Capability::Create
            };
            self.authorize(&id, &r.path, cap).await?;
            let custom = if r.replace_custom_metadata || !r.custom_metadata.is_empty() {
                Some(r.custom_metadata.into_iter().collect())
            } else {
                None
            };
            self.submit(
                id,
                Op::KvMetadataPut {
                    path: r.path,
                    max_versions: r.max_versions,
                    cas_required: r.cas_required,
                    custom_metadata: custom,
                    time: now(),
                },
            )
            .await
        })
        .await
    }

    pub(super) async fn do_kv_metadata_delete(
        &self,
        req: Request<PathRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = req.get_ref().path.clone();
        self.run(req, "kv.metadata_delete", path, |id, r| async move {
            path_arg(&r.path)?;
            self.authorize(&id, &r.path, Capability::Delete).await?;
            self.submit(id, Op::KvMetadataDelete { path: r.path }).await
        })
        .await
    }

    pub(super) async fn do_report_bad_share(
        &self,
        req: Request<BadShareReport>,
    ) -> Result<Response<Empty>, Status> {
        let path = req.get_ref().path.clone();
        let node = req.get_ref().node_id;
        let detail = format!(
            "node {node} released a share of version {} that does not verify",
            req.get_ref().version
        );
        self.run_detailed(req, "kv.bad_share_report", path, Some(detail), |id, r| async move {
            self.authorize(&id, &r.path, Capability::Read).await?;
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

    pub(super) async fn do_config_set(
        &self,
        req: Request<ConfigSetRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        self.run(req, "config.set", "sys/config".into(), |id, r| async move {
            self.authorize(&id, "sys/config", Capability::Admin).await?;
            if r.threshold.is_none()
                && r.ack_fault_tolerance.is_none()
                && r.allow_unsafe_topology.is_none()
            {
                return Err(bad("nothing to set"));
            }
            let op = Op::SetSettings {
                threshold: r.threshold,
                ack_fault_tolerance: r.ack_fault_tolerance,
                allow_unsafe_topology: r.allow_unsafe_topology,
            };
            self.submit(id, op).await
        })
        .await
    }

    pub(super) async fn do_shares(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<SharesReply>, Status> {
        self.run(
            req,
            "shares.list",
            "sys/shares".into(),
            |id, _| async move {
                self.authorize(&id, "sys/shares", Capability::Admin).await?;
                // Report at least every acknowledged write: a holder stores its share when it
                // applies a write, which can follow the write's answer by a round trip. A node
                // cut off from the leader reports what it holds now.
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), self.node.linearizable()).await;
                let st = self.node.state.read().expect("state lock");
                let shares = self
                    .node
                    .vault
                    .list()
                    .into_iter()
                    .map(|(path, version)| {
                        let index = st
                            .model
                            .secrets
                            .get(&path)
                            .and_then(|e| e.versions.get(&version))
                            .and_then(|v| v.share_index(self.node.id))
                            .unwrap_or(0);
                        HeldShare {
                            path,
                            version,
                            share_index: index as u32,
                        }
                    })
                    .collect();
                // Signing-key shares appear as `keys/NAME`, version = generation, index = node id.
                let mut shares: Vec<HeldShare> = shares;
                for (name, attempt) in self.node.vault.key_shares() {
                    shares.push(HeldShare {
                        path: format!("keys/{name}"),
                        version: attempt,
                        share_index: self.node.id as u32,
                    });
                }
                Ok(SharesReply {
                    node_id: self.node.id,
                    shares,
                })
            },
        )
        .await
    }
}
