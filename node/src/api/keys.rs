//! The signing API: creating a key (a DKG among the voters, through Raft) and the two FROST
//! rounds each signer serves. The client coordinates a signature and aggregates it; each signer
//! checks the caller's `sign` capability on `keys/NAME` and the request itself, audits, and only
//! then returns its share (laws 2 and 4). Nonces stay in this node's memory and are used once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tessera_crypto::frost;
use tessera_crypto::sign_request::SignRequest;
use tessera_proto::*;
use tonic::{Request, Response, Status};

use super::{Api, Caller};
use crate::policy::Capability;
use crate::state::keys::{KeyEntry, KeyPurpose, KeyStatus};
use crate::state::Op;

/// Round-1 nonces waiting for their round 2: in memory only, expiring, used once. Each belongs
/// to the identity that asked for it, so one caller can neither use nor burn another's. Each
/// identity may hold only so many, and when the node is full the identity holding the most
/// gives up its oldest, so a few busy callers cannot lock the others out of signing.
#[derive(Default)]
pub struct NonceStore {
    pending: Mutex<HashMap<String, Pending>>,
}

struct Pending {
    at: Instant,
    identity: String,
    key: String,
    nonces: frost::SigningNonces,
}

/// How long a committed nonce pair waits for its round 2. Preprocessing clients keep their
/// commitments for less than this (`tessera_client`'s `NONCE_MAX_AGE`).
pub const NONCE_TTL: Duration = Duration::from_secs(300);
/// Most pairs one request may commit to.
pub const MAX_NONCE_BATCH: u32 = 64;
/// Most signature shares one call may ask for.
pub const MAX_SIGN_ITEMS: usize = 256;
const MAX_PENDING: usize = 10_000;
const MAX_PENDING_PER_IDENTITY: usize = 1_024;

impl NonceStore {
    fn put(
        &self,
        identity: &str,
        key: &str,
        batch: Vec<(String, frost::SigningNonces)>,
    ) -> Result<(), Status> {
        let mut p = self.pending.lock().expect("nonce lock");
        p.retain(|_, e| e.at.elapsed() < NONCE_TTL);
        let mine = p.values().filter(|e| e.identity == identity).count();
        if mine + batch.len() > MAX_PENDING_PER_IDENTITY {
            return Err(Status::resource_exhausted(format!(
                "too many signatures in flight on this node ({mine} unused commitments held for {identity:?}); unused ones expire after {} s",
                NONCE_TTL.as_secs()
            )));
        }
        if batch.iter().any(|(id, _)| p.contains_key(id)) {
            return Err(Status::already_exists("request id already used"));
        }
        make_room(&mut p, batch.len());
        let at = Instant::now();
        for (id, nonces) in batch {
            let e = Pending {
                at,
                identity: identity.to_string(),
                key: key.to_string(),
                nonces,
            };
            p.insert(id, e);
        }
        Ok(())
    }

    fn take(
        &self,
        identity: &str,
        request_id: &str,
        key: &str,
    ) -> Result<frost::SigningNonces, Status> {
        let mut p = self.pending.lock().expect("nonce lock");
        // Someone else's commitment is left untouched.
        let mine = p
            .get(request_id)
            .is_some_and(|e| e.identity == identity && e.key == key);
        match p.remove(request_id) {
            Some(e) if mine && e.at.elapsed() < NONCE_TTL => Ok(e.nonces),
            Some(e) if !mine => {
                p.insert(request_id.to_string(), e);
                Err(no_commitment())
            }
            _ => Err(no_commitment()),
        }
    }
}

/// Frees room for `need` more pairs under the node-wide cap by dropping the oldest pairs of the
/// identity that holds the most. Their owner finds them gone at round 2 and fetches fresh ones.
fn make_room(p: &mut HashMap<String, Pending>, need: usize) {
    while !p.is_empty() && p.len() + need > MAX_PENDING {
        let mut held: HashMap<&str, usize> = HashMap::new();
        for e in p.values() {
            *held.entry(e.identity.as_str()).or_default() += 1;
        }
        let Some((biggest, _)) = held.into_iter().max_by_key(|(who, n)| (*n, *who)) else {
            return;
        };
        let biggest = biggest.to_string();
        let mut theirs: Vec<(Instant, String)> = p
            .iter()
            .filter(|(_, e)| e.identity == biggest)
            .map(|(id, e)| (e.at, id.clone()))
            .collect();
        theirs.sort();
        let excess = p.len() + need - MAX_PENDING;
        for (_, id) in theirs.into_iter().take(excess) {
            p.remove(&id);
        }
    }
}

fn no_commitment() -> Status {
    Status::failed_precondition(
        "no round-1 commitment from this node for that request (expired or already used)",
    )
}

fn now_unix() -> u64 {
    time::OffsetDateTime::now_utc().unix_timestamp() as u64
}

fn status_str(s: &KeyStatus) -> String {
    match s {
        KeyStatus::Generating => "generating".into(),
        KeyStatus::Active => "active".into(),
        KeyStatus::Failed(r) => format!("failed: {r}"),
    }
}

impl Api {
    fn key_info(&self, name: &str, k: &KeyEntry) -> KeyInfo {
        KeyInfo {
            name: name.to_string(),
            purpose: k.purpose.as_str().into(),
            status: status_str(&k.status),
            group_key: k.group_key.map(|g| g.to_vec()).unwrap_or_default(),
            public_key_package: k.public_key_package.clone().unwrap_or_default(),
            threshold: k.threshold as u32,
            participants: self.holders(&k.participants),
            attempt: k.attempt,
            created_time: k.created_time.clone(),
            created_by: k.created_by.clone(),
            region: self.node.config.region.clone(),
            ssh_allowed_principals: k
                .ssh_role
                .as_ref()
                .map(|r| r.allowed_principals.clone())
                .unwrap_or_default(),
            ssh_allowed_extensions: k
                .ssh_role
                .as_ref()
                .map(|r| r.allowed_extensions.clone())
                .unwrap_or_default(),
            ssh_max_ttl_seconds: k.ssh_role.as_ref().map(|r| r.max_ttl).unwrap_or_default(),
        }
    }

    fn key(&self, name: &str) -> Result<KeyEntry, Status> {
        self.node
            .state
            .read()
            .expect("state lock")
            .model
            .keys
            .get(name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no key {name:?}")))
    }

    pub(super) async fn do_key_create(
        &self,
        req: Request<KeyCreateRequest>,
    ) -> Result<Response<KeyInfo>, Status> {
        let path = format!("keys/{}", req.get_ref().name);
        self.run(req, "key.create", path.clone(), |id, r| async move {
            self.authorize(&id, &path, Capability::Create).await?;
            let purpose = KeyPurpose::parse(&r.purpose).map_err(Status::invalid_argument)?;
            let timeout = Duration::from_secs(u64::from(r.timeout_seconds.clamp(5, 600)));
            // A cluster that has just formed writes its threshold through its first leader.
            let mut rx = self.node.applied.clone();
            let settle = Instant::now() + Duration::from_secs(10);
            while self.model().settings.threshold.is_none() && Instant::now() < settle {
                let _ = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
            }
            let op = Op::KeyCreate {
                name: r.name.clone(),
                purpose,
                time: time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                deadline: now_unix() + timeout.as_secs(),
            };
            self.submit(id, op).await?;
            // Wait for the DKG to finish (or fail) on this node's copy.
            let deadline = Instant::now() + timeout + Duration::from_secs(3);
            loop {
                // Until this node has applied the creation, the key may not be here yet.
                if let Ok(k) = self.key(&r.name) {
                    match &k.status {
                        KeyStatus::Active => return Ok(self.key_info(&r.name, &k)),
                        KeyStatus::Failed(why) => {
                            return Err(Status::unavailable(format!(
                                "key generation failed: {why}"
                            )))
                        }
                        KeyStatus::Generating => {}
                    }
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || tokio::time::timeout(left, rx.changed()).await.is_err() {
                    return Err(Status::unavailable(
                        "the key generation has not finished; `tessera key read` shows its state",
                    ));
                }
            }
        })
        .await
    }

    pub(super) async fn do_key_read(
        &self,
        req: Request<NameRequest>,
    ) -> Result<Response<KeyInfo>, Status> {
        let path = format!("keys/{}", req.get_ref().name);
        self.run(req, "key.read", path.clone(), |id, r| async move {
            // Public keys are public; reading them still takes read (or sign) on the key.
            if self.authorize(&id, &path, Capability::Read).await.is_err() {
                self.authorize(&id, &path, Capability::Sign).await?;
            }
            // An active key's public state never changes: without a quorum this node answers
            // from what it has applied, so signing survives as long as t signers do.
            if let Err(e) = self.node.linearizable().await {
                tracing::warn!("serving key {:?} from local state: {}", r.name, e.message());
            }
            let k = self.key(&r.name)?;
            Ok(self.key_info(&r.name, &k))
        })
        .await
    }

    pub(super) async fn do_key_list(
        &self,
        req: Request<Empty>,
    ) -> Result<Response<KeyListReply>, Status> {
        self.run(req, "key.list", "keys/".into(), |id, _| async move {
            self.authorize(&id, "keys/", Capability::List).await?;
            self.node.linearizable().await?;
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
        })
        .await
    }

    fn active_share(
        &self,
        name: &str,
    ) -> Result<(KeyEntry, std::sync::Arc<frost::KeyShare>), Status> {
        let k = self.key(name)?;
        if k.status != KeyStatus::Active {
            return Err(Status::failed_precondition(format!(
                "key {name:?} is {}",
                status_str(&k.status)
            )));
        }
        let share = self
            .node
            .vault
            .key_share(name, k.attempt)
            .map_err(Status::failed_precondition)?;
        Ok((k, share))
    }

    pub(super) async fn do_sign_commit(
        &self,
        req: Request<SignCommitRequest>,
    ) -> Result<Response<SignCommitReply>, Status> {
        let path = format!("keys/{}", req.get_ref().key);
        self.run(req, "sign.commit", path.clone(), |id, r| async move {
            self.authorize(&id, &path, Capability::Sign).await?;
            if r.request_id.len() < 16 || r.request_id.len() > 64 {
                return Err(Status::invalid_argument(
                    "request_id must be 16 to 64 characters",
                ));
            }
            if r.count > MAX_NONCE_BATCH {
                return Err(Status::invalid_argument(format!(
                    "count {} is more than the {MAX_NONCE_BATCH} commitments one request may take",
                    r.count
                )));
            }
            let (_, share) = self.active_share(&r.key)?;
            if r.count <= 1 {
                let (nonces, commitments) =
                    frost::round1_commit(&share).map_err(|e| Status::internal(e.to_string()))?;
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
                let (nonces, commitments) =
                    frost::round1_commit(&share).map_err(|e| Status::internal(e.to_string()))?;
                pairs.push((format!("{}.{i}", r.request_id), nonces));
                batch.push(commitments);
            }
            self.node.nonces.put(&id, &r.key, pairs)?;
            Ok(SignCommitReply {
                node_id: self.node.id,
                commitments: Vec::new(),
                batch,
            })
        })
        .await
    }

    /// Round 2 for several signatures at once. Each item is authorized and checked on its own
    /// (one may be refused while the others are signed) and gets its own audit line; all the
    /// lines are made durable together, before any share leaves (law 4).
    pub(super) async fn do_sign_shares(
        &self,
        req: Request<SignSharesRequest>,
    ) -> Result<Response<SignSharesReply>, Status> {
        let started = Instant::now();
        let (caller, identity) = Caller::of(&req);
        let r = req.into_inner();
        let identity = identity.and_then(|id| {
            if r.items.is_empty() || r.items.len() > MAX_SIGN_ITEMS {
                return Err(Status::invalid_argument(format!(
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
                let record = caller.record("sign.shares", "keys/".into(), Some(&e), None);
                let audited = self.node.audit(record).await;
                self.observe("sign.shares", Some(&e), &audited, started);
                audited?;
                return Err(e);
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
                caller.record(
                    "sign.share",
                    format!("keys/{key}"),
                    res.as_ref().err(),
                    None,
                )
            })
            .collect();
        let audited = self.node.audit_all(records).await;
        let mut items = Vec::with_capacity(results.len());
        for (key, res) in results {
            self.observe("sign.share", res.as_ref().err(), &audited, started);
            let (purpose, outcome) = match (&audited, &res) {
                (Ok(()), Ok((purpose, _))) => (*purpose, "ok"),
                (Ok(()), Err(e)) if e.code() == tonic::Code::PermissionDenied => ("-", "denied"),
                _ => ("-", "refused"),
            };
            self.node
                .metrics
                .signatures
                .with_label_values(&[&key, purpose, outcome])
                .inc();
            items.push(match res {
                Ok((_, share)) => SignedShare {
                    share,
                    ..Default::default()
                },
                Err(e) => SignedShare {
                    share: Vec::new(),
                    error_code: e.code() as u32,
                    error: e.message().to_string(),
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

    /// One signature share: law 2 on this node (the caller's capability, the request itself
    /// and the key's SSH role), then FROST round 2 with the nonces it committed to. Answers the
    /// key's name (for the audit line) with the purpose and the share.
    async fn sign_item(
        &self,
        identity: &str,
        r: SignShareRequest,
    ) -> (String, Result<(&'static str, Vec<u8>), Status>) {
        let res = async {
            self.authorize(identity, &format!("keys/{}", r.key), Capability::Sign)
                .await?;
            let (k, share) = self.active_share(&r.key)?;
            let request: SignRequest = serde_json::from_slice(&r.request)
                .map_err(|e| Status::invalid_argument(format!("malformed sign request: {e}")))?;
            request
                .check(k.purpose.as_str(), now_unix())
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            if let (SignRequest::Ssh(c), Some(role)) = (&request, &k.ssh_role) {
                role.check(&c.principals, &c.extensions, c.valid_before - c.valid_after)
                    .map_err(Status::invalid_argument)?;
            }
            let commitments: BTreeMap<u64, Vec<u8>> = r.commitments.into_iter().collect();
            if commitments.len() != k.threshold as usize
                || !commitments.contains_key(&self.node.id)
                || commitments.keys().any(|n| !k.participants.contains(n))
            {
                return Err(Status::invalid_argument(format!(
                    "a signature of key {:?} takes commitments from exactly {} participants including this node",
                    r.key, k.threshold
                )));
            }
            let nonces = self.node.nonces.take(identity, &r.request_id, &r.key)?;
            let group_key = k
                .group_key
                .ok_or_else(|| Status::internal("active key without group key"))?;
            let message = request.message(&group_key);
            let mut share = frost::round2_sign(&message, &commitments, nonces, &share)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            if self.node.vault.corrupts() {
                share = frost::corrupt_share(&share);
            }
            Ok::<_, Status>((request.purpose(), share))
        }
        .await;
        (r.key, res)
    }

    pub(super) async fn do_ssh_role_write(
        &self,
        req: Request<SshRoleRequest>,
    ) -> Result<Response<WriteReply>, Status> {
        let path = format!("keys/{}", req.get_ref().key);
        self.run(req, "ssh.role_write", path.clone(), |id, r| async move {
            self.authorize(&id, &path, Capability::Update).await?;
            let role = crate::state::keys::SshRole {
                allowed_principals: r.allowed_principals,
                allowed_extensions: r.allowed_extensions,
                max_ttl: r.max_ttl_seconds,
            };
            self.submit(id, Op::SshRoleWrite { key: r.key, role }).await
        })
        .await
    }

    pub(super) async fn do_report_cheater(
        &self,
        req: Request<CheaterReport>,
    ) -> Result<Response<Empty>, Status> {
        let path = format!("keys/{}", req.get_ref().key);
        let detail = format!(
            "node {} returned a signature share that does not verify",
            req.get_ref().node_id
        );
        let node = req.get_ref().node_id;
        self.run_detailed(req, "sign.cheater_report", path.clone(), Some(detail), |id, r| async move {
            self.authorize(&id, &path, Capability::Sign).await?;
            tracing::warn!(node = r.node_id, key = %r.key, reporter = %id, "a coordinator reports a cheating signer");
            self.node.metrics.cheaters.with_label_values(&[&node.to_string()]).inc();
            Ok(Empty {})
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A key share from a 2-of-2 DKG run in memory.
    fn key_share() -> frost::KeyShare {
        let (s1a, p1a) = frost::dkg_part1(1, 2, 2).unwrap();
        let (s1b, p1b) = frost::dkg_part1(2, 2, 2).unwrap();
        let r1: BTreeMap<u64, Vec<u8>> = [(1, p1a), (2, p1b)].into();
        let (s2a, _) = frost::dkg_part2(&s1a, &r1, 1).unwrap();
        let (_, to_a) = frost::dkg_part2(&s1b, &r1, 2).unwrap();
        let inbox: BTreeMap<u64, tessera_crypto::SecretBytes> = to_a
            .into_iter()
            .filter(|(to, _)| *to == 1)
            .map(|(_, p)| (2, p))
            .collect();
        let package = frost::dkg_part3(&s2a, &r1, &inbox, 1).unwrap().key_package;
        frost::KeyShare::parse(&package).unwrap()
    }

    fn batch(share: &frost::KeyShare, who: &str, n: usize) -> Vec<(String, frost::SigningNonces)> {
        (0..n)
            .map(|i| {
                let (nonces, _) = frost::round1_commit(share).unwrap();
                (format!("{who}-{i}"), nonces)
            })
            .collect()
    }

    #[test]
    fn a_full_node_still_serves_a_new_caller_at_the_busiest_callers_expense() {
        let share = key_share();
        let store = NonceStore::default();
        let fill = |who: &str, chunks: usize| {
            for chunk in 0..chunks {
                let batch = batch(&share, &format!("{who}.{chunk}"), 64);
                store.put(who, "k", batch).unwrap();
            }
        };
        for who in 0..9 {
            fill(&format!("c{who}"), 15); // 960 each
        }
        fill("hog", 16); // 1024, the most one caller may hold
        fill("c9", 5); // 320: 9,984 in all
        let held = |who: &str| {
            let p = store.pending.lock().unwrap();
            p.values().filter(|e| e.identity == who).count()
        };
        assert_eq!(store.pending.lock().unwrap().len(), 9_984);
        // The per-caller cap holds.
        let e = store
            .put("hog", "k", batch(&share, "hog.x", 1))
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        // A newcomer gets room at once, from the oldest pairs of the biggest holder.
        store.put("new", "k", batch(&share, "new", 64)).unwrap();
        assert_eq!(store.pending.lock().unwrap().len(), MAX_PENDING);
        assert_eq!(held("new"), 64);
        assert_eq!(held("hog"), 1024 - 48);
        assert_eq!(held("c0"), 960, "the others keep theirs");
        {
            let p = store.pending.lock().unwrap();
            assert!(!p.contains_key("hog.0-0"), "the oldest go first");
            assert!(p.contains_key("hog.1-0"));
        }
        // The newcomer's pairs work, once each, and only for it.
        assert!(store.take("c1", "new-1", "k").is_err());
        assert!(store.take("new", "new-0", "k").is_ok());
        assert!(store.take("new", "new-0", "k").is_err(), "used once");
        assert!(store.take("new", "new-1", "k").is_ok());
    }
}
