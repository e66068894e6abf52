//! This node's part in distributed key generations (FROST, RFC 9591), driven by the replicated
//! key state: when a key is created it sends its round-1 package; when every round-1 package is
//! in, its round-2 packages, each sealed to its recipient; when every round-2 package is in, it
//! derives its signing share, keeps it sealed under its KEK, and publishes the public key
//! package. DKG secrets live only in memory: a node that restarts mid-DKG lets it time out.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use rocksdb::WriteBatch;
use tessera_crypto::frost;
use tessera_crypto::seal::{self, Context, Purpose, SealingPublicKey};
use tessera_crypto::SecretBytes;

use super::ShareVault;
use crate::db::{cf, CF_SHARES};
use crate::error::Refusal;
use crate::state::keys::{dkg_message, round2_payload, KeyEntry, KeyStatus};
use crate::state::NodeId;
use crate::state::{Members, Op};

#[derive(Default)]
struct Progress {
    secret1: Option<SecretBytes>,
    secret2: Option<SecretBytes>,
    sent2: bool,
    done: bool,
}

#[derive(Default)]
pub struct DkgRunner {
    progress: Mutex<HashMap<(String, u64), Progress>>,
}

pub fn key_share_key(name: &str) -> Vec<u8> {
    format!("frost/{name}").into_bytes()
}

fn label(node: NodeId, name: &str, attempt: u64) -> Vec<u8> {
    format!("tessera/frost-key/v1/{node}/{attempt}/{name}").into_bytes()
}

impl ShareVault {
    fn dkg_ctx<'a>(&'a self, path: &'a str, attempt: u64, node_id: NodeId) -> Context<'a> {
        Context {
            cluster_id: &self.cluster_id,
            path,
            version: attempt,
            node_id,
            purpose: Purpose::DkgRound2,
        }
    }

    fn signed(&self, name: &str, attempt: u64, kind: &str, payload: &[u8]) -> Vec<u8> {
        self.keys
            .ack
            .sign(&dkg_message(
                &self.cluster_id,
                name,
                attempt,
                self.node_id,
                kind,
                payload,
            ))
            .to_vec()
    }

    /// Moves this node's part of key `name`'s DKG forward. Returns the commands to submit; a
    /// finished signing share goes into `batch` (written with the applied index).
    pub fn dkg_step(
        &self,
        batch: &mut WriteBatch,
        name: &str,
        k: &KeyEntry,
        members: &Members,
    ) -> Vec<Op> {
        let me = self.node_id;
        let mut out = Vec::new();
        let mut all = self.dkg.progress.lock().expect("dkg lock");
        if k.status != KeyStatus::Generating || !k.participants.contains(&me) {
            all.retain(|(n, _), _| n != name);
            return out;
        }
        let p = all.entry((name.to_string(), k.attempt)).or_default();
        let abort = |reason: String| Op::KeyAbort {
            name: name.to_string(),
            attempt: k.attempt,
            reason,
        };
        let n = k.participants.len() as u16;
        if p.secret1.is_none() && !k.round1.contains_key(&me) {
            match frost::dkg_part1(me, n, k.threshold) {
                Ok((secret, package)) => {
                    p.secret1 = Some(secret);
                    out.push(Op::DkgRound1 {
                        name: name.to_string(),
                        attempt: k.attempt,
                        node: me,
                        signature: self.signed(name, k.attempt, "round1", &package),
                        package,
                    });
                }
                Err(e) => out.push(abort(format!("node {me}: {e}"))),
            }
            return out;
        }
        let path = format!("keys/{name}");
        if !p.sent2 && k.round1.len() == k.participants.len() {
            let Some(secret1) = &p.secret1 else {
                return out;
            };
            match frost::dkg_part2(secret1, &k.round1, me) {
                Ok((secret2, packages)) => {
                    let mut envelopes = BTreeMap::new();
                    for (to, pkg) in packages {
                        let Some(pk) = members
                            .all
                            .get(&to)
                            .and_then(|i| hex::decode(&i.sealing_key).ok())
                            .and_then(|b| SealingPublicKey::from_slice(&b).ok())
                        else {
                            out.push(abort(format!("node {to} has no sealing key")));
                            return out;
                        };
                        match seal::seal(&pk, &self.dkg_ctx(&path, k.attempt, to), pkg.expose()) {
                            Ok(env) => {
                                envelopes.insert(to, env);
                            }
                            Err(e) => {
                                out.push(abort(e.to_string()));
                                return out;
                            }
                        }
                    }
                    p.secret2 = Some(secret2);
                    p.sent2 = true;
                    out.push(Op::DkgRound2 {
                        name: name.to_string(),
                        attempt: k.attempt,
                        node: me,
                        signature: self.signed(
                            name,
                            k.attempt,
                            "round2",
                            &round2_payload(&envelopes),
                        ),
                        envelopes,
                    });
                }
                Err(e) => out.push(abort(format!("node {me}: {e}"))),
            }
            return out;
        }
        if !p.done && p.sent2 && k.round2.len() == k.participants.len() {
            let Some(secret2) = &p.secret2 else {
                return out;
            };
            let mut mine = BTreeMap::new();
            for (from, envs) in &k.round2 {
                if *from == me {
                    continue;
                }
                let Some(env) = envs.get(&me) else {
                    out.push(abort(format!(
                        "node {from} sent no round-2 package to node {me}"
                    )));
                    return out;
                };
                match seal::open(&self.keys.sealing, &self.dkg_ctx(&path, k.attempt, me), env) {
                    Ok(pkg) => {
                        mine.insert(*from, pkg);
                    }
                    Err(e) => {
                        out.push(abort(format!(
                            "node {me} cannot open node {from}'s round-2 package: {e}"
                        )));
                        return out;
                    }
                }
            }
            match frost::dkg_part3(secret2, &k.round1, &mine, me) {
                Ok(result) => {
                    let sealed = self
                        .keys
                        .kek
                        .seal(&label(me, name, k.attempt), result.key_package.expose());
                    let mut value = k.attempt.to_be_bytes().to_vec();
                    value.extend_from_slice(&sealed);
                    batch.put_cf(cf(&self.db, CF_SHARES), key_share_key(name), value);
                    p.done = true;
                    p.secret1 = None;
                    p.secret2 = None;
                    out.push(Op::DkgDone {
                        name: name.to_string(),
                        attempt: k.attempt,
                        node: me,
                        signature: self.signed(name, k.attempt, "done", &result.public_key_package),
                        public_key_package: result.public_key_package,
                    });
                }
                Err(e) => out.push(abort(format!("node {me}: {e}"))),
            }
        }
        out
    }

    /// This node's signing share of key `name`, parsed (attempt must match the replicated one).
    /// It is opened and parsed once per generation and then kept in memory, as every signature
    /// needs it; parsing checks its points and costs more than computing a signature share.
    pub fn key_share(&self, name: &str, attempt: u64) -> Result<Arc<frost::KeyShare>, Refusal> {
        if let Some((a, share)) = self.key_shares.lock().expect("key shares lock").get(name) {
            if *a == attempt {
                return Ok(share.clone());
            }
        }
        let package = self.key_package(name, attempt).map_err(Refusal::rejected)?;
        let share = Arc::new(
            frost::KeyShare::parse(&package)
                .map_err(|e| Refusal::internal(format!("stored key share does not parse: {e}")))?,
        );
        self.key_shares
            .lock()
            .expect("key shares lock")
            .insert(name.to_string(), (attempt, share.clone()));
        Ok(share)
    }

    /// This node's signing share of key `name` (attempt must match the replicated one).
    fn key_package(&self, name: &str, attempt: u64) -> Result<SecretBytes, String> {
        let raw = self
            .db
            .get_cf(cf(&self.db, CF_SHARES), key_share_key(name))
            .map_err(|e| format!("share store: {e}"))?
            .ok_or_else(|| format!("node {} holds no share of key {name:?}", self.node_id))?;
        if raw.len() < 8 || raw[..8] != attempt.to_be_bytes() {
            return Err(format!(
                "node {} holds a share of an older generation of key {name:?}",
                self.node_id
            ));
        }
        self.keys
            .kek
            .open(&label(self.node_id, name, attempt), &raw[8..])
            .map_err(|e| format!("stored key share does not open: {e}"))
    }

    /// The signing-key shares this node holds: (key name, generation attempt). Never values.
    pub fn key_shares(&self) -> Vec<(String, u64)> {
        self.db
            .prefix_iterator_cf(cf(&self.db, CF_SHARES), b"frost/")
            .filter_map(|r| r.ok())
            .take_while(|(k, _)| k.starts_with(b"frost/"))
            .filter_map(|(k, v)| {
                let name = String::from_utf8(k[b"frost/".len()..].to_vec()).ok()?;
                let attempt = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
                Some((name, attempt))
            })
            .collect()
    }

    /// Test builds only: whether this node plays a cheating signer.
    pub fn corrupts(&self) -> bool {
        self.corrupt_releases
    }
}
