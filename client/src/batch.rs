//! Calls that travel together: while a client's calls to one node are on the network, the
//! requests that arrive for that node wait and go in its next call.
//!
//! A busy client then pays one round trip, one TLS record, one audit sync and one task wake-up
//! per node per batch, instead of per request. Reads (`release`) and signature shares (`sign`)
//! both go this way. Nothing about the laws changes: the node still authorizes, audits and
//! answers every item on its own, and the caller still checks every answer it gets.
//!
//! Public because nodes batch the same way when they ask other holders for write receipts.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

/// Calls one node may have under way for one client; later requests wait and go together.
const IN_FLIGHT: usize = 2;

/// One kind of call that carries several items to one node.
pub trait Call: Send + Sync + 'static {
    type Item: Send + 'static;
    type Answer: Send + 'static;
    /// Most items in one call (below what the node takes).
    const MAX_ITEMS: usize;
    /// Makes one call carrying `items` and answers each of them, in order: exactly one answer
    /// per item, an error answer for each when the call as a whole fails.
    fn call(&self, items: Vec<Self::Item>) -> impl Future<Output = Vec<Self::Answer>> + Send;
}

/// The queue's task has ended (its runtime shut down); the item was not sent.
#[derive(Debug)]
pub struct Closed;

struct Pending<C: Call> {
    item: C::Item,
    answer: oneshot::Sender<C::Answer>,
}

/// The batching sender for one node (cheap to clone).
pub struct Queue<C: Call> {
    tx: mpsc::UnboundedSender<Pending<C>>,
    shared: Arc<Shared<C>>,
}

impl<C: Call> Clone for Queue<C> {
    fn clone(&self) -> Self {
        Queue {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

struct Shared<C: Call> {
    call: C,
    /// Calls under way to this node, at most `IN_FLIGHT`.
    slots: Arc<Semaphore>,
    /// Items in the queue, not yet taken into a call.
    queued: AtomicUsize,
}

impl<C: Call> Queue<C> {
    /// Starts the node's task. It ends when every clone of this `Queue` is gone.
    pub fn start(call: C) -> Queue<C> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            call,
            slots: Arc::new(Semaphore::new(IN_FLIGHT)),
            queued: AtomicUsize::new(0),
        });
        tokio::spawn(shared.clone().run(rx));
        Queue { tx, shared }
    }

    /// Whether the node's task has ended.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Sends `item` with whatever else is waiting for this node.
    pub async fn send(&self, item: C::Item) -> Result<C::Answer, Closed> {
        let (answer, rx) = oneshot::channel();
        let pending = Pending { item, answer };
        // Nothing waiting and a call free: this item goes out at once, from its caller's own
        // task (a hop through the queue's task would only add latency).
        if self.shared.queued.load(Ordering::Acquire) == 0 {
            if let Ok(slot) = self.shared.slots.clone().try_acquire_owned() {
                self.shared.deliver(vec![pending]).await;
                drop(slot);
                return rx.await.map_err(|_| Closed);
            }
        }
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        if let Err(mpsc::error::SendError(_)) = self.tx.send(pending) {
            self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Closed);
        }
        rx.await.map_err(|_| Closed)
    }

    /// Sends `item` in a call of its own, now, outside the call limit: for an item that may
    /// wait at the node, so that it holds up nothing else.
    pub async fn send_alone(&self, item: C::Item) -> Result<C::Answer, Closed> {
        let (answer, rx) = oneshot::channel();
        self.shared.deliver(vec![Pending { item, answer }]).await;
        rx.await.map_err(|_| Closed)
    }
}

impl<C: Call> Shared<C> {
    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Pending<C>>) {
        while let Some(first) = rx.recv().await {
            // While every slot is taken, more items queue up and go in the next call.
            let Ok(slot) = self.slots.clone().acquire_owned().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < C::MAX_ITEMS {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
            self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
            // A caller that gave up (timed out, or was cancelled) while its item waited gets
            // nothing sent for it: no share released and audited for nobody.
            batch.retain(|p| !p.answer.is_closed());
            if batch.is_empty() {
                continue;
            }
            let me = self.clone();
            tokio::spawn(async move {
                me.deliver(batch).await;
                drop(slot);
            });
        }
    }

    async fn deliver(&self, batch: Vec<Pending<C>>) {
        let (items, answers): (Vec<C::Item>, Vec<_>) =
            batch.into_iter().map(|p| (p.item, p.answer)).unzip();
        let replies = self.call.call(items).await;
        debug_assert_eq!(replies.len(), answers.len(), "one answer per item");
        for (answer, reply) in answers.into_iter().zip(replies) {
            let _ = answer.send(reply);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Answers each item with itself, after a pause, and remembers each call's size.
    struct Echo {
        calls: Arc<Mutex<Vec<usize>>>,
    }

    impl Call for Echo {
        type Item = u32;
        type Answer = u32;
        const MAX_ITEMS: usize = 8;
        fn call(&self, items: Vec<u32>) -> impl Future<Output = Vec<u32>> + Send {
            self.calls.lock().unwrap().push(items.len());
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                items
            }
        }
    }

    #[tokio::test]
    async fn waiting_items_share_calls_and_each_gets_its_own_answer() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let q = Queue::start(Echo {
            calls: calls.clone(),
        });
        let answers = futures::future::join_all((0..20u32).map(|i| {
            let q = q.clone();
            async move { q.send(i).await.unwrap() }
        }))
        .await;
        assert_eq!(answers, (0..20).collect::<Vec<_>>());
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.iter().sum::<usize>(), 20, "every item sent once");
        assert!(calls.iter().all(|&n| n <= Echo::MAX_ITEMS), "{calls:?}");
        assert!(
            calls.len() < 20,
            "some calls carried several items: {calls:?}"
        );
    }

    #[tokio::test]
    async fn an_item_whose_caller_gave_up_is_not_sent() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let q = Queue::start(Echo {
            calls: calls.clone(),
        });
        // Two calls take both slots; the third item queues, and its caller gives up.
        let a = tokio::spawn({
            let q = q.clone();
            async move { q.send(1).await.unwrap() }
        });
        let b = tokio::spawn({
            let q = q.clone();
            async move { q.send(2).await.unwrap() }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
        let gave_up = tokio::time::timeout(Duration::from_millis(1), q.send(3)).await;
        assert!(gave_up.is_err());
        assert_eq!((a.await.unwrap(), b.await.unwrap()), (1, 2));
        assert_eq!(q.send(4).await.unwrap(), 4);
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls, vec![1, 1, 1], "item 3 was never sent");
    }
}
