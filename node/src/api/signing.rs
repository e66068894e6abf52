//! The `Signing` service: creating a key (a DKG among the voters, through Raft) and the two FROST
//! rounds each signer serves. The client coordinates a signature and aggregates it; each signer
//! checks the caller's `sign` capability on `keys/NAME` and the request itself, audits, and only
//! then returns its share (laws 2 and 4). Nonces stay in this node's memory and are used once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use tessera_crypto::frost;
use tessera_crypto::sign_request::SignRequest;
use tessera_proto::signing_server::Signing;
use tessera_proto::*;
use tonic::{Request, Response, Status};

use super::convert::status_str;
use super::grant::UnderGrant;
use super::Api;
use crate::audit::Operation;
use crate::error::{wire, Refusal};
use crate::policy::Capability;
use crate::signing::nonces::MAX_NONCE_BATCH;
use crate::state::authority::Gates;
use crate::state::breakglass::UseTarget;
use crate::state::intent;
use crate::state::keys::{KeyEntry, KeyStatus};
use crate::state::Timestamp;
use sha2::{Digest, Sha256};

/// Most signature shares one call may ask for.
pub const MAX_SIGN_ITEMS: usize = 256;

fn now_unix() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp() as u64
}

impl Api {
    fn key(&self, name: &str) -> Result<KeyEntry, Refusal> {
        self.node
            .state
            .read()
            .expect("state lock")
            .model
            .keys
            .get(name)
            .cloned()
            .ok_or_else(|| Refusal::not_found(format!("no key {name:?}")))
    }

    fn active_share(
        &self,
        name: &str,
    ) -> Result<(KeyEntry, std::sync::Arc<frost::KeyShare>), Refusal> {
        let k = self.key(name)?;
        if k.status != KeyStatus::Active {
            return Err(Refusal::rejected(format!(
                "key {name:?} is {}",
                status_str(&k.status)
            )));
        }
        let share = self.node.vault.key_share(name, k.attempt)?;
        Ok((k, share))
    }

    /// One signature share: law 2 on this node (the caller's capability, the request itself
    /// and the key's SSH role; for a key behind a `break_glass` gate, the caller's grant and
    /// use, `api::grant`), then FROST round 2 with the nonces it committed to. Answers the
    /// key's name (for the audit line) with the purpose, the share and, under a grant, what
    /// the audit line says about it.
    async fn sign_item(&self, identity: &str, r: SignShareRequest) -> (String, SignedItem) {
        let res = async {
            let path = format!("keys/{}", r.key);
            let under = UnderGrant::named(&r.grant, &r.use_id)?;
            self.authorize_gated(identity, &path, Capability::Sign, under)
                .await?;
            // Not on state that may be stale (`Reads::fresh`), as for a share release.
            self.node.reads.fresh().await?;
            if under.is_some() && r.min_index > *self.node.reads.applied_watch().borrow() {
                // The use (and every decision before it) must be in the state judged below.
                self.node
                    .reads
                    .wait_applied(r.min_index, Duration::from_secs(5))
                    .await?;
            }
            let (k, share) = self.active_share(&r.key)?;
            let request: SignRequest = serde_json::from_slice(&r.request)
                .map_err(|e| Refusal::invalid(format!("malformed sign request: {e}")))?;
            request
                .check(k.purpose, now_unix())
                .map_err(|e| Refusal::invalid(e.to_string()))?;
            if let (SignRequest::Ssh(c), Some(role)) = (&request, &k.ssh_role) {
                role.check(&c.principals, &c.extensions, c.valid_before - c.valid_after)
                    ?;
            }
            let commitments: BTreeMap<u64, Vec<u8>> = r.commitments.into_iter().collect();
            if commitments.len() != k.threshold as usize
                || !commitments.contains_key(&self.node.id)
                || commitments.keys().any(|n| !k.participants.contains(n))
            {
                return Err(Refusal::invalid(format!(
                    "a signature of key {:?} takes commitments from exactly {} participants including this node",
                    r.key, k.threshold
                )));
            }
            // The nonces first (single use either way: a refusal below drops them), so that a
            // request with unknown or spent nonces does not spend a use on this node.
            let nonces = self.node.nonces.take(identity, &r.request_id, &r.key)?;
            // Last before the share is made: from here on the use is spent on this node.
            let granted = match under {
                Some(under) => Some(
                    self.check_grant(
                        identity,
                        &path,
                        Capability::Sign,
                        under,
                        &UseTarget::Message(hex::encode(Sha256::digest(&r.request))),
                        &format!("a {} signature", request.purpose().as_str()),
                    )?
                        .audit_detail(),
                ),
                None => None,
            };
            let group_key = k
                .group_key
                .ok_or_else(|| Refusal::internal("active key without group key"))?;
            let message = request.message(&group_key);
            let mut share = frost::round2_sign(&message, &commitments, nonces, &share)
                .map_err(|e| Refusal::invalid(e.to_string()))?;
            if self.node.vault.corrupts() {
                share = frost::corrupt_share(&share);
            }
            Ok::<_, Refusal>((request.purpose().as_str(), share, granted))
        }
        .await;
        (r.key, res)
    }
}

/// One signer's answer for one item: the purpose, the share and the audit detail of a grant.
type SignedItem = Result<(&'static str, Vec<u8>, Option<String>), Refusal>;

#[tonic::async_trait]
impl Signing for Api {
    async fn create_key(
        &self,
        req: Request<KeyCreateRequest>,
    ) -> Result<Response<KeyInfo>, Status> {
        let path = format!("keys/{}", req.get_ref().name);
        self.run(
            req,
            Operation::KeyCreate,
            path.clone(),
            |id, r| async move {
                self.authorize(&id, &path, Capability::Create).await?;
                let timeout = Duration::from_secs(intent::key_timeout_secs(&r));
                let name = r.name.clone();
                let op = intent::key_create(r, Timestamp::now())?;
                // A cluster that has just formed writes its threshold through its first leader.
                let mut rx = self.node.reads.applied_watch();
                let settle = Instant::now() + Duration::from_secs(10);
                while self.model().settings.threshold.is_none() && Instant::now() < settle {
                    let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
                }
                let created = self.submit(id, op).await?.index;
                // Wait for the DKG to finish (or fail) on this node's copy. A generation that
                // cannot finish is aborted by the leader once the replicated deadline (whole
                // seconds from the leader's stamp, `Command::stamp`) has passed by its clock,
                // which it checks every second; then the abort commits and applies here.
                let deadline = Instant::now() + timeout + Duration::from_secs(6);
                loop {
                    // Until this node has applied the creation, the key may not be here yet, or
                    // be here as the attempt before, failed (a generation run again).
                    let applied = *rx.borrow_and_update() >= created;
                    if let Some(k) = applied.then(|| self.key(&name).ok()).flatten() {
                        match &k.status {
                            KeyStatus::Active => return Ok(self.key_info(&name, &k)),
                            KeyStatus::Failed(why) => {
                                return Err(Refusal::unavailable(format!(
                                    "key generation failed: {why}"
                                )))
                            }
                            KeyStatus::Generating => {}
                        }
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                        return Err(Refusal::unavailable(
                        "the key generation has not finished; `tessera key read` shows its state",
                    ));
                    }
                }
            },
        )
        .await
    }

    async fn read_key(&self, req: Request<NameRequest>) -> Result<Response<KeyInfo>, Status> {
        let path = format!("keys/{}", req.get_ref().name);
        self.run(req, Operation::KeyRead, path.clone(), |id, r| async move {
            // Public keys are public; reading them still takes read (or sign) on the key.
            if self.authorize(&id, &path, Capability::Read).await.is_err() {
                self.authorize(&id, &path, Capability::Sign).await?;
            }
            // An active key's public state never changes: without a quorum this node answers
            // from what it has applied, so signing survives as long as t signers do.
            if let Err(e) = self.node.reads.linearizable().await {
                tracing::warn!("serving key {:?} from local state: {e}", r.name);
            }
            let k = self.key(&r.name)?;
            Ok(self.key_info(&r.name, &k))
        })
        .await
    }

    async fn list_keys(&self, req: Request<Empty>) -> Result<Response<KeyListReply>, Status> {
        self.run(
            req,
            Operation::KeyList,
            "keys/".into(),
            |id, _| async move {
                self.authorize(&id, "keys/", Capability::List).await?;
                self.node.reads.linearizable().await?;
                let keys = self
                    .node
                    .state
                    .read()
                    .expect("state lock")
                    .model
                    .keys
                    .clone();
                Ok(KeyListReply {
                    keys: keys.iter().map(|(n, k)| self.key_info(n, k)).collect(),
                })
            },
        )
        .await
    }

    async fn commit(
        &self,
        req: Request<SignCommitRequest>,
    ) -> Result<Response<SignCommitReply>, Status> {
        let path = format!("keys/{}", req.get_ref().key);
        self.run(
            req,
            Operation::SignCommit,
            path.clone(),
            |id, r| async move {
                // Round-1 commitments release nothing: a gate is checked at round 2, where the
                // signature share would leave.
                self.authorize_with(&id, &path, Capability::Sign, Gates::SetAside)
                    .await?;
                if r.request_id.len() < 16 || r.request_id.len() > 64 {
                    return Err(Refusal::invalid("request_id must be 16 to 64 characters"));
                }
                if r.count > MAX_NONCE_BATCH {
                    return Err(Refusal::invalid(format!(
                    "count {} is more than the {MAX_NONCE_BATCH} commitments one request may take",
                    r.count
                )));
                }
                let (_, share) = self.active_share(&r.key)?;
                if r.count <= 1 {
                    let (nonces, commitments) = frost::round1_commit(&share)
                        .map_err(|e| Refusal::internal(e.to_string()))?;
                    self.node
                        .nonces
                        .put(&id, &r.key, vec![(r.request_id, nonces)])?;
                    return Ok(SignCommitReply {
                        node_id: self.node.id,
                        commitments,
                        batch: Vec::new(),
                    });
                }
                let mut pairs = Vec::with_capacity(r.count as usize);
                let mut batch = Vec::with_capacity(r.count as usize);
                for i in 0..r.count {
                    let (nonces, commitments) = frost::round1_commit(&share)
                        .map_err(|e| Refusal::internal(e.to_string()))?;
                    pairs.push((format!("{}.{i}", r.request_id), nonces));
                    batch.push(commitments);
                }
                self.node.nonces.put(&id, &r.key, pairs)?;
                Ok(SignCommitReply {
                    node_id: self.node.id,
                    commitments: Vec::new(),
                    batch,
                })
            },
        )
        .await
    }

    /// Round 2 for several signatures at once. Each item is authorized and checked on its own
    /// (one may be refused while the others are signed) and gets its own audit line; all the
    /// lines are made durable together, before any share leaves (law 4).
    async fn sign_shares(
        &self,
        req: Request<SignSharesRequest>,
    ) -> Result<Response<SignSharesReply>, Status> {
        let started = Instant::now();
        let (caller, identity) = self.caller(&req);
        let r = req.into_inner();
        let identity = identity.and_then(|id| {
            if r.items.is_empty() || r.items.len() > MAX_SIGN_ITEMS {
                return Err(Refusal::invalid(format!(
                    "items: {} given; a call takes 1 to {MAX_SIGN_ITEMS} signature shares",
                    r.items.len()
                )));
            }
            Ok(id)
        });
        let identity = match identity {
            Ok(id) => id,
            Err(e) => {
                // Nothing is signed: one line for the whole call.
                let record = caller.record(Operation::SignShares, "keys/".into(), Some(&e), None);
                let audited = self.node.audit.append(record).await;
                self.observe(Operation::SignShares, Some(&e), &audited, started);
                audited?;
                return Err(e.into());
            }
        };
        let results = futures::future::join_all(
            r.items
                .into_iter()
                .map(|item| self.sign_item(&identity, item)),
        )
        .await;
        let records = results
            .iter()
            .map(|(key, res)| {
                let detail = res
                    .as_ref()
                    .ok()
                    .and_then(|(_, _, granted)| granted.clone());
                caller.record(
                    Operation::SignShare,
                    format!("keys/{key}"),
                    res.as_ref().err(),
                    detail,
                )
            })
            .collect();
        let audited = self.node.audit.append_all(records).await;
        let mut items = Vec::with_capacity(results.len());
        // A key name is a metrics label only when the key exists: a name a caller made up
        // (anything at all, a secret path even) must not reach the metrics.
        let known: Vec<bool> = {
            let st = self.node.state.read().expect("state lock");
            results
                .iter()
                .map(|(key, _)| st.model.keys.contains_key(key))
                .collect()
        };
        for ((key, res), known) in results.into_iter().zip(known) {
            let key = if known { key } else { "-".to_string() };
            self.observe(Operation::SignShare, res.as_ref().err(), &audited, started);
            let (purpose, outcome) = match (&audited, &res) {
                (Ok(()), Ok((purpose, _, _))) => (*purpose, "ok"),
                (Ok(()), Err(e)) if e.is_denial() => ("-", "denied"),
                _ => ("-", "refused"),
            };
            self.node
                .metrics
                .signatures
                .with_label_values(&[&key, purpose, outcome])
                .inc();
            items.push(match res {
                Ok((_, share, _)) => SignedShare {
                    share,
                    ..Default::default()
                },
                Err(e) => SignedShare {
                    share: Vec::new(),
                    refusal: Some(wire::to_proto(&e)),
                },
            });
        }
        // Law 4: no audit, no share.
        audited?;
        Ok(Response::new(SignSharesReply {
            node_id: self.node.id,
            items,
        }))
    }

    async fn write_ssh_role(
        &self,
        req: Request<SshRoleRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = format!("keys/{}", req.get_ref().key);
        self.run(
            req,
            Operation::SshRoleWrite,
            path.clone(),
            |id, r| async move {
                self.authorize(&id, &path, Capability::Update).await?;
                self.submit(id, intent::ssh_role(r)).await
            },
        )
        .await
    }

    async fn report_cheater(&self, req: Request<CheaterReport>) -> Result<Response<Empty>, Status> {
        let path = format!("keys/{}", req.get_ref().key);
        let detail = format!(
            "node {} returned a signature share that does not verify",
            req.get_ref().node_id
        );
        let node = req.get_ref().node_id;
        self.run_detailed(req, Operation::SignCheaterReport, path.clone(), Some(detail), |id, r| async move {
            self.authorize_with(&id, &path, Capability::Sign, Gates::SetAside).await?;
            tracing::warn!(node = r.node_id, key = %r.key, reporter = %id, "a coordinator reports a cheating signer");
            self.node.metrics.cheaters.with_label_values(&[&node.to_string()]).inc();
            Ok(Empty {})
        })
        .await
    }
}
