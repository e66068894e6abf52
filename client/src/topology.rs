//! Checking what one node says about the others before dealing to them.
//!
//! # Security
//!
//! A write seals each share to the sealing key of a holder and deals with the threshold `t`,
//! both from a `Topology` answer. Taken on the answering node's word, one compromised node
//! could hand out its own keys (and open every envelope) or a lower `t`. So:
//! 1. every holder's sealing key and region must be the ones the cluster CA attested in a
//!    certificate that names that holder (`tessera_crypto::attest`), or the answer is refused;
//! 2. another holder, reached directly over mutual TLS, must give the same threshold, the
//!    same acknowledgement count and the same holders with the same keys (the leader is asked
//!    first, then the others, until one agrees). A single node cannot make another node agree,
//!    and an old answer replayed disagrees with the current one.
//!
//! A topology with one holder cannot be confirmed by another node; such a cluster has no
//! threshold to protect (any one node can read).

use std::collections::BTreeMap;
use std::time::Duration;

use tessera_crypto::attest;
use tessera_proto::{Empty, TopologyReply};

use crate::connect::Client;
use crate::error::Error;

/// How long the confirming holder gets to answer before the next one is asked.
const CONFIRM_PATIENCE: Duration = Duration::from_secs(2);

/// Attempts while two nodes disagree (a membership or threshold change under way).
const ATTEMPTS: usize = 4;

impl Client {
    /// The cluster's holders, threshold and acknowledgement count, checked as the module says.
    pub async fn topology(&self) -> Result<TopologyReply, Error> {
        let ca = attest::pem_to_der(&self.tls.ca)
            .map_err(|e| Error::Config(format!("the CA certificate: {e}")))?;
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            let first = self.topology_unchecked().await?;
            check_holders(&ca, &first)?;
            if first.holders.len() < 2 {
                return Ok(first);
            }
            match self.confirm(&ca, &first).await? {
                None => return Ok(first),
                Some(why) => last = why,
            }
        }
        Err(Error::misbehaving(format!(
            "nodes disagree on the cluster's topology: {last}; not dealing to either answer"
        )))
    }

    /// A second holder's view of `first`: `None` if it agrees, or how it differs.
    async fn confirm(&self, ca: &[u8], first: &TopologyReply) -> Result<Option<String>, Error> {
        // The leader first (it must be up for a write to commit), then the others.
        let mut others: Vec<_> = first
            .holders
            .iter()
            .filter(|h| h.id != first.served_by)
            .collect();
        others.sort_by_key(|h| h.id != first.leader);
        let (mut unreachable, mut disagree) = (Vec::new(), Vec::new());
        for h in others {
            let channel = self.node_channel(h.id, &h.address)?;
            let mut rpc = crate::connect::sys_rpc(channel);
            let answer = tokio::time::timeout(CONFIRM_PATIENCE, rpc.topology(Empty {})).await;
            let second = match answer {
                Ok(Ok(r)) => r.into_inner(),
                Ok(Err(s)) => {
                    unreachable.push(format!("node {}: {}", h.id, s.message()));
                    continue;
                }
                Err(_) => {
                    unreachable.push(format!("node {}: no answer", h.id));
                    continue;
                }
            };
            // Any one other holder that agrees confirms the answer; one that lies or disagrees
            // is noted and the next is asked (one compromised node cannot confirm itself, nor
            // stop an honest answer from being confirmed).
            match check_holders(ca, &second).map(|()| differs(first, &second)) {
                Ok(None) => return Ok(None),
                Ok(Some(why)) => disagree.push(why),
                Err(e) => disagree.push(e.to_string()),
            }
        }
        if !disagree.is_empty() {
            return Ok(Some(disagree.join("; ")));
        }
        Err(Error::Unavailable {
            reason: format!(
                "no second holder could confirm the topology node {} gave ({})",
                first.served_by,
                unreachable.join("; ")
            ),
        })
    }
}

/// Refuses a topology in which a holder's key or region is not what the CA attested for it.
fn check_holders(ca: &[u8], t: &TopologyReply) -> Result<(), Error> {
    for h in &t.holders {
        let refuse = |why: String| {
            Error::misbehaving(format!(
                "node {} answered a topology that is not to be trusted: holder {}: {why}",
                t.served_by, h.id
            ))
        };
        let a = attest::verify_node_certificate(ca, &h.certificate, h.id)
            .map_err(|e| refuse(e.to_string()))?;
        if a.sealing_key[..] != h.sealing_key[..] {
            return Err(refuse(
                "its sealing key is not the one the cluster CA attested".into(),
            ));
        }
        if a.region != h.region {
            return Err(refuse(format!(
                "its region {:?} is not the attested {:?}",
                h.region, a.region
            )));
        }
    }
    Ok(())
}

/// How two answers differ in what a write depends on, if they do.
fn differs(a: &TopologyReply, b: &TopologyReply) -> Option<String> {
    let keys = |t: &TopologyReply| -> BTreeMap<u64, Vec<u8>> {
        t.holders
            .iter()
            .map(|h| (h.id, h.sealing_key.clone()))
            .collect()
    };
    if a.threshold != b.threshold {
        return Some(format!(
            "node {} says t = {}, node {} says t = {}",
            a.served_by, a.threshold, b.served_by, b.threshold
        ));
    }
    if a.acks_required != b.acks_required {
        return Some(format!(
            "node {} says a write needs {} acknowledgements, node {} says {}",
            a.served_by, a.acks_required, b.served_by, b.acks_required
        ));
    }
    if keys(a) != keys(b) {
        let ids = |t: &TopologyReply| t.holders.iter().map(|h| h.id).collect::<Vec<_>>();
        return Some(format!(
            "node {} names holders {:?}, node {} names {:?} (or their keys differ)",
            a.served_by,
            ids(a),
            b.served_by,
            ids(b)
        ));
    }
    None
}
