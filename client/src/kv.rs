//! Secrets, client side: this is where a value is split and where it is put back together,
//! in the requester's own trust domain (law 1). Writing deals the data key with Feldman VSS and
//! seals each share to its holder; reading asks the nearest holders for their shares, verifies
//! every one against the commitments (law 3), routes around bad or missing holders, combines,
//! decrypts, and zeroizes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use tessera_crypto::seal::{self, Context, Purpose, SealingPublicKey};
use tessera_crypto::value::{self, ValueCiphertext};
use tessera_crypto::vss::{self, Commitments, Share};
use tessera_crypto::SecretBytes;
use tessera_proto::*;

use crate::release::{ReleaseError, Released};
use crate::{Client, Error};

/// Verifiers (a few hundred bytes each), and coefficient sets, a client keeps before it starts
/// over.
const VERIFIER_CACHE: usize = 4096;

/// How long a read's first round waits for one holder before it asks another instead. A holder
/// that hangs (a stopped process, or a region cut off without its connections closing) would
/// otherwise hold every read that asks it until the call's timeout.
const HOLDER_PATIENCE: Duration = Duration::from_secs(1);
/// How long a holder that ran out of patience is then asked last (and not in a first round).
const SLOW_FOR: Duration = Duration::from_secs(10);

/// A value read back, with what the read had to route around.
#[derive(Debug)]
pub struct KvValue {
    pub version: u64,
    pub value: SecretBytes,
    /// Holders whose released share did not verify (reported to the cluster), with why.
    pub bad_holders: Vec<(u64, String)>,
    /// Holders that could not be asked or refused, with why.
    pub unavailable: Vec<(u64, String)>,
    /// The metadata came from a node without a quorum (see `KvVersionReply::stale`).
    pub stale: bool,
    /// Set when a break-glass grant was first used to read this version: who, which grant,
    /// when. Write a new version to clear it.
    pub rotate_required: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// Check-and-set: write only if the current version is this (0: the path must be new).
    pub cas: Option<u64>,
}

/// The public facts of the version being read, as the reader trusts them.
struct Plan {
    version: u64,
    threshold: usize,
    commitments: Commitments,
    verifier: Arc<vss::Verifier>,
    holders: Vec<Holder>,
    /// Each holder's share index (its position in the holder list, from 1).
    positions: HashMap<u64, u16>,
    index: u64,
    cluster_id: String,
    region: String,
    ciphertext: ValueCiphertext,
    stale: bool,
    rotate_required: String,
}

impl Plan {
    fn new(client: &Client, v: KvVersionReply) -> Result<Plan, Error> {
        let t = v.threshold as usize;
        let commitments = Commitments(
            v.commitments
                .iter()
                .map(|c| <[u8; 32]>::try_from(c.as_slice()))
                .collect::<Result<_, _>>()
                .map_err(|_| Error::misbehaving("the node sent malformed commitments"))?,
        );
        if commitments.threshold() != t {
            return Err(Error::misbehaving(format!(
                "the node sent {} commitments for threshold {t}",
                commitments.0.len()
            )));
        }
        let verifier = client
            .verifier(&commitments, v.holders.len())
            .map_err(|e| Error::misbehaving(format!("the node sent bad commitments: {e}")))?;
        let positions = v
            .holders
            .iter()
            .enumerate()
            .map(|(i, h)| (h.id, (i + 1) as u16))
            .collect();
        let ciphertext = ValueCiphertext {
            nonce: v
                .nonce
                .as_slice()
                .try_into()
                .map_err(|_| Error::misbehaving("the node sent a malformed nonce"))?,
            ciphertext: v.ciphertext,
        };
        Ok(Plan {
            version: v.version,
            threshold: t,
            commitments,
            verifier,
            holders: v.holders,
            positions,
            index: v.index,
            cluster_id: v.cluster_id,
            region: v.region,
            ciphertext,
            stale: v.stale,
            rotate_required: v.rotate_required,
        })
    }

    fn commitment_bytes(&self) -> Vec<Vec<u8>> {
        self.commitments.0.iter().map(|c| c.to_vec()).collect()
    }

    /// Whether another node's metadata describes the same version: same number, commitments
    /// and holder order (which fixes each holder's share index).
    fn same_version(&self, m: &KvVersionReply) -> bool {
        m.version == self.version
            && m.commitments == self.commitment_bytes()
            && m.holders.len() == self.holders.len()
            && m.holders
                .iter()
                .zip(&self.holders)
                .all(|(a, b)| a.id == b.id)
    }
}

/// One holder's answer in a one-round read: the version it released, its metadata, and the
/// opened (not yet verified) share.
type Answer = (
    Holder,
    Result<(u64, Option<KvVersionReply>, Result<Share, ReleaseError>), ReleaseError>,
);

/// Law 3: a share counts only if it is the holder's own (its index is the holder's position)
/// and it verifies against the commitments.
fn check_share(
    position: Option<u16>,
    verifier: &vss::Verifier,
    share: Share,
) -> Result<Share, ReleaseError> {
    if Some(share.index) != position {
        return Err(ReleaseError::Bad(format!(
            "share index {} is not this holder's",
            share.index
        )));
    }
    verifier
        .verify(&share)
        .map_err(|e| ReleaseError::Bad(e.to_string()))?;
    Ok(share)
}

/// Shares collected so far, and who could not give one.
#[derive(Default)]
struct Gathered {
    good: Vec<Share>,
    bad_holders: Vec<(u64, String)>,
    unavailable: Vec<(u64, String)>,
    asked: std::collections::HashSet<u64>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid { reason: msg.into() }
}

impl Client {
    /// The topology as the connected node answers it, unchecked (see `Client::topology`).
    pub(crate) async fn topology_unchecked(&self) -> Result<TopologyReply, Error> {
        let r = self.sys_rpc().topology(Empty {}).await;
        r.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    pub async fn kv_metadata(&self, path: &str) -> Result<KvMetadataReply, Error> {
        let r = self
            .kv_rpc()
            .metadata(PathRequest { path: path.into() })
            .await;
        r.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }

    /// Writes a new version of `path` and returns it once `t + f` holders acknowledged.
    pub async fn kv_put(
        &self,
        path: &str,
        value: &[u8],
        opts: &PutOptions,
    ) -> Result<KvPutReply, Error> {
        // A cluster that has just formed writes its threshold through its first leader; give
        // it a moment rather than failing the first write.
        let cached = self.topology.lock().expect("topology lock").clone();
        let mut topo = match cached {
            Some(t) => t,
            None => self.topology().await?,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while topo.threshold == 0 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            topo = self.topology().await?;
        }
        let mut attempts = 0;
        // Optimistic: deal for version 1 (or cas + 1); a conflict names the current version, and
        // the next attempt deals for the one after it. A new secret costs one round trip.
        let mut current = opts.cas.unwrap_or(0);
        loop {
            attempts += 1;
            let version = current + 1;
            let req = deal_version(&topo, path, version, opts.cas, value)?;
            self.learn_cluster_id(&topo.cluster_id);
            let req = self.signed(tessera_proto::SignedMethod::KvPut, req).await?;
            match self.kv_rpc().put(req).await {
                Ok(r) => {
                    *self.topology.lock().expect("topology lock") = Some(topo);
                    return Ok(r.into_inner());
                }
                Err(s) => match (self.err(s), opts.cas) {
                    // The membership or threshold changed since the topology was fetched.
                    (Error::StaleTopology { .. }, _) if attempts < 5 => {
                        *self.topology.lock().expect("topology lock") = None;
                        topo = self.topology().await?;
                    }
                    // Someone else wrote meanwhile: deal again for the next version.
                    (Error::VersionConflict { current: v, .. }, None) if attempts < 8 => {
                        current = v;
                    }
                    (e, _) => return Err(e),
                },
            }
        }
    }

    /// Reads a version (`None`: the latest) from the nearest holders.
    ///
    /// Usually one round: the leader and the `t - 1` nearest other holders are asked for their
    /// shares at once, and the leader also answers which version is the latest, from its lease
    /// (see `ReleasedShare::metadata`). When that cannot be used (leader changed, no lease,
    /// an error) the read takes two rounds: metadata from the connected node, then shares.
    pub async fn kv_get(&self, path: &str, version: Option<u64>) -> Result<KvValue, Error> {
        self.kv_get_under(path, version, None).await
    }

    /// `kv_get`, under a committed use of a break-glass grant when the path is gated
    /// (`Client::breakglass_use`, or `kv_get_with_grant`, which commits one). Under a grant
    /// the version is the one the use names, so one round suffices; each holder serves a use
    /// once, so a holder asked in that round is not asked again.
    pub async fn kv_get_under(
        &self,
        path: &str,
        version: Option<u64>,
        under: Option<&crate::GrantUse>,
    ) -> Result<KvValue, Error> {
        let mut got = Gathered::default();
        let one_round = match (under, version) {
            (None, _) => self.one_round(path, version, None, &mut got).await?,
            // Under a grant the use names the version: one round, each holder asked once.
            (Some(u), Some(_)) => self.one_round(path, version, Some(u), &mut got).await?,
            (Some(_), None) => None,
        };
        let plan = match one_round {
            Some(plan) => plan,
            None => {
                // Under a grant, the holders asked have served the use already: the second
                // round asks only the others (a failed read spends its use).
                if under.is_none() {
                    got = Gathered::default();
                }
                let v = self
                    .kv_rpc()
                    .version(KvVersionRequest {
                        path: path.into(),
                        version: version.unwrap_or(0),
                    })
                    .await
                    .map_err(|s| self.err(s))?
                    .into_inner();
                Plan::new(self, v)?
            }
        };
        self.gather(path, &plan, under, &mut got).await;
        let t = plan.threshold;
        if got.good.len() < t {
            let mut why: Vec<String> = got
                .bad_holders
                .iter()
                .map(|(n, e)| format!("node {n}: released a share that {e}"))
                .collect();
            why.extend(
                got.unavailable
                    .iter()
                    .map(|(n, e)| format!("node {n}: {e}")),
            );
            return Err(Error::Unavailable {
                reason: format!(
                    "{} of {t} required share holders reachable with a valid share for version {} of {path:?} ({})",
                    got.good.len(),
                    plan.version,
                    why.join("; ")
                ),
            });
        }
        let good = &got.good[..t];
        let indices: Vec<u16> = good.iter().map(|s| s.index).collect();
        let key = self
            .lagrange(&indices)
            .and_then(|l| vss::combine_with(good, &l))
            .map_err(|e| Error::Misbehaving {
                reason: format!("the shares released do not combine: {e}"),
            })?;
        let aad = value::value_aad(&plan.cluster_id, path, plan.version);
        let value =
            value::decrypt(&key, &aad, &plan.ciphertext).map_err(|e| Error::Misbehaving {
                reason: format!(
                    "the recombined key does not decrypt version {}: {e}",
                    plan.version
                ),
            })?;
        Ok(KvValue {
            version: plan.version,
            value,
            bad_holders: got.bad_holders,
            unavailable: got.unavailable,
            stale: plan.stale,
            rotate_required: (!plan.rotate_required.is_empty())
                .then(|| plan.rotate_required.clone()),
        })
    }

    /// The Lagrange coefficients for combining shares with these indices (public, and the
    /// same whenever the same holders answer): worked out once per client.
    fn lagrange(&self, indices: &[u16]) -> Result<Arc<vss::Lagrange>, tessera_crypto::CryptoError> {
        if let Some(l) = self.lagrange.lock().expect("lagrange cache").get(indices) {
            return Ok(l.clone());
        }
        let l = Arc::new(vss::Lagrange::new(indices)?);
        let mut cache = self.lagrange.lock().expect("lagrange cache");
        if cache.len() >= VERIFIER_CACHE {
            cache.clear();
        }
        cache.insert(indices.to_vec(), l.clone());
        Ok(l)
    }

    /// The verifier for a version's commitments, from the cache when this client read the
    /// version lately (each holder's public share worked out once; see
    /// `Commitments::verifier_for`).
    fn verifier(
        &self,
        commitments: &Commitments,
        holders: usize,
    ) -> Result<Arc<vss::Verifier>, tessera_crypto::CryptoError> {
        let key: Vec<u8> = commitments.0.concat();
        if let Some(v) = self.verifiers.lock().expect("verifier cache").get(&key) {
            return Ok(v.clone());
        }
        let v = Arc::new(commitments.verifier_for(holders)?);
        let mut cache = self.verifiers.lock().expect("verifier cache");
        if cache.len() >= VERIFIER_CACHE {
            cache.clear();
        }
        cache.insert(key, v.clone());
        Ok(v)
    }

    /// The one-round read: `None` when the leader's answer cannot fix the version.
    async fn one_round(
        &self,
        path: &str,
        version: Option<u64>,
        under: Option<&crate::GrantUse>,
        got: &mut Gathered,
    ) -> Result<Option<Plan>, Error> {
        let cached = self.topology.lock().expect("topology lock").clone();
        let topo = match cached {
            Some(t) => t,
            None => match self.topology().await {
                Ok(t) => {
                    *self.topology.lock().expect("topology lock") = Some(t.clone());
                    t
                }
                // Without a quorum there is no leader to vouch for the latest version; the
                // two-round read can still serve what the holders have (flagged as stale).
                Err(_) => return Ok(None),
            },
        };
        let t = topo.threshold as usize;
        let Some(leader) = topo.holders.iter().find(|h| h.id == topo.leader) else {
            return Ok(None);
        };
        if t == 0 {
            return Ok(None);
        }
        // A leader that left a read unanswered lately: the metadata comes from the connected
        // node instead, and the shares from the holders that answer.
        if self.is_slow(leader.id) {
            return Ok(None);
        }
        let mut others: Vec<&Holder> = topo.holders.iter().filter(|h| h.id != leader.id).collect();
        others.sort_by_cached_key(|h| (self.is_slow(h.id), h.region != topo.region));
        let asked: Vec<&Holder> = std::iter::once(leader)
            .chain(others.into_iter().take(t - 1))
            .collect();
        // Every holder is asked at once (each share's sealing is bound to the version it
        // names); the shares are checked once the leader's answer has fixed the version.
        let asks = asked.iter().enumerate().map(|(i, h)| {
            let item = ReleaseItem {
                path: path.to_string(),
                version: version.unwrap_or(0),
                min_index: under.map(|u| u.index).unwrap_or(0),
                with_metadata: true,
                with_ciphertext: i == 0,
                grant: under.map(|u| u.grant.clone()).unwrap_or_default(),
                use_id: under.map(|u| u.use_id.clone()).unwrap_or_default(),
            };
            let cluster_id = topo.cluster_id.as_str();
            async move {
                let asked = self.release_from(h, cluster_id, item);
                let (h, res) = match tokio::time::timeout(HOLDER_PATIENCE, asked).await {
                    Ok(answered) => answered,
                    Err(_) => {
                        self.mark_slow(h.id);
                        let why = format!(
                            "no answer within {} ms; asked another holder",
                            HOLDER_PATIENCE.as_millis()
                        );
                        ((*h).clone(), Err(ReleaseError::Unavailable(why)))
                    }
                };
                let answer = res.map(|r| (r.version, r.metadata, r.share));
                (h, answer)
            }
        });
        let answers: Vec<Answer> = futures::future::join_all(asks).await;
        let mut answers = answers.into_iter();
        let (lead, lead_answer) = answers.next().expect("the leader was asked");
        let plan = match &lead_answer {
            Ok((v, Some(m), _)) if !m.stale && *v == m.version => Plan::new(self, m.clone())?,
            // The leader's own policy check refused: that is the answer.
            Err(ReleaseError::Denied(e)) => return Err(e.clone()),
            // The node we took for the leader is not (or has no lease), or it could not
            // answer: look again, and read in two rounds this time.
            _ => {
                *self.topology.lock().expect("topology lock") = None;
                return Ok(None);
            }
        };
        let mut matching: Vec<(Holder, Share)> = Vec::with_capacity(asked.len());
        for (h, answer) in std::iter::once((lead, lead_answer)).chain(answers) {
            // A holder that answered for another version has not applied the leader's latest
            // yet: it is left for `gather`, which asks it again for that exact version and has
            // it wait until it has caught up (`min_index`).
            if matches!(&answer, Ok((v, Some(m), _)) if *v != plan.version || m.version != plan.version)
            {
                continue;
            }
            got.asked.insert(h.id);
            // A share that came with the leader's metadata is checked with the others below.
            let answer = match answer {
                Ok((v, Some(m), Ok(share))) if v == plan.version && plan.same_version(&m) => {
                    if Some(share.index) == plan.positions.get(&h.id).copied() {
                        matching.push((h, share));
                    } else {
                        let why = format!("share index {} is not this holder's", share.index);
                        self.file(path, plan.version, &h, Err(ReleaseError::Bad(why)), got)
                            .await;
                    }
                    continue;
                }
                other => other,
            };
            let share = answer.and_then(|(_, meta, share)| match meta {
                Some(m) if m.commitments != plan.commitment_bytes() => Err(ReleaseError::Bad(
                    "came with commitments that differ from the leader's".into(),
                )),
                _ => share,
            });
            self.judge(path, &plan, &h, share, got).await;
        }
        // Law 3, for all of them at once (one fixed-base multiplication); if that fails, each
        // is checked on its own, so that the bad ones are named and the good ones kept.
        let shares: Vec<&Share> = matching.iter().map(|(_, s)| s).collect();
        if plan.verifier.verify_all(&shares) {
            for (h, share) in matching {
                self.file(path, plan.version, &h, Ok(share), got).await;
            }
        } else {
            for (h, share) in matching {
                self.judge(path, &plan, &h, Ok(share), got).await;
            }
        }
        Ok(Some(plan))
    }

    /// Asks more of the version's holders, nearest first, until `t` valid shares are in or
    /// every holder was asked.
    async fn gather(
        &self,
        path: &str,
        plan: &Plan,
        under: Option<&crate::GrantUse>,
        got: &mut Gathered,
    ) {
        let t = plan.threshold;
        let mut order: Vec<(usize, &Holder)> = plan
            .holders
            .iter()
            .enumerate()
            .filter(|(_, h)| !got.asked.contains(&h.id))
            .collect();
        order.sort_by_cached_key(|(i, h)| (self.is_slow(h.id), h.region != plan.region, *i));
        let mut next = order.into_iter().map(|(_, h)| h);
        let ask = |h: &Holder| {
            let item = ReleaseItem {
                path: path.to_string(),
                version: plan.version,
                // Under a grant, the holder judges the use where it was committed, or later.
                min_index: plan.index.max(under.map(|u| u.index).unwrap_or(0)),
                with_metadata: false,
                with_ciphertext: false,
                grant: under.map(|u| u.grant.clone()).unwrap_or_default(),
                use_id: under.map(|u| u.use_id.clone()).unwrap_or_default(),
            };
            let h = h.clone();
            async move { self.release_from(&h, &plan.cluster_id, item).await }
        };
        let mut inflight = FuturesUnordered::new();
        for h in next.by_ref().take(t.saturating_sub(got.good.len())) {
            inflight.push(ask(h));
        }
        while let Some((h, res)) = inflight.next().await {
            got.asked.insert(h.id);
            let share = res.and_then(|r| {
                if r.version == plan.version {
                    r.share
                } else {
                    Err(ReleaseError::Bad(format!(
                        "released version {} when version {} was asked for",
                        r.version, plan.version
                    )))
                }
            });
            if !self.judge(path, plan, &h, share, got).await {
                if let Some(n) = next.next() {
                    inflight.push(ask(n));
                }
            }
            if got.good.len() >= t {
                break;
            }
        }
    }

    /// Whether holder `id` left a read unanswered within the last `SLOW_FOR`.
    fn is_slow(&self, id: u64) -> bool {
        let mut slow = self.slow.lock().expect("slow holders lock");
        match slow.get(&id) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                slow.remove(&id);
                false
            }
            None => false,
        }
    }

    fn mark_slow(&self, id: u64) {
        let until = Instant::now() + SLOW_FOR;
        self.slow
            .lock()
            .expect("slow holders lock")
            .insert(id, until);
    }

    /// Asks one holder for one item, through its release queue.
    async fn release_from(
        &self,
        h: &Holder,
        cluster_id: &str,
        item: ReleaseItem,
    ) -> (Holder, Result<Released, ReleaseError>) {
        let res = match self.releaser(h.id, &h.address, cluster_id) {
            Ok(r) => r.release(item).await,
            Err(e) => Err(ReleaseError::Unavailable(e.to_string())),
        };
        (h.clone(), res)
    }

    /// Checks an opened share against the version's commitments (law 3) and files it as good,
    /// bad (reported to the cluster) or unavailable. True if the share is good.
    async fn judge(
        &self,
        path: &str,
        plan: &Plan,
        h: &Holder,
        share: Result<Share, ReleaseError>,
        got: &mut Gathered,
    ) -> bool {
        let verdict = share.and_then(|share| {
            check_share(plan.positions.get(&h.id).copied(), &plan.verifier, share)
        });
        self.file(path, plan.version, h, verdict, got).await
    }

    /// Files a checked share as good, bad (reported to the cluster) or unavailable. True if
    /// the share is good.
    async fn file(
        &self,
        path: &str,
        version: u64,
        h: &Holder,
        verdict: Result<Share, ReleaseError>,
        got: &mut Gathered,
    ) -> bool {
        match verdict {
            Ok(share) => {
                got.good.push(share);
                true
            }
            Err(ReleaseError::Bad(reason)) => {
                let report = BadShareReport {
                    path: path.to_string(),
                    version,
                    node_id: h.id,
                    reason: reason.clone(),
                };
                let _ = self.kv_rpc().report_bad_share(report).await;
                got.bad_holders.push((h.id, reason));
                false
            }
            Err(ReleaseError::Denied(why)) => {
                got.unavailable.push((h.id, why.to_string()));
                false
            }
            Err(ReleaseError::Unavailable(why)) => {
                got.unavailable.push((h.id, why));
                false
            }
        }
    }

    pub async fn kv_list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        self.kv_list_where(prefix, false).await
    }

    /// With `rotate_required`: every secret below `prefix`, at any depth, whose current version
    /// was read under a break-glass grant and not replaced since.
    pub async fn kv_list_where(
        &self,
        prefix: &str,
        rotate_required: bool,
    ) -> Result<Vec<String>, Error> {
        let r = self
            .kv_rpc()
            .list(KvListRequest {
                path: prefix.into(),
                rotate_required,
            })
            .await;
        r.map(|r| r.into_inner().names).map_err(|s| self.err(s))
    }

    pub async fn kv_delete(&self, path: &str, versions: Vec<u64>) -> Result<u64, Error> {
        let r = self
            .kv_rpc()
            .delete(
                self.signed(
                    tessera_proto::SignedMethod::KvDelete,
                    KvVersionsRequest {
                        path: path.into(),
                        versions,
                    },
                )
                .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn kv_undelete(&self, path: &str, versions: Vec<u64>) -> Result<u64, Error> {
        let r = self
            .kv_rpc()
            .undelete(
                self.signed(
                    tessera_proto::SignedMethod::KvUndelete,
                    KvVersionsRequest {
                        path: path.into(),
                        versions,
                    },
                )
                .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn kv_destroy(&self, path: &str, versions: Vec<u64>) -> Result<u64, Error> {
        let r = self
            .kv_rpc()
            .destroy(
                self.signed(
                    tessera_proto::SignedMethod::KvDestroy,
                    KvVersionsRequest {
                        path: path.into(),
                        versions,
                    },
                )
                .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn kv_metadata_put(&self, req: KvMetadataPutRequest) -> Result<u64, Error> {
        let r = self
            .kv_rpc()
            .metadata_put(
                self.signed(tessera_proto::SignedMethod::KvMetadataPut, req)
                    .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn kv_metadata_delete(&self, path: &str) -> Result<u64, Error> {
        let r = self
            .kv_rpc()
            .metadata_delete(
                self.signed(
                    tessera_proto::SignedMethod::KvMetadataDelete,
                    PathRequest { path: path.into() },
                )
                .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    pub async fn config_set(&self, req: ConfigSetRequest) -> Result<u64, Error> {
        let r = self
            .sys_rpc()
            .config_set(
                self.signed(tessera_proto::SignedMethod::ConfigSet, req)
                    .await?,
            )
            .await;
        r.map(|r| r.into_inner().index).map_err(|s| self.err(s))
    }

    /// The shares node `id` holds (paths, versions, indices; never values).
    pub async fn shares_of(&self, id: u64, addr: &str) -> Result<SharesReply, Error> {
        let r = crate::connect::sys_rpc(self.node_channel(id, addr)?)
            .shares(Empty {})
            .await;
        r.map(|r| r.into_inner()).map_err(|s| self.err(s))
    }
}

/// Deals one version: encrypt the value, split its key over the holders, seal each share.
pub fn deal_version(
    topo: &TopologyReply,
    path: &str,
    version: u64,
    cas: Option<u64>,
    value: &[u8],
) -> Result<KvPutRequest, Error> {
    let t = topo.threshold as usize;
    let n = topo.holders.len();
    if t < 2 || n < t {
        return Err(invalid(format!(
            "the cluster cannot store secrets yet: threshold {t} with {n} holders"
        )));
    }
    if value.len() > 1024 * 1024 {
        return Err(invalid(format!(
            "the value is {} bytes; the limit is 1 MiB",
            value.len()
        )));
    }
    let dealing = vss::deal(t, n).map_err(|e| invalid(e.to_string()))?;
    let aad = value::value_aad(&topo.cluster_id, path, version);
    let ct = value::encrypt(&dealing.key, &aad, value);
    let mut envelopes = Vec::with_capacity(n);
    for (h, share) in topo.holders.iter().zip(&dealing.shares) {
        let pk = SealingPublicKey::from_slice(&h.sealing_key)
            .map_err(|e| Error::misbehaving(format!("node {} has a bad sealing key: {e}", h.id)))?;
        let ctx = Context {
            cluster_id: &topo.cluster_id,
            path,
            version,
            node_id: h.id,
            purpose: Purpose::Deal,
        };
        let env = seal::seal(&pk, &ctx, &share.to_bytes())
            .map_err(|e| Error::misbehaving(format!("node {} has a bad sealing key: {e}", h.id)))?;
        envelopes.push(tessera_proto::ShareEnvelope {
            enc: env.enc.to_vec(),
            ciphertext: env.ciphertext,
        });
    }
    Ok(KvPutRequest {
        path: path.into(),
        version,
        cas,
        nonce: ct.nonce.to_vec(),
        ciphertext: ct.ciphertext,
        commitments: dealing.commitments.0.iter().map(|c| c.to_vec()).collect(),
        threshold: t as u32,
        holders: topo.holders.iter().map(|h| h.id).collect(),
        envelopes,
    })
}
