//! The `Raft` service, server side: consensus messages, forwarding to the leader, the read
//! index and node status. Only node certificates get in, and a node may speak only for itself:
//! the sender id inside each Raft message must be the node id its certificate names.

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use tessera_proto::raft_server::Raft as RaftRpc;
use tessera_proto::{Empty, NodeStatusReply, RaftPayload, ReadIndexReply};
use tonic::{Request, Response, Status};

use super::peers::{member_node, peer_node, same_sender};
use super::Api;
use crate::error::Refusal;
use crate::raft::leader::LeaderOp;
use crate::raft::receipts_ahead::check_receipts_ahead;
use crate::raft::{codec, NodeId, TypeConfig};

fn decode<T: serde::de::DeserializeOwned>(p: &RaftPayload) -> Result<T, Status> {
    codec::decode(&p.data).map_err(|e| Refusal::invalid(format!("bad Raft payload: {e}")).into())
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Response<RaftPayload>, Status> {
    codec::encode(v)
        .map(|data| Response::new(RaftPayload { data }))
        .map_err(|e| Refusal::internal(e.to_string()).into())
}

#[tonic::async_trait]
impl RaftRpc for Api {
    async fn append_entries(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let from = peer_node(&self.node, &req)?;
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref())?;
        same_sender(from, rpc.vote.leader_id().voted_for().unwrap_or(from))?;
        check_receipts_ahead(&self.node.state, &self.node.config.cluster_id, &rpc.entries);
        encode(&self.node.guard.append(from, rpc).await?)
    }

    async fn vote(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        let from = peer_node(&self.node, &req)?;
        let rpc: VoteRequest<NodeId> = decode(req.get_ref())?;
        same_sender(from, rpc.vote.leader_id().voted_for().unwrap_or(from))?;
        // A node whose clock this node found wrong does not get its vote (`raft::clock`).
        self.node.guard.trusts(from)?;
        encode(&self.node.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        req: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        let from = peer_node(&self.node, &req)?;
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req.get_ref())?;
        same_sender(from, rpc.vote.leader_id().voted_for().unwrap_or(from))?;
        encode(
            &self
                .node
                .snapshots
                .receive(&self.node.raft, from, rpc)
                .await?,
        )
    }

    async fn forward(&self, req: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        member_node(&self.node, &req)?;
        let op: LeaderOp = decode(req.get_ref())?;
        match self.node.leader.run_here(&op).await {
            Ok(reply) => encode(&reply),
            Err(fwd) => Err(Refusal::NotLeader {
                leader: fwd.and_then(|f| f.leader_id),
                reason: "this node is not the leader (any more)".into(),
            }
            .into()),
        }
    }

    async fn read_index(&self, req: Request<Empty>) -> Result<Response<ReadIndexReply>, Status> {
        member_node(&self.node, &req)?;
        if let Some(read_index) = self.node.reads.lease_read_index() {
            return Ok(Response::new(ReadIndexReply { read_index }));
        }
        let (read_log_id, _) = self
            .node
            .raft
            .get_read_log_id()
            .await
            .map_err(|e| Refusal::no_quorum(format!("not a confirmed leader: {e}")))?;
        Ok(Response::new(ReadIndexReply {
            read_index: read_log_id.map(|l| l.index).unwrap_or(0),
        }))
    }

    async fn node_status(&self, req: Request<Empty>) -> Result<Response<NodeStatusReply>, Status> {
        // Any node certificate: a node about to join is asked for its keys before it is a
        // member, by nodes it does not know yet.
        peer_node(&self.node, &req)?;
        Ok(Response::new(self.node.local_status().await))
    }
}
