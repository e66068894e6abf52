//! Secrets, client side: this is where a value is split and where it is put back together,
//! in the requester's own trust domain (law 1). Writing deals the data key with Feldman VSS and
//! seals each share to its holder; reading asks the nearest holders for their shares, verifies
//! every one against the commitments (law 3), routes around bad or missing holders, combines,
//! decrypts, and zeroizes.

use std::collections::HashMap;

use futures::stream::{FuturesUnordered, StreamExt};
use tessera_crypto::seal::{self, Context, Envelope, Purpose, SealingKey, SealingPublicKey};
use tessera_crypto::value::{self, ValueCiphertext};
use tessera_crypto::vss::{self, Commitments, Share};
use tessera_crypto::SecretBytes;
use tessera_proto::*;

use crate::{Client, Error};

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
}

#[derive(Clone, Debug, Default)]
pub struct PutOptions {
    /// Check-and-set: write only if the current version is this (0: the path must be new).
    pub cas: Option<u64>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

impl Client {
    pub async fn topology(&self) -> Result<TopologyReply, Error> {
        let r = self.raw().topology(Empty {}).await;
        r.map(|r| r.into_inner()).map_err(|s| self.status_err(s))
    }

    pub async fn kv_metadata(&self, path: &str) -> Result<KvMetadataReply, Error> {
        let r = self
            .raw()
            .kv_metadata(PathRequest { path: path.into() })
            .await;
        r.map(|r| r.into_inner()).map_err(|s| self.status_err(s))
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
            match self.raw().kv_put(req).await {
                Ok(r) => {
                    *self.topology.lock().expect("topology lock") = Some(topo);
                    return Ok(r.into_inner());
                }
                Err(s) => {
                    let e = self.status_err(s);
                    // The membership or threshold changed since the topology was fetched.
                    let stale_topology = matches!(&e, Error::Invalid(m)
                        if m.contains("holders must be exactly") || m.contains("dealt with threshold") || m.contains("not a voting member"));
                    if stale_topology && attempts < 5 {
                        *self.topology.lock().expect("topology lock") = None;
                        topo = self.topology().await?;
                        continue;
                    }
                    // Someone else wrote meanwhile: deal again for the next version.
                    if let (Error::Invalid(m), None) = (&e, opts.cas) {
                        if let Some(v) = conflict_version(m) {
                            if attempts < 8 {
                                current = v;
                                continue;
                            }
                        }
                    }
                    return Err(e);
                }
            }
        }
    }

    /// Reads a version (`None`: the latest) from the nearest holders.
    pub async fn kv_get(&self, path: &str, version: Option<u64>) -> Result<KvValue, Error> {
        let v = self
            .raw()
            .kv_version(KvVersionRequest {
                path: path.into(),
                version: version.unwrap_or(0),
            })
            .await
            .map_err(|s| self.status_err(s))?
            .into_inner();
        let t = v.threshold as usize;
        let stale = v.stale;
        let commitments = Commitments(
            v.commitments
                .iter()
                .map(|c| <[u8; 32]>::try_from(c.as_slice()))
                .collect::<Result<_, _>>()
                .map_err(|_| Error::Other("the node sent malformed commitments".into()))?,
        );
        commitments
            .check(t)
            .map_err(|e| Error::Other(format!("the node sent bad commitments: {e}")))?;
        // Nearest first: holders in the answering node's region, then the others.
        let mut order: Vec<(usize, Holder)> = v.holders.iter().cloned().enumerate().collect();
        order.sort_by_key(|(i, h)| (h.region != v.region, *i));
        let positions: HashMap<u64, u16> = v
            .holders
            .iter()
            .enumerate()
            .map(|(i, h)| (h.id, (i + 1) as u16))
            .collect();
        let reader = SealingKey::generate();
        let reader_pub = reader.public();
        let mut next = order.into_iter().map(|(_, h)| h);
        let mut inflight = FuturesUnordered::new();
        let ask = |h: Holder| {
            let client = self.node_client(h.id, &h.address);
            let req = ReleaseShareRequest {
                path: path.to_string(),
                version: v.version,
                reader_key: reader_pub.0.to_vec(),
                min_index: v.index,
            };
            async move {
                let res = match client {
                    Ok(mut c) => c
                        .release_share(req)
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|s| {
                            let e = Error::from_status(&h.address, s);
                            e.to_string()
                        }),
                    Err(e) => Err(e.to_string()),
                };
                (h, res)
            }
        };
        for h in next.by_ref().take(t) {
            inflight.push(ask(h));
        }
        let mut good: Vec<Share> = Vec::with_capacity(t);
        let mut bad_holders = Vec::new();
        let mut unavailable = Vec::new();
        while let Some((h, res)) = inflight.next().await {
            let verdict = res.and_then(|r| {
                let env = r.envelope.ok_or("no envelope in the answer")?;
                let env = Envelope {
                    enc: env
                        .enc
                        .as_slice()
                        .try_into()
                        .map_err(|_| "malformed envelope")?,
                    ciphertext: env.ciphertext,
                };
                let ctx = Context {
                    cluster_id: &v.cluster_id,
                    path,
                    version: v.version,
                    node_id: h.id,
                    purpose: Purpose::Release,
                };
                let plain = seal::open(&reader, &ctx, &env).map_err(|e| format!("BAD: {e}"))?;
                let share = Share::from_bytes(plain.expose()).map_err(|e| format!("BAD: {e}"))?;
                if Some(&share.index) != positions.get(&h.id) {
                    return Err(format!(
                        "BAD: share index {} is not this holder's",
                        share.index
                    ));
                }
                vss::verify(&share, &commitments).map_err(|e| format!("BAD: {e}"))?;
                Ok(share)
            });
            match verdict {
                Ok(share) => good.push(share),
                Err(why) => {
                    if let Some(reason) = why.strip_prefix("BAD: ") {
                        bad_holders.push((h.id, reason.to_string()));
                        let report = BadShareReport {
                            path: path.to_string(),
                            version: v.version,
                            node_id: h.id,
                            reason: reason.to_string(),
                        };
                        let _ = self.raw().report_bad_share(report).await;
                    } else {
                        unavailable.push((h.id, why));
                    }
                    if let Some(n) = next.next() {
                        inflight.push(ask(n));
                    }
                }
            }
            if good.len() >= t {
                break;
            }
        }
        if good.len() < t {
            let mut why: Vec<String> = bad_holders
                .iter()
                .map(|(n, e)| format!("node {n}: released a share that {e}"))
                .collect();
            why.extend(unavailable.iter().map(|(n, e)| format!("node {n}: {e}")));
            return Err(Error::Unavailable(format!(
                "{} of {t} required share holders reachable with a valid share for version {} of {path:?} ({})",
                good.len(),
                v.version,
                why.join("; ")
            )));
        }
        let key = vss::combine(&good, t).map_err(|e| Error::Other(e.to_string()))?;
        let ct = ValueCiphertext {
            nonce: v
                .nonce
                .as_slice()
                .try_into()
                .map_err(|_| Error::Other("the node sent a malformed nonce".into()))?,
            ciphertext: v.ciphertext,
        };
        let aad = value::value_aad(&v.cluster_id, path, v.version);
        let value = value::decrypt(&key, &aad, &ct).map_err(|e| {
            Error::Other(format!(
                "the recombined key does not decrypt version {}: {e}",
                v.version
            ))
        })?;
        Ok(KvValue {
            version: v.version,
            value,
            bad_holders,
            unavailable,
            stale,
        })
    }

    pub async fn kv_list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let r = self
            .raw()
            .kv_list(PathRequest {
                path: prefix.into(),
            })
            .await;
        r.map(|r| r.into_inner().names)
            .map_err(|s| self.status_err(s))
    }

    pub async fn kv_delete(&self, path: &str, versions: Vec<u64>) -> Result<u64, Error> {
        let r = self
            .raw()
            .kv_delete(KvVersionsRequest {
                path: path.into(),
                versions,
            })
            .await;
        r.map(|r| r.into_inner().index)
            .map_err(|s| self.status_err(s))
    }

    pub async fn kv_undelete(&self, path: &str, versions: Vec<u64>) -> Result<u64, Error> {
        let r = self
            .raw()
            .kv_undelete(KvVersionsRequest {
                path: path.into(),
                versions,
            })
            .await;
        r.map(|r| r.into_inner().index)
            .map_err(|s| self.status_err(s))
    }

    pub async fn kv_destroy(&self, path: &str, versions: Vec<u64>) -> Result<u64, Error> {
        let r = self
            .raw()
            .kv_destroy(KvVersionsRequest {
                path: path.into(),
                versions,
            })
            .await;
        r.map(|r| r.into_inner().index)
            .map_err(|s| self.status_err(s))
    }

    pub async fn kv_metadata_put(&self, req: KvMetadataPutRequest) -> Result<u64, Error> {
        let r = self.raw().kv_metadata_put(req).await;
        r.map(|r| r.into_inner().index)
            .map_err(|s| self.status_err(s))
    }

    pub async fn kv_metadata_delete(&self, path: &str) -> Result<u64, Error> {
        let r = self
            .raw()
            .kv_metadata_delete(PathRequest { path: path.into() })
            .await;
        r.map(|r| r.into_inner().index)
            .map_err(|s| self.status_err(s))
    }

    pub async fn config_set(&self, req: ConfigSetRequest) -> Result<u64, Error> {
        let r = self.raw().config_set(req).await;
        r.map(|r| r.into_inner().index)
            .map_err(|s| self.status_err(s))
    }

    /// The shares node `id` holds (paths, versions, indices; never values).
    pub async fn shares_of(&self, id: u64, addr: &str) -> Result<SharesReply, Error> {
        let r = self.node_client(id, addr)?.shares(Empty {}).await;
        r.map(|r| r.into_inner()).map_err(|s| self.status_err(s))
    }
}

/// The current version named by a "version conflict: PATH is at version N, ..." refusal.
fn conflict_version(msg: &str) -> Option<u64> {
    let rest = msg.strip_prefix("version conflict: ")?;
    let after = &rest[rest.find(" is at version ")? + " is at version ".len()..];
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
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
            .map_err(|e| Error::Other(format!("node {} has a bad sealing key: {e}", h.id)))?;
        let ctx = Context {
            cluster_id: &topo.cluster_id,
            path,
            version,
            node_id: h.id,
            purpose: Purpose::Deal,
        };
        let env =
            seal::seal(&pk, &ctx, &share.to_bytes()).map_err(|e| Error::Other(e.to_string()))?;
        envelopes.push(tessera_proto::Envelope {
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

#[cfg(test)]
mod tests {
    #[test]
    fn conflicts_name_the_current_version() {
        let m = "version conflict: \"a/b\" is at version 12, so the next is 13, not 1";
        assert_eq!(super::conflict_version(m), Some(12));
        assert_eq!(super::conflict_version("check-and-set failed"), None);
    }
}
