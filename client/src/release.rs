//! Asking one holder for shares: the reads a client has under way at once travel to each
//! holder together, in one `ReleaseShares` call.
//!
//! Each holder gets a `Releaser`: a task that takes whatever items are waiting, sends them in
//! one call sealed to a fresh one-time key, opens the answers and hands each back to the read
//! that asked. A lone read goes out at once, as a batch of one; reads that arrive while calls are
//! on the network wait for the next call, so a busy client pays one round trip, one audit sync
//! and one key agreement per holder per batch instead of per read. Nothing is lost by it: the
//! holder still authorizes and audits every item on its own, and every share is still checked
//! against its version's commitments by the read that receives it (law 3).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tessera_crypto::release::{Item, Opener, Reply};
use tessera_crypto::seal::SealingKey;
use tessera_crypto::vss::Share;
use tessera_proto::tessera_client::TesseraClient;
use tessera_proto::{KvVersionReply, ReleaseItem, ReleaseSharesRequest};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tonic::transport::Channel;

use crate::Error;

/// Calls one holder may have under way for one client; later reads wait and go together.
const IN_FLIGHT: usize = 2;
/// Most items in one call (the node takes up to 256).
const MAX_ITEMS: usize = 64;

/// What one holder's answer to a release came to.
#[derive(Clone, Debug)]
pub(crate) enum ReleaseError {
    /// It released something that does not open or verify: reported, and named to the caller.
    Bad(String),
    /// It refused by policy.
    Denied(String),
    /// It could not be reached, refused for another reason, or lags.
    Unavailable(String),
}

impl ReleaseError {
    fn from_status(address: &str, s: tonic::Status) -> ReleaseError {
        match Error::from_status(address, s) {
            Error::Denied(m) => ReleaseError::Denied(m),
            e => ReleaseError::Unavailable(e.to_string()),
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

struct Pending {
    item: ReleaseItem,
    answer: oneshot::Sender<Result<Released, ReleaseError>>,
}

/// The batching sender for one holder (cheap to clone).
#[derive(Clone)]
pub(crate) struct Releaser {
    queue: mpsc::UnboundedSender<Pending>,
    holder: Arc<Holder>,
}

impl Releaser {
    /// Starts the holder's task. It ends when every clone of this `Releaser` is gone.
    pub(crate) fn start(
        rpc: TesseraClient<Channel>,
        node_id: u64,
        address: &str,
        cluster_id: &str,
    ) -> Releaser {
        let (queue, rx) = mpsc::unbounded_channel();
        let holder = Arc::new(Holder {
            rpc,
            node_id,
            address: address.into(),
            cluster_id: cluster_id.into(),
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            queued: AtomicUsize::new(0),
            next_key: Mutex::new(None),
        });
        tokio::spawn(holder.clone().run(rx));
        Releaser { queue, holder }
    }

    /// Whether the holder's task has ended (its runtime shut down).
    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Asks for one item, with whatever else is waiting for this holder.
    pub(crate) async fn release(&self, item: ReleaseItem) -> Result<Released, ReleaseError> {
        let (answer, rx) = oneshot::channel();
        let gone = || {
            let address = &self.holder.address;
            ReleaseError::Unavailable(format!("the release queue for {address} closed"))
        };
        // A read that asks the holder to catch up first (`min_index`) may wait there for
        // seconds: it goes alone, so that it holds up no other read.
        if item.min_index > 0 {
            let key = self.holder.take_key();
            self.holder.call(key, vec![Pending { item, answer }]).await;
            return rx.await.map_err(|_| gone())?;
        }
        // Nothing waiting and a call free: this read goes out at once, from its own task (a
        // hop through the queue's task would only add latency).
        if self.holder.queued.load(Ordering::Acquire) == 0 {
            if let Ok(slot) = self.holder.slots.clone().try_acquire_owned() {
                let key = self.holder.take_key();
                self.holder.call(key, vec![Pending { item, answer }]).await;
                drop(slot);
                return rx.await.map_err(|_| gone())?;
            }
        }
        self.holder.queued.fetch_add(1, Ordering::AcqRel);
        if self.queue.send(Pending { item, answer }).is_err() {
            self.holder.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(gone());
        }
        rx.await.map_err(|_| gone())?
    }
}

struct Holder {
    rpc: TesseraClient<Channel>,
    node_id: u64,
    address: Arc<str>,
    cluster_id: Arc<str>,
    /// Calls under way to this holder, at most `IN_FLIGHT`.
    slots: Arc<Semaphore>,
    /// Reads in the queue, not yet taken into a call.
    queued: AtomicUsize,
    /// A one-time key made ahead, for the next call (never used twice; zeroized on drop).
    next_key: Mutex<Option<SealingKey>>,
}

impl Holder {
    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Pending>) {
        while let Some(first) = rx.recv().await {
            // While every slot is taken, more reads queue up and go in the next call.
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_ITEMS {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
            let key = self.take_key();
            let me = self.clone();
            tokio::spawn(async move {
                me.call(key, batch).await;
                drop(slot);
            });
        }
    }

    /// A fresh one-time key: the one made ahead if there is one. The next is made on another
    /// task, while this call is on the network.
    fn take_key(self: &Arc<Self>) -> SealingKey {
        let ready = self.next_key.lock().expect("key lock").take();
        let me = self.clone();
        tokio::spawn(async move {
            let key = SealingKey::generate();
            me.next_key.lock().expect("key lock").get_or_insert(key);
        });
        ready.unwrap_or_else(SealingKey::generate)
    }

    async fn call(&self, key: SealingKey, batch: Vec<Pending>) {
        let (items, answers): (Vec<ReleaseItem>, Vec<_>) =
            batch.into_iter().map(|p| (p.item, p.answer)).unzip();
        let req = ReleaseSharesRequest {
            reader_key: key.public().0.to_vec(),
            items: items.clone(),
        };
        let reply = match self.rpc.clone().release_shares(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                let e = ReleaseError::from_status(&self.address, s);
                for a in answers {
                    let _ = a.send(Err(e.clone()));
                }
                return;
            }
        };
        if reply.items.len() != items.len() {
            let e = ReleaseError::Bad(format!(
                "answered {} items for {} asked",
                reply.items.len(),
                items.len()
            ));
            for a in answers {
                let _ = a.send(Err(e.clone()));
            }
            return;
        }
        let context = Reply {
            cluster_id: &self.cluster_id,
            node_id: self.node_id,
        };
        let released = reply.items.iter().any(|i| i.error_code == 0);
        let opener = if released {
            Opener::new(&key, &context, &reply.enc).map_err(|e| e.to_string())
        } else {
            Err(String::new())
        };
        for (position, ((item, it), answer)) in
            items.iter().zip(reply.items).zip(answers).enumerate()
        {
            let res = if it.error_code != 0 {
                let status = tonic::Status::new(tonic::Code::from(it.error_code as i32), it.error);
                Err(ReleaseError::from_status(&self.address, status))
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
            let _ = answer.send(res);
        }
    }
}
