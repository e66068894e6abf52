//! The node-to-node transport, client side: openraft messages to a peer as MessagePack inside
//! one unary gRPC call each (`Raft` service), over mutual TLS that checks the peer's certificate
//! names the node we meant; and the write receipts this node asks of each peer (`Holders`
//! service), batched per peer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tessera_client::batch::{Call, Queue};
use tessera_proto::holders_client::HoldersClient;
use tessera_proto::raft_client::RaftClient;
use tessera_proto::{RaftPayload, ReceiptRequest, ReceiptsRequest};
use tonic::transport::{Channel, Endpoint};

use super::{codec, NodeId, NodeInfo, TypeConfig};
use crate::error::{wire, Refusal};
use crate::tls::TlsMaterial;

/// Largest gRPC message a node accepts or sends (a batch of log entries or a snapshot chunk).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Connections to peers, one lazily connected channel per peer, reused by Raft replication and
/// by forwarding.
pub struct Peers {
    tls: Arc<TlsMaterial>,
    channels: Mutex<HashMap<NodeId, (String, Channel)>>,
    receipts: Mutex<HashMap<NodeId, (String, Queue<ReceiptCall>)>>,
}

/// Receipt requests to one peer. While this node's earlier receipt calls to it are on the
/// network, the requests of other writes wait and go together in the next call.
pub struct ReceiptCall {
    rpc: HoldersClient<Channel>,
    peer: String,
}

impl Call for ReceiptCall {
    type Item = ReceiptRequest;
    /// The peer's receipt, or why it refused (its own refusal) or could not be asked.
    type Answer = Result<Vec<u8>, Refusal>;
    /// The peer takes up to 256.
    const MAX_ITEMS: usize = 64;

    async fn call(&self, items: Vec<ReceiptRequest>) -> Vec<Self::Answer> {
        let n = items.len();
        let reply = match self.rpc.clone().receipts(ReceiptsRequest { items }).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                let r = wire::from_status(&self.peer, &s);
                return (0..n).map(|_| Err(r.clone())).collect();
            }
        };
        if reply.items.len() != n {
            let r = Refusal::internal(format!(
                "{} answered {} receipts for {n} asked",
                self.peer,
                reply.items.len()
            ));
            return (0..n).map(|_| Err(r.clone())).collect();
        }
        reply
            .items
            .into_iter()
            .map(|i| match i.refusal {
                None => Ok(i.receipt),
                Some(r) => Err(wire::from_proto(r)),
            })
            .collect()
    }
}

impl Peers {
    pub fn new(tls: Arc<TlsMaterial>) -> Self {
        Self {
            tls,
            channels: Mutex::new(HashMap::new()),
            receipts: Mutex::new(HashMap::new()),
        }
    }

    /// The receipt queue for node `id` at `addr` (started on first use, within a runtime).
    pub fn receipts(&self, id: NodeId, addr: &str) -> Result<Queue<ReceiptCall>, Refusal> {
        let mut queues = self.receipts.lock().expect("receipt queues lock");
        if let Some((a, q)) = queues.get(&id) {
            if a == addr && !q.is_closed() {
                return Ok(q.clone());
            }
        }
        let q = Queue::start(ReceiptCall {
            rpc: HoldersClient::new(self.channel(id, addr)?)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            peer: format!("node {id}"),
        });
        queues.insert(id, (addr.to_string(), q.clone()));
        Ok(q)
    }

    /// A gRPC client for the `Raft` service of node `id` at `addr`.
    pub fn raft(&self, id: NodeId, addr: &str) -> Result<RaftClient<Channel>, Refusal> {
        Ok(RaftClient::new(self.channel(id, addr)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// The connection to node `id` at `addr` (made on first use, lazily connected).
    fn channel(&self, id: NodeId, addr: &str) -> Result<Channel, Refusal> {
        if crate::byzantine::cut_off() {
            return Err(Refusal::unavailable(format!(
                "node {id}: TEST BUILD: cut off from the other nodes"
            )));
        }
        let mut chans = self.channels.lock().expect("peers lock");
        if let Some((a, ch)) = chans.get(&id) {
            if a == addr {
                return Ok(ch.clone());
            }
        }
        let unusable = |what: String| Refusal::unavailable(format!("node {id}: {what}"));
        let ch = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| unusable(format!("bad peer address {addr}: {e}")))?
            .tls_config(self.tls.to_peer(id))
            .map_err(|e| unusable(format!("TLS config: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .connect_lazy();
        chans.insert(id, (addr.to_string(), ch.clone()));
        Ok(ch)
    }
}

pub struct Network {
    peers: Arc<Peers>,
}

impl Network {
    pub fn new(peers: Arc<Peers>) -> Self {
        Self { peers }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerLink;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        PeerLink {
            target,
            client: self
                .peers
                .raft(target, &node.addr)
                .map_err(|e| e.to_string()),
        }
    }
}

pub struct PeerLink {
    target: NodeId,
    client: Result<RaftClient<Channel>, String>,
}

#[derive(Debug, thiserror::Error)]
#[error("node {node}: {msg}")]
struct LinkError {
    node: NodeId,
    msg: String,
}

#[derive(Clone, Copy)]
enum Kind {
    Append,
    Vote,
    Snapshot,
}

impl PeerLink {
    async fn call<Req, Resp, E>(
        &mut self,
        kind: Kind,
        req: &Req,
        ttl: Duration,
    ) -> Result<Resp, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let unreachable = |msg: String| {
            RPCError::Unreachable(Unreachable::new(&LinkError {
                node: self.target,
                msg,
            }))
        };
        if crate::byzantine::cut_off() {
            return Err(unreachable(
                "TEST BUILD: cut off from the other nodes".into(),
            ));
        }
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(unreachable(e.clone())),
        };
        let data = codec::encode(req).map_err(|e| unreachable(e.to_string()))?;
        let payload = RaftPayload { data };
        let mut client = client;
        let fut = async move {
            match kind {
                Kind::Append => client.append_entries(payload).await,
                Kind::Vote => client.vote(payload).await,
                Kind::Snapshot => client.install_snapshot(payload).await,
            }
        };
        let reply = match tokio::time::timeout(ttl, fut).await {
            Err(_) => return Err(unreachable(format!("no answer within {ttl:?}"))),
            Ok(Err(status)) => return Err(unreachable(status.message().to_string())),
            Ok(Ok(r)) => r.into_inner(),
        };
        let res: Result<Resp, RaftError<NodeId, E>> =
            codec::decode(&reply.data).map_err(|e| unreachable(e.to_string()))?;
        res.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.call(Kind::Append, &rpc, option.hard_ttl()).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(Kind::Snapshot, &rpc, option.hard_ttl()).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.call(Kind::Vote, &rpc, option.hard_ttl()).await
    }
}
