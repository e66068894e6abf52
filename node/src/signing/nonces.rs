//! FROST round-1 nonces this node committed to, waiting for their round 2.
//!
//! # Security
//!
//! A nonce pair used twice reveals the signer's key share, so each pair is kept in memory only
//! (never persisted: a restarted node has none), expires, and is taken out when used. A pair
//! belongs to the identity that asked for it, so one caller can neither use nor burn another's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tessera_crypto::frost;

use crate::error::Refusal;

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
const MAX_PENDING: usize = 10_000;
const MAX_PENDING_PER_IDENTITY: usize = 1_024;

impl NonceStore {
    pub fn put(
        &self,
        identity: &str,
        key: &str,
        batch: Vec<(String, frost::SigningNonces)>,
    ) -> Result<(), Refusal> {
        let mut p = self.pending.lock().expect("nonce lock");
        p.retain(|_, e| e.at.elapsed() < NONCE_TTL);
        let mine = p.values().filter(|e| e.identity == identity).count();
        if mine + batch.len() > MAX_PENDING_PER_IDENTITY {
            return Err(Refusal::RateLimited {
                reason: format!(
                    "too many signatures in flight on this node ({mine} unused commitments held for {identity:?}); unused ones expire after {} s",
                    NONCE_TTL.as_secs()
                ),
            });
        }
        if batch.iter().any(|(id, _)| p.contains_key(id)) {
            return Err(Refusal::already_exists("request id already used"));
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

    pub fn take(
        &self,
        identity: &str,
        request_id: &str,
        key: &str,
    ) -> Result<frost::SigningNonces, Refusal> {
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

fn no_commitment() -> Refusal {
    Refusal::NonceUnknown {
        reason: "no round-1 commitment from this node for that request (expired or already used)"
            .into(),
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
        assert!(matches!(e, Refusal::RateLimited { .. }), "{e:?}");
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
