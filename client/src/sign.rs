//! Threshold signing, coordinated by the client: pick `t` signers (the answering node's region
//! first), run FROST round 1 and round 2 with each of them under the caller's own identity (so
//! each signer authorizes the real requester), aggregate, and verify the group signature before
//! returning it. A signer whose share does not verify is named, reported and replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use tessera_crypto::frost::{self, AggregateError};
use tessera_crypto::purpose::KeyPurpose;
use tessera_crypto::sign_request::SignRequest;
use tessera_proto::signing_client::SigningClient;
use tessera_proto::*;
use tonic::transport::Channel;

use crate::batch::{Call, Queue};
use crate::{Client, Error};

/// A finished threshold signature.
#[derive(Debug, Clone)]
pub struct Signed {
    pub signature: [u8; 64],
    pub group_key: [u8; 32],
    pub signers: Vec<u64>,
    /// Signers whose shares did not verify (reported, and replaced).
    pub cheaters: Vec<u64>,
}

impl Client {
    pub async fn key_create(
        &self,
        name: &str,
        purpose: KeyPurpose,
        timeout_seconds: u32,
    ) -> Result<KeyInfo, Error> {
        let r = self
            .signing_rpc()
            .create_key(
                self.signed(
                    tessera_proto::SignedMethod::KeyCreate,
                    KeyCreateRequest {
                        name: name.into(),
                        purpose: purpose.as_str().into(),
                        timeout_seconds,
                    },
                )
                .await?,
            )
            .await;
        r.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    /// Sets the SSH role (principals, extensions, longest lifetime) of an SSH CA key.
    pub async fn ssh_role_write(&self, req: SshRoleRequest) -> Result<u64, Error> {
        let r = self
            .signing_rpc()
            .write_ssh_role(
                self.signed(tessera_proto::SignedMethod::SshRoleWrite, req)
                    .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn key_read(&self, name: &str) -> Result<KeyInfo, Error> {
        let r = self
            .signing_rpc()
            .read_key(NameRequest { name: name.into() })
            .await;
        r.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    pub async fn key_list(&self) -> Result<Vec<KeyInfo>, Error> {
        let r = self.signing_rpc().list_keys(Empty {}).await;
        r.map(|r| r.into_inner().keys).map_err(|s| self.err(s))
    }

    /// Signs `request` with key `name`.
    pub async fn sign(&self, name: &str, request: &SignRequest) -> Result<Signed, Error> {
        self.sign_under(name, request, None).await
    }

    /// Signs `request` with key `name`, under a committed use of a break-glass grant when the
    /// key is gated (`Client::breakglass_use`). Each signer serves a use once: a signature that
    /// fails after some signers answered has spent the use.
    pub async fn sign_under(
        &self,
        name: &str,
        request: &SignRequest,
        under: Option<&crate::GrantUse>,
    ) -> Result<Signed, Error> {
        // An active key's public state never changes: look it up once per client.
        let cached = self.keys.lock().expect("keys lock").get(name).cloned();
        let (info, public_keys) = match cached {
            Some(i) => i,
            None => {
                let i = self.key_read(name).await?;
                if i.status != "active" {
                    return Err(Error::Rejected {
                        reason: format!("key {name:?} is {}", i.status),
                    });
                }
                let pk = frost::PublicKeys::parse(&i.public_key_package)
                    .map_err(|e| Error::misbehaving(format!("key {name:?}: {e}")))?;
                let entry = (i, std::sync::Arc::new(pk));
                self.keys
                    .lock()
                    .expect("keys lock")
                    .insert(name.to_string(), entry.clone());
                entry
            }
        };
        let group_key: [u8; 32] = info
            .group_key
            .as_slice()
            .try_into()
            .map_err(|_| Error::misbehaving("the node sent a malformed group key"))?;
        let t = info.threshold as usize;
        let message = request.message(&group_key);
        let request_json = serde_json::to_vec(request).map_err(|e| Error::Invalid {
            reason: format!("the sign request cannot be encoded: {e}"),
        })?;
        let mut order: Vec<(usize, Holder)> =
            info.participants.iter().cloned().enumerate().collect();
        order.sort_by_key(|(i, h)| (h.region != info.region, *i));
        let candidates: Vec<Holder> = order.into_iter().map(|(_, h)| h).collect();
        let mut excluded: BTreeSet<u64> = BTreeSet::new();
        let mut cheaters = Vec::new();
        let mut problems: Vec<String> = Vec::new();
        let mut refreshed: BTreeSet<u64> = BTreeSet::new();
        for _attempt in 0..candidates.len() + 1 {
            let chosen: Vec<Holder> = candidates
                .iter()
                .filter(|h| !excluded.contains(&h.id))
                .take(t)
                .cloned()
                .collect();
            if chosen.len() < t {
                break;
            }
            // Round 1: commitments. Preprocessed ones first (FROST's preprocessing stage); a
            // signer with none left is asked now, for a fresh batch of `nonce_batch`.
            let mut commitments = BTreeMap::new();
            let mut nonce_ids: BTreeMap<u64, String> = BTreeMap::new();
            let mut need = Vec::new();
            for h in &chosen {
                match self.take_commitment(name, h.id) {
                    Some((id, c)) => {
                        nonce_ids.insert(h.id, id);
                        commitments.insert(h.id, c);
                    }
                    None => need.push(h.clone()),
                }
            }
            let batch = self.nonce_batch.clamp(1, MAX_NONCE_BATCH);
            let request_id = format!("{:032x}", u128::from_le_bytes(rand_bytes()));
            let r1 = join_all(need.iter().map(|h| {
                let c = self.node_channel(h.id, &h.address);
                let req = SignCommitRequest {
                    key: name.into(),
                    request_id: request_id.clone(),
                    count: batch,
                };
                let address = h.address.clone();
                async move {
                    match c {
                        Ok(c) => crate::connect::signing_rpc(c)
                            .commit(req)
                            .await
                            .map(|r| r.into_inner())
                            .map_err(|s| Error::from_status(&address, s)),
                        Err(e) => Err(e),
                    }
                }
            }))
            .await;
            let mut failed = false;
            for (h, r) in need.iter().zip(r1) {
                match r {
                    Ok(r) if r.node_id == h.id && batch == 1 => {
                        nonce_ids.insert(h.id, request_id.clone());
                        commitments.insert(h.id, r.commitments);
                    }
                    Ok(r) if r.node_id == h.id && r.batch.len() == batch as usize => {
                        let mut fresh = r
                            .batch
                            .into_iter()
                            .enumerate()
                            .map(|(i, c)| (format!("{request_id}.{i}"), c));
                        let (id, c) = fresh.next().expect("a batch has at least two");
                        nonce_ids.insert(h.id, id);
                        commitments.insert(h.id, c);
                        self.keep_commitments(name, h.id, fresh);
                    }
                    Ok(r) if r.node_id == h.id => {
                        problems.push(format!(
                            "node {}: answered {} commitments, not {batch}",
                            h.id,
                            r.batch.len()
                        ));
                        excluded.insert(h.id);
                        failed = true;
                    }
                    Ok(_) => {
                        problems.push(format!("node {}: answered for another node", h.id));
                        excluded.insert(h.id);
                        failed = true;
                    }
                    Err(e) => {
                        if e.is_denial() {
                            return Err(e);
                        }
                        problems.push(format!("node {}: {e}", h.id));
                        excluded.insert(h.id);
                        failed = true;
                    }
                }
            }
            if failed {
                continue;
            }
            // Round 2: signature shares, through each signer's queue (a busy client's
            // signatures share calls).
            let r2 = join_all(chosen.iter().map(|h| {
                let signer = self.signer(h.id, &h.address);
                let req = SignShareRequest {
                    key: name.into(),
                    request_id: nonce_ids[&h.id].clone(),
                    request: request_json.clone(),
                    commitments: commitments.clone().into_iter().collect(),
                    grant: under.map(|u| u.grant.clone()).unwrap_or_default(),
                    use_id: under.map(|u| u.use_id.clone()).unwrap_or_default(),
                    min_index: under.map(|u| u.index).unwrap_or_default(),
                };
                async move {
                    match signer {
                        Ok(s) => s.sign_share(req).await,
                        Err(e) => Err(e),
                    }
                }
            }))
            .await;
            let mut shares = BTreeMap::new();
            for (h, r) in chosen.iter().zip(r2) {
                match r {
                    Ok(r) => {
                        shares.insert(h.id, r);
                    }
                    Err(e) => {
                        match &e {
                            e if e.is_denial() => return Err(e.clone()),
                            Error::Invalid { reason } => {
                                return Err(Error::Invalid {
                                    reason: format!("node {}: {reason}", h.id),
                                })
                            }
                            _ => {}
                        }
                        if matches!(e, Error::NonceUnknown { .. }) && refreshed.insert(h.id) {
                            // Its preprocessed nonces are gone (expired, or the node
                            // restarted): ask it for fresh ones on the next attempt.
                            self.drop_commitments(name, h.id);
                        } else {
                            excluded.insert(h.id);
                        }
                        problems.push(format!("node {}: {e}", h.id));
                        failed = true;
                    }
                }
            }
            if failed {
                continue;
            }
            match frost::aggregate(&message, &commitments, &shares, &public_keys) {
                Ok(signature) => {
                    return Ok(Signed {
                        signature,
                        group_key,
                        signers: chosen.iter().map(|h| h.id).collect(),
                        cheaters,
                    })
                }
                Err(AggregateError::Cheaters(bad)) => {
                    for b in bad {
                        problems.push(format!(
                            "node {b}: returned a signature share that does not verify"
                        ));
                        let _ = self
                            .signing_rpc()
                            .report_cheater(CheaterReport {
                                key: name.into(),
                                node_id: b,
                            })
                            .await;
                        cheaters.push(b);
                        excluded.insert(b);
                    }
                }
                Err(AggregateError::Other(e)) => {
                    return Err(Error::misbehaving(format!("aggregation failed: {e}")))
                }
            }
        }
        let available = candidates.len() - excluded.len();
        Err(Error::Unavailable {
            reason: format!(
                "{available} of {t} required signers available for key {name:?} ({})",
                problems.join("; ")
            ),
        })
    }
}

/// What a signer answered for one signature share: the share, or its refusal.
type ShareAnswer = Result<Vec<u8>, Error>;

/// The round-2 sender for one signer (cheap to clone): the signature shares a client asks of
/// it while its calls are on the network go together, in one `SignShares` call. The signer
/// still authorizes, checks and audits each on its own.
#[derive(Clone)]
pub(crate) struct Signer {
    queue: Queue<SignerCall>,
    address: std::sync::Arc<str>,
}

impl Signer {
    /// Starts the signer's task. It ends when every clone of this `Signer` is gone.
    pub(crate) fn start(channel: Channel, node_id: u64, address: &str) -> Signer {
        let call = SignerCall {
            rpc: crate::connect::signing_rpc(channel),
            node_id,
            address: address.into(),
        };
        Signer {
            address: call.address.clone(),
            queue: Queue::start(call),
        }
    }

    /// Whether the signer's task has ended (its runtime shut down).
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    async fn sign_share(&self, req: SignShareRequest) -> ShareAnswer {
        let address = &self.address;
        self.queue.send(req).await.unwrap_or_else(|_| {
            Err(Error::Unavailable {
                reason: format!("the signing queue for {address} closed"),
            })
        })
    }
}

struct SignerCall {
    rpc: SigningClient<Channel>,
    node_id: u64,
    address: std::sync::Arc<str>,
}

impl Call for SignerCall {
    type Item = SignShareRequest;
    type Answer = ShareAnswer;
    /// The node takes up to 256.
    const MAX_ITEMS: usize = 64;

    async fn call(&self, items: Vec<SignShareRequest>) -> Vec<ShareAnswer> {
        let n = items.len();
        let all = |e: Error| -> Vec<ShareAnswer> { (0..n).map(|_| Err(e.clone())).collect() };
        let reply = match self
            .rpc
            .clone()
            .sign_shares(SignSharesRequest { items })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return all(Error::from_status(&self.address, s)),
        };
        if reply.node_id != self.node_id {
            let m = format!("{} answered as node {}", self.address, reply.node_id);
            return all(Error::misbehaving(m));
        }
        if reply.items.len() != n {
            let m = format!(
                "answered {} signature shares for {n} asked",
                reply.items.len()
            );
            return all(Error::misbehaving(m));
        }
        reply
            .items
            .into_iter()
            .map(|i| match i.refusal {
                None => Ok(i.share),
                Some(r) => Err(Error::from_refusal(r)),
            })
            .collect()
    }
}

/// Most nonce pairs one request may commit to (the node's limit).
pub const MAX_NONCE_BATCH: u32 = 64;
/// Preprocessed commitments older than this are dropped unused: nodes forget unused nonces
/// after five minutes.
const NONCE_MAX_AGE: Duration = Duration::from_secs(240);

impl Client {
    /// Preprocessing: how many nonce pairs to ask each signer for at once. 1 (the default)
    /// signs in two rounds and keeps nothing; more makes most signatures take one round, at the
    /// price of commitments held by this client and nonces held by the signers (each unused
    /// pair for up to five minutes, at most 1024 per identity per node). Worth it for a
    /// long-lived client that signs often, not for a one-shot command.
    pub fn set_nonce_batch(&mut self, n: u32) {
        self.nonce_batch = n.clamp(1, MAX_NONCE_BATCH);
    }

    fn take_commitment(&self, key: &str, node: u64) -> Option<(String, Vec<u8>)> {
        let mut all = self.commitments.lock().expect("commitments lock");
        let queue = all.get_mut(&(key.to_string(), node))?;
        while let Some((id, c, at)) = queue.pop_front() {
            if at.elapsed() < NONCE_MAX_AGE {
                return Some((id, c));
            }
        }
        None
    }

    fn keep_commitments(
        &self,
        key: &str,
        node: u64,
        fresh: impl Iterator<Item = (String, Vec<u8>)>,
    ) {
        let now = Instant::now();
        let mut all = self.commitments.lock().expect("commitments lock");
        let queue = all.entry((key.to_string(), node)).or_default();
        queue.extend(fresh.map(|(id, c)| (id, c, now)));
    }

    fn drop_commitments(&self, key: &str, node: u64) {
        let mut all = self.commitments.lock().expect("commitments lock");
        all.remove(&(key.to_string(), node));
    }
}

pub(crate) fn rand_bytes() -> [u8; 16] {
    use tessera_crypto::rng;
    let mut b = [0u8; 16];
    rand_core_fill(&mut rng(), &mut b);
    b
}

fn rand_core_fill(rng: &mut impl tessera_crypto::RngFill, b: &mut [u8]) {
    rng.fill(b);
}
