//! The Raft transport, server side: the `Raft` gRPC service peers call. Only node certificates
//! get in, and a node may speak only for itself: the sender id inside each Raft message must be
//! the node id its certificate names.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::EntryPayload;
use tessera_crypto::ack::{receipt_signed, verify_ack};
use tessera_crypto::seal::Envelope;
use tessera_crypto::vss::Commitments;
use tessera_proto::raft_server::Raft as RaftRpc;
use tessera_proto::{
    Empty, NodeStatusReply, RaftPayload, ReadIndexReply, ReceiptReply, ReceiptRequest,
    ReceiptsReply, ReceiptsRequest,
};
use tonic::{Request, Response, Status};

use super::{codec, Entry, NodeId, TypeConfig};
use crate::node::{LeaderOp, Node};
use crate::state::kv::{receipt_statement, KvPut};
use crate::state::{Members, Op};
use crate::tls::peer_identity;

pub struct RaftService {
    node: Arc<Node>,
}

/// Most receipts one call may carry.
const MAX_RECEIPT_ITEMS: usize = 256;

impl RaftService {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }

    /// Starts checking the receipts of the writes in an append on another task, while Raft
    /// stores the entries and waits for the disk. Apply checks every receipt again and alone
    /// decides (`state::kv::validate_put`); it then finds these already verified, instead of
    /// verifying them one after another on its single task.
    fn check_receipts_ahead(&self, entries: &[Entry]) {
        let puts: Vec<&KvPut> = entries
            .iter()
            .filter_map(|e| match &e.payload {
                EntryPayload::Normal(cmd) => Some(cmd.each()),
                _ => None,
            })
            .flatten()
            .filter_map(|c| match &c.op {
                Op::KvPut(p) => Some(&**p),
                _ => None,
            })
            .collect();
        // Heartbeats and other entries: nothing to check, and no membership to copy.
        if puts.is_empty() {
            return;
        }
        let members = {
            let st = self.node.state.read().expect("state lock");
            Members::from_membership(&st.membership)
        };
        let cluster_id = &self.node.config.cluster_id;
        // The statements are hashed here (cheap); only the signature checks go to the task.
        // Receipts a holder signed together share one signature over one message: it is
        // verified once.
        let mut checks: Vec<([u8; 32], Vec<u8>, [u8; 64])> = puts
            .into_iter()
            .flat_map(|p| {
                p.receipts.iter().filter_map(|(node, receipt)| {
                    let (key, statement) =
                        receipt_statement(&members, cluster_id, p, *node).ok()?;
                    let (msg, sig) = receipt_signed(cluster_id, *node, &statement, receipt).ok()?;
                    Some((key, msg, sig))
                })
            })
            .collect();
        checks.sort_unstable();
        checks.dedup();
        if checks.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for (key, msg, signature) in &checks {
                // Only the verification is wanted here; apply reports any failure.
                let _ = verify_ack(key, msg, signature);
            }
        });
    }

    /// Checks one receipt item: this node opens the envelope sealed to it and checks the share
    /// against the commitments (law 3). Returns the statement its receipt will sign.
    fn check_receipt_item(&self, r: ReceiptRequest) -> Result<Vec<u8>, Status> {
        let bad = |m: String| Status::invalid_argument(m);
        let mut points = Vec::with_capacity(r.commitments.len());
        for (i, c) in r.commitments.iter().enumerate() {
            points.push(
                <[u8; 32]>::try_from(c.as_slice()).map_err(|_| {
                    bad(format!("commitment {i} is {} bytes, expected 32", c.len()))
                })?,
            );
        }
        let env = r.envelope.ok_or_else(|| bad("no envelope".into()))?;
        let env = Envelope {
            enc: env
                .enc
                .as_slice()
                .try_into()
                .map_err(|_| bad("the encapsulated key is not 32 bytes".into()))?,
            ciphertext: env.ciphertext,
        };
        env.check(64).map_err(|e| bad(e.to_string()))?;
        self.node
            .vault
            .check_for_receipt(&r.path, r.version, &Commitments(points), &r.holders, &env)
            .map_err(bad)
    }
}

/// The node id the caller's certificate proves, or a refusal for anything that is not a node.
fn calling_node<T>(req: &Request<T>) -> Result<NodeId, Status> {
    let id = peer_identity(req)?;
    id.node.ok_or_else(|| {
        Status::permission_denied(format!(
            "{:?} presented a client certificate; the Raft service is for cluster nodes only",
            id.common_name
        ))
    })
}

fn same_sender(cert: NodeId, claimed: NodeId) -> Result<(), Status> {
    if cert != claimed {
        tracing::warn!(
            cert,
            claimed,
            "refused a Raft message sent on behalf of another node"
        );
        return Err(Status::permission_denied(format!(
            "certificate of node {cert} cannot send Raft messages as node {claimed}"
        )));
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(p: &RaftPayload) -> Result<T, Status> {
    codec::decode(&p.data).map_err(|e| Status::invalid_argument(format!("bad Raft payload: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    codec::encode(v)
        .map(|data| Response::new(RaftPayload { data }))
        .map_err(|e| Status::internal(e.to_string()))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let from = calling_node(&req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref())?;
        same_sender(from, rpc.vote.leader_id().voted_for().unwrap_or(from))?;
        self.check_receipts_ahead(&rpc.entries);
        encode(&self.node.raft.append_entries(rpc).await)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let from = calling_node(&req)?;
        let rpc: VoteRequest<NodeId> = decode(req.get_ref())?;
        same_sender(from, rpc.vote.leader_id().voted_for().unwrap_or(from))?;
        encode(&self.node.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let from = calling_node(&req)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req.get_ref())?;
        same_sender(from, rpc.vote.leader_id().voted_for().unwrap_or(from))?;
        encode(&self.node.raft.install_snapshot(rpc).await)
    }

    async fn forward(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        calling_node(&req)?;
        let op: LeaderOp = decode(req.get_ref())?;
        match self.node.run_as_leader(&op).await {
            Ok(reply) => encode(&reply),
            Err(_) => Err(Status::unavailable(
                "this node is not the leader (any more)",
            )),
        }
    }

    async fn read_index(&self, req: Request<Empty>) -> Result<Response<ReadIndexReply>, Status> {
        calling_node(&req)?;
        if let Some(read_index) = self.node.lease_read_index() {
            return Ok(Response::new(ReadIndexReply { read_index }));
        }
        let (read_log_id, _) = self
            .node
            .raft
            .get_read_log_id()
            .await
            .map_err(|e| Status::unavailable(format!("not a confirmed leader: {e}")))?;
        Ok(Response::new(ReadIndexReply {
            read_index: read_log_id.map(|l| l.index).unwrap_or(0),
        }))
    }

    /// Checks this node's share of each write another node is about to submit. Nothing is
    /// stored and nothing secret leaves: each answer is a signature over public facts, or why
    /// that share was refused.
    async fn receipts(
        &self,
        req: Request<ReceiptsRequest>,
    ) -> Result<Response<ReceiptsReply>, Status> {
        calling_node(&req)?;
        let r = req.into_inner();
        if r.items.is_empty() || r.items.len() > MAX_RECEIPT_ITEMS {
            return Err(Status::invalid_argument(format!(
                "items: {} given; a receipt call takes 1 to {MAX_RECEIPT_ITEMS}",
                r.items.len()
            )));
        }
        let checked: Vec<Result<Vec<u8>, Status>> = r
            .items
            .into_iter()
            .map(|item| self.check_receipt_item(item))
            .collect();
        // The items whose shares verified are signed together: one signature for the call.
        let statements: Vec<&[u8]> = checked
            .iter()
            .filter_map(|c| c.as_ref().ok().map(|s| s.as_slice()))
            .collect();
        let mut receipts = self.node.vault.sign_receipts(&statements).into_iter();
        let items = checked
            .iter()
            .map(|c| match c {
                Ok(_) => ReceiptReply {
                    receipt: self
                        .node
                        .vault
                        .for_peer(receipts.next().expect("one receipt per statement")),
                    ..Default::default()
                },
                Err(s) => ReceiptReply {
                    receipt: Vec::new(),
                    error_code: s.code() as u32,
                    error: s.message().to_string(),
                },
            })
            .collect();
        Ok(Response::new(ReceiptsReply { items }))
    }

    async fn node_status(&self, req: Request<Empty>) -> Result<Response<NodeStatusReply>, Status> {
        calling_node(&req)?;
        Ok(Response::new(self.node.local_status().await))
    }
}
