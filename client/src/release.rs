//! Asking one holder for shares: the reads a client has under way at once travel to each
//! holder together, in one `ReleaseShares` call.
//!
//! Each holder gets a `Releaser`: a `batch::Queue` whose calls go sealed to a fresh one-time
//! key, so a busy client also pays one key agreement per holder per batch instead of per read.
//! Each answer is opened and handed back to the read that asked; every share is still checked
//! against its version's commitments by that read (law 3).

use std::sync::{Arc, Mutex};

use tessera_crypto::release::{Item, Opener, Reply};
use tessera_crypto::seal::SealingKey;
use tessera_crypto::vss::Share;
use tessera_proto::kv_client::KvClient;
use tessera_proto::{KvVersionReply, ReleaseItem, ReleaseSharesRequest};
use tonic::transport::Channel;

use crate::batch::{Call, Queue};
use crate::Error;

/// What one holder's answer to a release came to.
#[derive(Clone, Debug)]
pub(crate) enum ReleaseError {
    /// It released something that does not open or verify: reported, and named to the caller.
    Bad(String),
    /// It refused by policy (`Error::Denied` or `Error::Unauthenticated`).
    Denied(Error),
    /// It could not be reached, refused for another reason, or lags.
    Unavailable(String),
}

impl ReleaseError {
    fn from_status(address: &str, s: tonic::Status) -> ReleaseError {
        Self::from_error(Error::from_status(address, s))
    }

    fn from_error(e: Error) -> ReleaseError {
        if e.is_denial() {
            ReleaseError::Denied(e)
        } else {
            ReleaseError::Unavailable(e.to_string())
        }
    }
}

/// One item's answer: the version released, its metadata if asked for, and the opened share
/// (not yet checked against the commitments: that is the reader's job).
pub(crate) struct Released {
    pub version: u64,
    pub metadata: Option<KvVersionReply>,
    pub share: Result<Share, ReleaseError>,
}

/// The batching sender for one holder (cheap to clone).
#[derive(Clone)]
pub(crate) struct Releaser {
    queue: Queue<Holder>,
    address: Arc<str>,
}

impl Releaser {
    /// Starts the holder's task. It ends when every clone of this `Releaser` is gone.
    pub(crate) fn start(
        channel: Channel,
        node_id: u64,
        address: &str,
        cluster_id: &str,
    ) -> Releaser {
        let holder = Holder {
            rpc: crate::connect::kv_rpc(channel),
            node_id,
            address: address.into(),
            cluster_id: cluster_id.into(),
            next_key: Arc::new(Mutex::new(None)),
        };
        Releaser {
            address: holder.address.clone(),
            queue: Queue::start(holder),
        }
    }

    /// Whether the holder's task has ended (its runtime shut down).
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Asks for one item, with whatever else is waiting for this holder.
    pub(crate) async fn release(&self, item: ReleaseItem) -> Result<Released, ReleaseError> {
        // A read that asks the holder to catch up first (`min_index`) may wait there for
        // seconds: it goes alone, so that it holds up no other read.
        let answer = if item.min_index > 0 {
            self.queue.send_alone(item).await
        } else {
            self.queue.send(item).await
        };
        answer.unwrap_or_else(|_| {
            let address = &self.address;
            Err(ReleaseError::Unavailable(format!(
                "the release queue for {address} closed"
            )))
        })
    }
}

struct Holder {
    rpc: KvClient<Channel>,
    node_id: u64,
    address: Arc<str>,
    cluster_id: Arc<str>,
    /// A one-time key made ahead, for the next call (never used twice; zeroized on drop).
    next_key: Arc<Mutex<Option<SealingKey>>>,
}

impl Call for Holder {
    type Item = ReleaseItem;
    type Answer = Result<Released, ReleaseError>;
    /// The node takes up to 256.
    const MAX_ITEMS: usize = 64;

    async fn call(&self, items: Vec<ReleaseItem>) -> Vec<Self::Answer> {
        let key = self.take_key();
        self.release_shares(key, items).await
    }
}

impl Holder {
    /// A fresh one-time key: the one made ahead if there is one. The next is made on another
    /// task, while this call is on the network.
    fn take_key(&self) -> SealingKey {
        let ready = self.next_key.lock().expect("key lock").take();
        let next = self.next_key.clone();
        tokio::spawn(async move {
            let key = SealingKey::generate();
            next.lock().expect("key lock").get_or_insert(key);
        });
        ready.unwrap_or_else(SealingKey::generate)
    }

    /// One `ReleaseShares` call, sealed to `key`: an answer for each item, in order.
    async fn release_shares(
        &self,
        key: SealingKey,
        items: Vec<ReleaseItem>,
    ) -> Vec<Result<Released, ReleaseError>> {
        let req = ReleaseSharesRequest {
            reader_key: key.public().0.to_vec(),
            items: items.clone(),
        };
        let reply = match self.rpc.clone().release_shares(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                let e = ReleaseError::from_status(&self.address, s);
                return items.iter().map(|_| Err(e.clone())).collect();
            }
        };
        if reply.items.len() != items.len() {
            let e = ReleaseError::Bad(format!(
                "answered {} items for {} asked",
                reply.items.len(),
                items.len()
            ));
            return items.iter().map(|_| Err(e.clone())).collect();
        }
        let context = Reply {
            cluster_id: &self.cluster_id,
            node_id: self.node_id,
        };
        let released = reply.items.iter().any(|i| i.refusal.is_none());
        let opener = if released {
            Opener::new(&key, &context, &reply.enc).map_err(|e| e.to_string())
        } else {
            Err(String::new())
        };
        let mut answers = Vec::with_capacity(items.len());
        for (position, (item, it)) in items.iter().zip(reply.items).enumerate() {
            let res = if let Some(refusal) = it.refusal {
                Err(ReleaseError::from_error(Error::from_refusal(refusal)))
            } else {
                let share = match &opener {
                    Ok(o) => {
                        let at = Item {
                            position: position as u32,
                            path: &item.path,
                            version: it.version,
                        };
                        o.open(&at, &it.sealed_share)
                            .map_err(|e| ReleaseError::Bad(e.to_string()))
                            .and_then(|plain| {
                                Share::from_bytes(plain.expose())
                                    .map_err(|e| ReleaseError::Bad(e.to_string()))
                            })
                    }
                    Err(e) => Err(ReleaseError::Bad(format!("came in a malformed reply: {e}"))),
                };
                Ok(Released {
                    version: it.version,
                    metadata: it.metadata,
                    share,
                })
            };
            answers.push(res);
        }
        answers
    }
}
